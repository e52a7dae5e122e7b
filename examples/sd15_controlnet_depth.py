"""Stable Diffusion 1.5 + ControlNet depth (lllyasviel/control_v11f1p_sd15_depth), guided by Depth Anything.

Needs the `diffusers` extra (pip install "depth-anything-preprocessor[diffusers]") and, on first run, downloads
the base model and the ControlNet from the Hugging Face Hub (or give local folders). The generation code is
`controlnet_example` in _common.py: StableDiffusionControlNetPipeline with our control image as `image=`.

Example:
    python examples/sd15_controlnet_depth.py --image room.jpg --prompt "a cosy scandinavian living room" \
        --output room_sd15.png --save-depth room_depth.png
"""

from __future__ import annotations

from _common import controlnet_example


def main(argv=None) -> None:
    controlnet_example(
        argv,
        __doc__,
        pipeline="StableDiffusionControlNetPipeline",
        base_model="stable-diffusion-v1-5/stable-diffusion-v1-5",
        controlnet="lllyasviel/control_v11f1p_sd15_depth",
        resolution=512,
        guidance=7.5,
        conditioning_scale=1.0,
        negative_prompt="lowres, blurry, bad anatomy",
    )


if __name__ == "__main__":
    main()
