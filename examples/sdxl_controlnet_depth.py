"""Stable Diffusion XL + ControlNet depth (diffusers/controlnet-depth-sdxl-1.0), guided by Depth Anything.

Needs the `diffusers` extra (pip install "depth-anything-preprocessor[diffusers]") and, on first run, downloads
the base model and the ControlNet from the Hugging Face Hub (or give local folders). About 10 GB of GPU memory in
fp16; use --offload on smaller GPUs. The generation code is `controlnet_example` in _common.py:
StableDiffusionXLControlNetPipeline with our control image as `image=`.

Example:
    python examples/sdxl_controlnet_depth.py --image street.jpg --prompt "a rainy street at night, neon signs" \
        --output street_sdxl.png
"""

from __future__ import annotations

from _common import controlnet_example


def main(argv=None) -> None:
    controlnet_example(
        argv,
        __doc__,
        pipeline="StableDiffusionXLControlNetPipeline",
        base_model="stabilityai/stable-diffusion-xl-base-1.0",
        controlnet="diffusers/controlnet-depth-sdxl-1.0",
        resolution=1024,
        guidance=7.0,
        conditioning_scale=0.5,
        negative_prompt="lowres, blurry",
    )


if __name__ == "__main__":
    main()
