"""Peak memory of the `depth-anything` command on huge images and on long folders.

Each measurement is one run of the real command in a fresh process, its peak resident set size read from the
kernel as the process ends (VmHWM of /proc/self/status: the process's own high-water mark; the rusage figure
would include the parent's memory at the fork, which exec carries over), on generated PNGs: huge ones that compress to a few hundred KB (below Pillow's decompression-bomb
warning: 9400 x 9400 is 88 MP and 100 MP is 10000 x 10000) and folders of small photos-sized ones. The model is a
random v2-Small checkpoint in the official layout (no weights can be downloaded here; memory does not depend on
the values).

    .venv/bin/python benchmarks/memory.py                      # this checkout
    .venv/bin/python benchmarks/memory.py --repo /path/to/other/checkout --label main
    .venv/bin/python benchmarks/memory.py --only "100 MP"     # the cases whose inputs say 100 MP

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
    """A side x side RGB PNG that compresses well (gradients and a checkerboard), a few hundred KB."""
    ramp = (np.arange(side) * 255 // side).astype(np.uint8)
    checker = ((np.arange(side) // 512) % 2).astype(np.uint8)
    image = np.empty((side, side, 3), np.uint8)
    image[..., 0] = ramp[None, :]
    image[..., 1] = ramp[:, None]
    image[..., 2] = (checker[:, None] ^ checker[None, :]) * 200
    Image.fromarray(image).save(path, compress_level=9)
    return path


def small_png(path: Path, seed: int, size=(640, 480)) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, compress_level=1)
    return path


def child(arguments: list[str]) -> None:
    """Run the command in this process and append its own peak RSS (kB) to $MEMORY_REPORT."""
    from depth_anything.cli import main as command

    status = command(arguments)
    peak = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
    with open(os.environ["MEMORY_REPORT"], "a") as report:
        report.write(f"{peak.split()[1]} {status}\n")


def peak_rss(arguments: list[str], env: dict, report: Path) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one run of the command with `arguments` in a fresh process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", *arguments], env={**env, "MEMORY_REPORT": str(report)},
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    lines = report.read_text().splitlines() if report.exists() else []
    report.unlink(missing_ok=True)
    if done.returncode != 0 or not lines or lines[-1].split()[1] != "0":
        killed = " (killed: out of memory?)" if done.returncode == -9 else ""
        print(f"<!-- the command failed with {done.returncode}{killed}: {done.stderr[-300:]!r} -->", flush=True)
        return float("nan"), seconds
    return int(lines[-1].split()[0]) / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose depth_anything is measured")
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--quick", action="store_true", help="skip the 6-image and 160-image runs")
    parser.add_argument("--only", metavar="TEXT", help="run only the cases whose inputs contain TEXT, e.g. '100 MP'")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return

    from checkpoints import write_checkpoint

    env = dict(os.environ, PYTHONPATH=str(args.repo.resolve()), OMP_NUM_THREADS="2")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        checkpoint = write_checkpoint(scratch / "depth_anything_v2_vits.pth", "vits")
        base = ["--checkpoint", str(checkpoint), "-q", "--overwrite"]
        report = scratch / "report.txt"

        def run(name: str, inputs: Path, *extra: str) -> None:
            if args.only and args.only not in name:
                return
            command = [*base, "--img-path", str(inputs), "--outdir", str(scratch / "out"), *extra]
            mb, seconds = peak_rss(command, env, report)
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
