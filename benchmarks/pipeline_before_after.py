"""This checkout against an earlier one, same weights, same inputs, one run: the detector's memory and time on a
12 MP photo, and the command's images/s on a folder of photos.

1. The diffusers detector turns a 4000x3000 photo into a 1024-px control image (`image_resolution=1024`). Each
   checkout runs in its own fresh process; the peak resident memory of the call itself is read from the kernel
   (VmHWM, reset through /proc/self/clear_refs just before the call), and its time is the median of the calls.
2. `python -m depth_anything.cli` on a folder of mixed-size photos (8-bit depth PNGs out), as a user runs it, as
   a subprocess: start-up, model loading and writing are counted.

Rounds alternate which checkout goes first. Make the earlier checkout with git, e.g.

    git worktree add /tmp/before <commit>
    .venv/bin/python benchmarks/pipeline_before_after.py --before /tmp/before

Weights are random in the official layout (tests/checkpoints.py): speed and memory do not depend on the values.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

DETECTOR_CALL = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np, torch
    from PIL import Image
    from depth_anything.diffusers import DepthAnythingDetector

    def rss(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) * 1024
        raise RuntimeError(field)

    checkpoint, photo_path, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(2)
    detector = DepthAnythingDetector.from_pretrained(checkpoint, device="cpu")
    photo = Image.open(photo_path).convert("RGB")
    photo.load()
    detector(photo.resize((400, 300)), image_resolution=256)  # warm up kernels and allocator on a small call
    times, peaks = [], []
    for _ in range(calls):
        before = rss("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current resident size
        start = time.perf_counter()
        control = detector(photo, image_resolution=1024)
        times.append(time.perf_counter() - start)
        peaks.append(rss("VmHWM") - before)
    print(json.dumps({"times": times, "peaks": peaks, "size": control.size}))
    """
)


def run_detector(repo: Path, checkpoint: Path, photo: Path, calls: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    result = subprocess.run([sys.executable, "-c", DETECTOR_CALL, str(checkpoint), str(photo), str(calls)],
                            env=env, capture_output=True, text=True, cwd=repo)
    if result.returncode != 0:
        raise SystemExit(f"detector run in {repo} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_cli(repo: Path, checkpoint: Path, folder: Path, outdir: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(repo), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "depth_anything.cli", "--checkpoint", str(checkpoint), "--img-path",
               str(folder), "--outdir", str(outdir), "--pred-only", "--grayscale", "--device", "cpu", "-q"]
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=repo)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"the command in {repo} failed:\n{result.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the earlier commit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2, help="detector calls per process")
    parser.add_argument("--images", type=int, default=12, help="photos in the command's folder")
    parser.add_argument("--encoder", default="vits", choices=("vits", "vitb", "vitl"))
    args = parser.parse_args()

    from checkpoints import write_checkpoint
    from cli_throughput import make_folder, photo

    repos = {"before": args.before.resolve(), "after": ROOT}
    with tempfile.TemporaryDirectory(prefix="pipeline_bench_") as scratch:
        work = Path(scratch)
        checkpoint = write_checkpoint(work / f"depth_anything_v2_{args.encoder}.pth", args.encoder, seed=0)
        photo_path = work / "photo_12mp.jpg"
        photo(3000, 4000, 7).save(photo_path, quality=92)
        folder = work / "photos"
        make_folder(folder, args.images)

        detector = {name: {"times": [], "peaks": []} for name in repos}
        cli = {name: [] for name in repos}
        for round_ in range(args.rounds):
            order = list(repos) if round_ % 2 == 0 else list(repos)[::-1]
            for name in order:
                result = run_detector(repos[name], checkpoint, photo_path, args.calls)
                detector[name]["times"] += result["times"]
                detector[name]["peaks"] += result["peaks"]
            for name in order:
                cli[name].append(run_cli(repos[name], checkpoint, folder, work / f"out_{name}_{round_}"))
            print(f"round {round_ + 1}: " + ", ".join(
                f"{name} detector {np.median(detector[name]['times']):.2f} s / "
                f"{max(detector[name]['peaks']) / 2**20:.0f} MiB, command {args.images / cli[name][-1]:.3f} img/s"
                for name in repos), flush=True)

        print(f"\n12 MP photo (4000x3000) -> 1024-px control image, {args.encoder}, fp32 CPU; "
              f"{args.images} photos for the command")
        print("| | detector time (median) | detector peak memory of the call | command images/s (median) |")
        print("|---|---|---|---|")
        for name in repos:
            print(f"| {name} | {np.median(detector[name]['times']):.2f} s | "
                  f"{np.median(detector[name]['peaks']) / 2**20:.0f} MiB | {args.images / np.median(cli[name]):.3f} |")
        ratio = [b / a for b, a in zip(cli["before"], cli["after"])]
        print(f"command speed after/before per round: {', '.join(f'{r:.2f}x' for r in ratio)}; "
              f"detector peak before/after: "
              f"{np.median(detector['before']['peaks']) / np.median(detector['after']['peaks']):.1f}x")


if __name__ == "__main__":
    main()
