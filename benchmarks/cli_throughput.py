"""Images/s of the `depth-anything` command against a loop over transformers' depth-estimation pipeline.

Same weights (one Depth Anything v2 checkpoint, exported to a transformers folder with
`depth_anything.hf_format.save_transformers`), same folder of mixed-size JPEG photos, same output (an 8-bit
grayscale depth PNG per image), same process, same torch threads, fp32 on the CPU. Both timings run from an
unloaded model to the last file on disk: loading, decoding, the network, resizing back and writing.

No official weights can be downloaded here, so the weights are random in the official layout
(tests/checkpoints.py): speed does not depend on the values. Give --checkpoint for a real file.

    python benchmarks/cli_throughput.py --images 12 --rounds 3 --encoder vits
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

# Landscape and portrait photo sizes; every side is at least 518, where both preprocessors agree on the
# size the network sees (short side 518), so both run the same network work.
SIZES = [(480, 640), (600, 800), (768, 1024), (800, 600), (960, 1280), (1200, 1600), (640, 480), (1080, 1440)]


def photo(height: int, width: int, seed: int) -> Image.Image:
    """A JPEG-like photo: smooth structure plus sensor noise (compresses and decodes like a real one)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) / max(height, width)
    channels = [np.sin(8 * x * rng.uniform(0.5, 2) + rng.uniform(0, 6)) * np.cos(6 * y * rng.uniform(0.5, 2))
                for _ in range(3)]
    image = (np.stack(channels, axis=-1) * 0.4 + 0.5) * 255 + rng.normal(0, 8, (height, width, 3))
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def make_folder(folder: Path, count: int) -> None:
    for i in range(count):
        height, width = SIZES[i % len(SIZES)]
        sub = folder / f"set{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        photo(height, width, i).save(sub / f"photo_{i:03d}.jpg", quality=92)


def run_transformers(hf_folder: Path, images: list[Path], outdir: Path) -> float:
    """The usual loop: pipeline(image) per file, its 'depth' PIL image saved as PNG."""
    from transformers import pipeline

    start = time.perf_counter()
    estimator = pipeline("depth-estimation", model=str(hf_folder), device="cpu", dtype=torch.float32)
    for path in images:
        result = estimator(Image.open(path))
        target = outdir / path.parent.name / (path.stem + ".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        result["depth"].save(target)
    return time.perf_counter() - start


def run_cli(checkpoint: Path, folder: Path, outdir: Path, batch_size: int) -> float:
    from depth_anything.cli import main

    start = time.perf_counter()
    code = main(["--checkpoint", str(checkpoint), "--img-path", str(folder), "--outdir", str(outdir),
                 "--pred-only", "--grayscale", "--batch-size", str(batch_size), "--device", "cpu", "-q"])
    elapsed = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"depth-anything exited with {code}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=12, help="number of photos in the folder")
    parser.add_argument("--encoder", default="vits", choices=("vits", "vitb", "vitl"))
    parser.add_argument("--checkpoint", type=Path, help="an official v2 .pth (default: random weights)")
    parser.add_argument("--batch-size", type=int, default=4, help="--batch-size of the command")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both, each round running both back to "
                        "back, who goes first alternating")
    args = parser.parse_args()

    from depth_anything import DepthAnything
    from depth_anything.hf_format import save_transformers

    work = Path(tempfile.mkdtemp(prefix="cli_bench_"))
    try:
        checkpoint = args.checkpoint
        if checkpoint is None:
            from checkpoints import write_checkpoint

            checkpoint = write_checkpoint(work / f"depth_anything_v2_{args.encoder}.pth", args.encoder, seed=0)
        hf_folder = save_transformers(DepthAnything.from_pretrained(checkpoint, device="cpu"), work / "hf")
        folder = work / "photos"
        make_folder(folder, args.images)
        images = sorted(folder.rglob("*.jpg"))

        ours, theirs = [], []
        for round_ in range(args.rounds):
            # alternate who goes first, so that a change in machine load does not favour one side
            runs = [("transformers", theirs, lambda out: run_transformers(hf_folder, images, out)),
                    ("depth-anything", ours, lambda out: run_cli(checkpoint, folder, out, args.batch_size))]
            for name, times, run in runs if round_ % 2 == 0 else runs[::-1]:
                times.append(run(work / f"out_{name}_{round_}"))
            print(f"round {round_ + 1}: transformers {len(images) / theirs[-1]:.3f} img/s, depth-anything "
                  f"{len(images) / ours[-1]:.3f} img/s, ratio {theirs[-1] / ours[-1]:.2f}x", flush=True)

        # the outputs agree: same weights, same sizes (transformers scales by the max; we by min..max)
        first = Path(images[0].parent.name) / (images[0].stem + ".png")
        a = np.asarray(Image.open(work / "out_depth-anything_0" / first), float)
        b = np.asarray(Image.open(work / "out_transformers_0" / first), float)
        correlation = np.corrcoef(a.ravel(), b.ravel())[0, 1]

        n = len(images)
        print(f"\n{n} photos ({', '.join(f'{w}x{h}' for h, w in sorted(set(SIZES)))}), {args.encoder}, fp32 CPU, "
              f"{torch.get_num_threads()} torch threads, {os.cpu_count()} cores")
        print(f"transformers pipeline loop: {n / min(theirs):.3f} img/s ({min(theirs):.1f} s)")
        print(f"depth-anything command:     {n / min(ours):.3f} img/s ({min(ours):.1f} s)")
        ratios = [t / o for t, o in zip(theirs, ours)]
        print(f"speed-up: median of rounds {float(np.median(ratios)):.2f}x, "
              f"best vs best {min(theirs) / min(ours):.2f}x (rounds: {', '.join(f'{r:.2f}x' for r in ratios)}); "
              f"depth maps correlate at {correlation:.4f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
