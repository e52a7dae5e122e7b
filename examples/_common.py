"""What the depth-generation examples share: arguments, device choice, the control image and safe saving.

Heavy imports (torch, diffusers, depth_anything) happen inside the functions, so `--help` is instant and works
without them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run from a clone without installing: the library sits one folder up.
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))


def build_parser(description: str, *, resolution: int, steps: int, guidance: float) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, required=True, help="photo whose depth guides the generation")
    parser.add_argument("--prompt", required=True, help="what to generate")
    parser.add_argument("--output", type=Path, default=Path("generated.png"),
                        help="generated image (default: %(default)s)")
    parser.add_argument("--save-depth", type=Path, help="also save the control (depth) image here")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    depth = parser.add_argument_group("depth")
    depth.add_argument(
        "--depth-model", default="depth_anything_v2_vitl",
        help="checkpoint file or known name (default: %(default)s, CC-BY-NC-4.0; depth_anything_v2_vits is "
        "Apache-2.0). Known names download on first use.",
    )
    depth.add_argument("--detect-resolution", type=int, default=518,
                       help="short side the depth network sees, a multiple of 14 (default: %(default)s)")
    depth.add_argument("--tiled", action="store_true", help="tiled depth for large photos: finer detail, no seams")
    depth.add_argument("--normalize", default="per_image", choices=("per_image", "percentile"),
                       help="depth range to black-white (default: %(default)s)")
    gen = parser.add_argument_group("generation")
    gen.add_argument("--resolution", type=int, default=resolution,
                     help="short side of the generated image; the photo's aspect ratio is kept (default: %(default)s)")
    gen.add_argument("--steps", type=int, default=steps, help="denoising steps (default: %(default)s)")
    gen.add_argument("--guidance", type=float, default=guidance, help="guidance scale (default: %(default)s)")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    gen.add_argument("--device", help="cuda, mps or cpu (default: the first available)")
    gen.add_argument("--offload", action="store_true",
                     help="keep models on the CPU until needed (enable_model_cpu_offload): for small GPUs")
    return parser


def check_paths(args: argparse.Namespace) -> None:
    """Fail before any model loads: a missing photo, or outputs that would overwrite the user's files."""
    if not args.image.is_file():
        raise SystemExit(f"error: --image {args.image} does not exist.")
    for path in (args.output, args.save_depth):
        if path is not None and path.exists() and not args.overwrite:
            raise SystemExit(f"error: {path} exists; choose another --output / --save-depth or pass --overwrite.")


def pick_device(name: str | None):
    """The library's device policy: the one named, else CUDA, then MPS, then the CPU."""
    from depth_anything.devices import choose_device

    return choose_device(name)


def pick_dtype(device, precision: str = "fp16"):
    """The generation model's dtype by the library's policy: `precision` on an accelerator, float32 on the CPU."""
    from depth_anything.devices import choose_dtype

    return choose_dtype(precision if device.type != "cpu" else "fp32", device)


def depth_control(args: argparse.Namespace, controlnet: str, device):
    """The control image for `controlnet`, from --image, at --resolution on the short side.

    The depth model is freed afterwards, so that the generation model has the whole GPU.
    """
    import torch
    from PIL import Image

    from depth_anything.diffusers import DepthAnythingDetector

    try:
        photo = Image.open(args.image)
        photo.load()
    except OSError as error:
        raise SystemExit(f"error: cannot read --image {args.image}: {error}") from error
    detector = DepthAnythingDetector.from_pretrained(args.depth_model, device=device)
    try:
        control = detector(
            photo.convert("RGB"),
            detect_resolution=args.detect_resolution,
            image_resolution=args.resolution,
            normalize=args.normalize,
            controlnet=controlnet,
            tiled=args.tiled,
        )
    except ValueError as error:
        raise SystemExit(f"error: {error}") from error
    del detector
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if args.save_depth:
        save_image(control, args.save_depth)
    return control


def place_pipeline(pipe, args: argparse.Namespace, device):
    pipe.set_progress_bar_config(disable=not sys.stderr.isatty())
    if args.offload:
        pipe.enable_model_cpu_offload(device=device)
        return pipe
    return pipe.to(device)


def generator(seed: int):
    import torch

    return torch.Generator("cpu").manual_seed(seed)


def save_image(image, path: Path) -> None:
    """Write whole or not at all (the library's atomic write): an interrupted save leaves no half-written file."""
    from PIL import Image

    from depth_anything.files import write_atomic

    image_format = Image.registered_extensions().get(path.suffix.lower(), "PNG")  # .jpg -> JPEG, ...
    write_atomic(path, lambda file: image.save(file, format=image_format))
    print(f"saved {path} ({image.width}x{image.height})")


def controlnet_example(
    argv, description: str, *, pipeline: str, base_model: str, controlnet: str, resolution: int, guidance: float,
    conditioning_scale: float, negative_prompt: str,
) -> None:
    """The SD1.5 and SDXL examples: depth from --image, then a diffusers ControlNet pipeline named `pipeline`."""
    parser = build_parser(description, resolution=resolution, steps=30, guidance=guidance)
    parser.add_argument("--negative-prompt", default=negative_prompt, help="what to avoid (default: %(default)s)")
    parser.add_argument("--base-model", default=base_model, help="pipeline id or folder (default: %(default)s)")
    parser.add_argument("--controlnet", default=controlnet, help="depth ControlNet id or folder (default: %(default)s)")
    parser.add_argument("--conditioning-scale", type=float, default=conditioning_scale,
                        help="how strongly depth steers the image (default: %(default)s)")
    args = parser.parse_args(argv)
    check_paths(args)

    import diffusers

    device = pick_device(args.device)
    dtype = pick_dtype(device)
    control = depth_control(args, args.controlnet, device)

    controlnet_model = diffusers.ControlNetModel.from_pretrained(args.controlnet, torch_dtype=dtype)
    pipe = getattr(diffusers, pipeline).from_pretrained(args.base_model, controlnet=controlnet_model, torch_dtype=dtype)
    pipe = place_pipeline(pipe, args, device)
    # Without height / width the pipeline generates at the control image's size: the photo's aspect ratio.
    image = pipe(
        args.prompt,
        negative_prompt=args.negative_prompt,
        image=control,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        controlnet_conditioning_scale=args.conditioning_scale,
        generator=generator(args.seed),
    ).images[0]
    save_image(image, args.output)
