"""FLUX.1 Depth [dev] (FluxControlPipeline), guided by Depth Anything.

FLUX.1-Depth-dev is not a ControlNet: the control image is VAE-encoded and joins the latents. Sides are multiples
of 16. Needs the `diffusers` extra (pip install "depth-anything-preprocessor[diffusers]"), accepting the
FLUX.1 [dev] non-commercial licence on the Hub (huggingface-cli login), and about 35 GB of GPU memory in bf16;
use --offload on smaller GPUs.

Example:
    python examples/flux_depth.py --image portrait.jpg --prompt "a bronze statue in a museum hall" \
        --output portrait_flux.png
"""

from __future__ import annotations

from _common import (
    build_parser,
    check_paths,
    depth_control,
    generator,
    pick_device,
    pick_dtype,
    place_pipeline,
    save_image,
)

MODEL = "black-forest-labs/FLUX.1-Depth-dev"


def parse_args(argv=None):
    parser = build_parser(__doc__, resolution=1024, steps=30, guidance=10.0)
    parser.add_argument("--model", default=MODEL, help="FLUX.1 Depth pipeline id or folder (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    check_paths(args)

    from diffusers import FluxControlPipeline

    device = pick_device(args.device)
    dtype = pick_dtype(device, "bf16")
    # Any copy of FLUX.1-Depth-dev (also a local folder) takes near = white and sides in multiples of 16.
    control = depth_control(args, MODEL, device)

    pipe = FluxControlPipeline.from_pretrained(args.model, torch_dtype=dtype)
    pipe = place_pipeline(pipe, args, device)
    # Flux defaults to 1024 x 1024 whatever the control image: ask for the control image's size.
    image = pipe(
        prompt=args.prompt,
        control_image=control,
        height=control.height,
        width=control.width,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        generator=generator(args.seed),
    ).images[0]
    save_image(image, args.output)


if __name__ == "__main__":
    main()
