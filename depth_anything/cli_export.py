"""`depth-anything export`: a checkpoint as a standalone ONNX file, checked against the eager network.

    depth-anything export --checkpoint depth_anything_v2_vits --format onnx --output v2_vits.onnx
    depth-anything export --checkpoint my.pth --family v1 --format onnx --dtype fp16 --sizes 518x518 --output a.onnx

The first word `export` selects this command; every other command line is the batch command (`cli.py`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .families import FAMILIES

EXIT_USAGE = 2

EXAMPLES = """\
examples:
  # any size (the official pre-processing gives a different size per aspect ratio), checked at 3 sizes
  depth-anything export --checkpoint depth_anything_v2_vits --format onnx --output v2_vits.onnx

  # fixed 518x518 input, float16 (for TensorRT / GPU providers)
  depth-anything export --checkpoint depth_anything_v2_vitl --format onnx --dtype fp16 --sizes 518x518 \\
      --output v2_vitl_518_fp16.onnx

  # any size, checked at the sizes you will use
  depth-anything export --checkpoint depth_anything_v2_vitb --format onnx --sizes 518x518,518x784,784x518 \\
      --output v2_vitb.onnx

The file takes pixel_values (N, 3, H, W) float32 (RGB in [0, 1], resized with the official rule, normalised) and
returns depth (N, H, W) float32. The command prints how to run it with onnxruntime alone.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="depth-anything export",
        description="Export a Depth Anything network as a standalone ONNX file that onnxruntime runs on the "
        "official pre-processing. The file is compared with the PyTorch network before it is written.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, metavar="PATH|NAME",
                        help="official .pth, .safetensors repack, transformers folder or a known name. "
                        "E.g. --checkpoint depth_anything_v2_vits")
    parser.add_argument("--family", metavar="NAME",
                        help=f"{', '.join(FAMILIES)}; needed when the file name does not tell. E.g. --family v1")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="the file format (onnx). E.g. --format onnx")
    parser.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32",
                        help="precision of the weights and layers; input and output stay float32. fp16 is for GPU "
                        "providers and TensorRT (onnxruntime's CPU kernels run fp32). Default fp32. E.g. --dtype fp16")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--sizes", metavar="HxW[,HxW...]",
                       help="network sizes (height x width, multiples of 14). One size: the file takes only that "
                       "size; several: any size, checked at each. E.g. --sizes 518x518,518x784")
    shape.add_argument("--dynamic", action="store_true",
                       help="any height and width (the default without --sizes), checked at 518x518, 518x784 and "
                       "784x518. E.g. --dynamic")
    parser.add_argument("--output", required=True, type=Path, metavar="FILE", help="the .onnx file to write. "
                        "E.g. --output v2_vits.onnx")
    parser.add_argument("--no-check", action="store_true",
                        help="skip running the file in onnxruntime against the PyTorch network. E.g. --no-check")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the file name. E.g. -q")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`depth-anything export ...`; returns the exit status."""
    args = build_parser().parse_args(argv)
    from .loading import CheckpointError, ModelNotAvailableError
    from .runtimes.onnx_export import ExportError, export_onnx, parse_sizes, usage

    try:
        sizes = parse_sizes(args.sizes) if args.sizes else None
        if args.output.is_dir():
            raise ExportError(f"--output {args.output} is a folder; give a file name, e.g. {args.output / 'model.onnx'}")
        try:
            import onnx  # noqa: F401 - the exporter writes through it
        except ImportError:
            raise ExportError(
                "exporting needs the onnx package: pip install 'depth-anything-preprocessor[onnx]'"
            ) from None
        from .model import DepthModel

        model = DepthModel.from_pretrained(args.checkpoint, family=args.family, device="cpu", dtype="fp32")
        result = export_onnx(model, args.output, dtype=args.dtype, sizes=sizes, dynamic=args.dynamic or None,
                             check=not args.no_check)
    except (ExportError, CheckpointError, ModelNotAvailableError, FileNotFoundError, ValueError) as exc:
        print(f"depth-anything export: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.quiet:
        print(result.path)
        return 0
    checked = ", ".join(f"{h}x{w}: {difference:.2g}" for (h, w), difference in result.checked.items())
    print(f"wrote {result.path} ({result.path.stat().st_size / 1e6:.0f} MB, {model.family.name} {model.encoder}, "
          f"{args.dtype})")
    if checked:
        print(f"matches the PyTorch network (max relative difference {checked})")
    print("\nRun it with onnxruntime alone:\n")
    print(usage(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
