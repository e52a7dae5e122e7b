"""Peak memory of the `depth-anything` command on huge images and on long folders.

Each measurement is one run of the real command in a fresh process (its peak resident set size from the kernel,
`os.wait4`), on generated PNGs: huge ones that compress to a few hundred KB (below Pillow's decompression-bomb
warning: 9400 x 9400 is 88 MP and 100 MP is 10000 x 10000) and folders of small photos-sized ones. The model is a
random v2-Small checkpoint in the official layout (no weights can be downloaded here; memory does not depend on
the values).

    .venv/bin/python benchmarks/memory.py                      # this checkout
    .venv/bin/python benchmarks/memory.py --repo /path/to/other/checkout --label main

What it shows: peak RSS for 1 and 6 huge images (flat when the read-ahead is bounded in bytes), for one 100 MP
image in each output format, and for folders of 10, 40 and 160 small images (flat in their number).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def huge_png(path: Path, side: int) -> Path:
    """A side x side RGB PNG that compresses well (gradients and a checkerboard), written in strips."""
    y, x = np.mgrid[0:side, 0:side]
    image = np.stack([x * 255 // side, y * 255 // side, (x // 512 + y // 512) % 2 * 200], -1).astype(np.uint8)
    Image.fromarray(image).save(path, compress_level=9)
    return path


def small_png(path: Path, seed: int, size=(640, 480)) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, compress_level=1)
    return path


def peak_rss(command: list[str], env: dict) -> tuple[float, float, int]:
    """(peak RSS in MB, wall seconds, exit status) of one run of `command`."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        error = process.stderr.read().decode()[-2000:]
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}): {error}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start, process.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose depth_anything is measured")
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--quick", action="store_true", help="skip the 6-image and 160-image runs")
    args = parser.parse_args()

    from checkpoints import write_checkpoint

    env = dict(os.environ, PYTHONPATH=str(args.repo.resolve()), OMP_NUM_THREADS="2")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        checkpoint = write_checkpoint(scratch / "depth_anything_v2_vits.pth", "vits")
        base = [sys.executable, "-m", "depth_anything.cli", "--checkpoint", str(checkpoint), "-q", "--overwrite"]

        def run(name: str, inputs: Path, *extra: str) -> None:
            mb, seconds, _ = peak_rss([*base, "--img-path", str(inputs), "--outdir", str(scratch / "out"), *extra], env)
            shown = " ".join(extra) or "side-by-side (default)"
            print(f"| {args.label} | {name} | {shown} | {mb:,.0f} MB | {seconds:.0f} s |", flush=True)

        print("| code | inputs | format | peak RSS | wall |\n|---|---|---|---|---|")
        one, six = scratch / "huge1", scratch / "huge6"
        one.mkdir()
        six.mkdir()
        first = huge_png(one / "huge0.png", 9400)
        for i in range(6 if not args.quick else 0):
            os.link(first, six / f"huge{i}.png")
        run("1 x 9400x9400 (88 MP)", one)
        if not args.quick:
            run("6 x 9400x9400 (88 MP)", six)
        hundred = scratch / "hundred"
        hundred.mkdir()
        huge_png(hundred / "mp100.png", 10000)
        for extra in ((), ("--format", "png16"), ("--format", "npy"), ("--tiled", "on")):
            run("1 x 10000x10000 (100 MP)", hundred, *extra)
        for count in (10, 40) if args.quick else (10, 40, 160):
            folder = scratch / f"small{count}"
            folder.mkdir()
            for i in range(count):
                small_png(folder / f"img{i:04d}.png", i)
            run(f"{count} x 640x480", folder)


if __name__ == "__main__":
    main()
