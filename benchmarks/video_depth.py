"""Video Depth Anything in our pipeline: speed against per-frame v2, memory over long clips, GPU figures.

    python benchmarks/video_depth.py speed --frames 44 --sizes 266 518      # CPU frames/s, VDA-S vs v2-S
    python benchmarks/video_depth.py memory --frames 300 3000 --size 28     # peak memory, streamed clip
    python benchmarks/video_depth.py gpu --frames 1000 --size 518           # ms/frame fp16 and peak VRAM

speed: one process, the same frames (synthetic 16:9 video frames at 640 x 360), fp32, the same torch threads;
VDA-S through `infer_video` (the official windows: 32 frames per pass for 22 new ones) and v2-S through
`infer_video` (per frame, `batch_size` frames per pass), alternated round by round so that load on a shared
machine hits both alike; the best round of each is reported.

memory: each clip length in a fresh process; a decoder stand-in yields the frames one by one and the depth is
consumed frame by frame (as the command line and the nodes do), so neither the clip nor its depth is ever held
whole. Reported: peak resident memory of the process (ru_maxrss) and its growth over the model's load.

gpu: VDA-S in fp16 on CUDA over a streamed clip; ms per frame over the clip (after one warm-up window) and
torch.cuda.max_memory_allocated.

No official weights can be downloaded here, so the weights are random in the official layout
(tests/checkpoints.py): speed and memory do not depend on the values. Give --checkpoint for real files.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from depth_anything import DepthModel  # noqa: E402


def frames(count: int, height: int = 360, width: int = 640):
    """A moving synthetic scene, one uint8 frame at a time (what a decoder yields)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) / max(height, width)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 16, (height, width, 3), dtype=np.uint8)
    for t in range(count):
        r = np.sin(9 * x + 0.2 * t) * np.cos(7 * y)
        g = np.cos(5 * (x - 0.01 * t) + 3 * y)
        b = ((x - 0.3 - 0.004 * t) ** 2 + (y - 0.5) ** 2 < 0.04).astype(np.float32)
        rgb = (np.stack([r, g, b], axis=-1) * 0.4 + 0.5) * 230
        yield (rgb.astype(np.uint8) + noise)


def checkpoints(folder: Path, given: list[str] | None) -> tuple[Path, Path]:
    if given:
        return Path(given[0]), Path(given[1])
    from checkpoints import write_checkpoint, write_video_checkpoint

    return (
        write_video_checkpoint(folder / "video_depth_anything_vits.pth", seed=0),
        write_checkpoint(folder / "depth_anything_v2_vits.pth", seed=0),
    )


def speed(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        vda_path, v2_path = checkpoints(Path(tmp), args.checkpoint)
        models = {
            "VDA-S": DepthModel.from_pretrained(vda_path, device="cpu"),
            "v2-S": DepthModel.from_pretrained(v2_path, device="cpu"),
        }
        clip = list(frames(args.frames))
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.frames} frames of 640x360, fp32")
        for size in args.sizes:
            best = {name: float("inf") for name in models}
            for _ in range(args.rounds):
                for name, model in models.items():
                    start = time.perf_counter()
                    model.infer_video(clip, input_size=size, batch_size=args.batch_size)
                    best[name] = min(best[name], time.perf_counter() - start)
            fps = {name: args.frames / seconds for name, seconds in best.items()}
            print(
                f"input {size}: VDA-S {fps['VDA-S']:.3f} frames/s, v2-S {fps['v2-S']:.3f} frames/s, "
                f"VDA-S / v2-S = x{fps['VDA-S'] / fps['v2-S']:.2f}"
            )


def memory_child(args) -> None:
    """One clip length in this process: prints JSON with the peak resident memory before and after."""
    with tempfile.TemporaryDirectory() as tmp:
        vda_path, _ = checkpoints(Path(tmp), args.checkpoint)
        model = DepthModel.from_pretrained(vda_path, device="cpu")
        list(model.infer_video(frames(WARMUP, args.height, args.width), input_size=args.size))  # allocator warm
        loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start, count = time.perf_counter(), 0
        for depth in model.infer_video(frames(args.frames[0], args.height, args.width), input_size=args.size):
            count += 1  # consumed one by one, as a writer would
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"frames": count, "loaded_kib": loaded, "peak_kib": peak, "seconds": seconds}))


WARMUP = 60  # frames run before measuring: two windows, so every buffer of a window exists once


def memory(args) -> None:
    print(f"frames {args.width}x{args.height}, input_size {args.size}, streamed in and out, fp32 CPU, "
          f"{args.threads or torch.get_num_threads()} threads")
    for count in args.frames:
        command = [sys.executable, __file__, "memory-child", "--frames", str(count), "--size", str(args.size),
                   "--height", str(args.height), "--width", str(args.width)]
        if args.checkpoint:
            command += ["--checkpoint", *args.checkpoint]
        if args.threads:
            command += ["--threads", str(args.threads)]
        result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        print(
            f"{result['frames']} frames: peak {result['peak_kib'] / 1024:.0f} MiB, "
            f"{(result['peak_kib'] - result['loaded_kib']) / 1024:.1f} MiB above the warmed-up model, "
            f"{result['frames'] / result['seconds']:.1f} frames/s"
        )


def gpu(args) -> None:
    if not torch.cuda.is_available():
        print("not measured: no CUDA device here")
        return
    with tempfile.TemporaryDirectory() as tmp:
        vda_path, _ = checkpoints(Path(tmp), args.checkpoint)
        model = DepthModel.from_pretrained(vda_path, device="cuda", dtype="fp16")
        clip = (args.height, args.width)
        list(model.infer_video(frames(WINDOW_WARMUP, *clip), input_size=args.size, batch_size=args.batch_size))
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        depths = model.infer_video(frames(args.frames[0], *clip), input_size=args.size, batch_size=args.batch_size)
        count = sum(1 for _ in depths)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated()
    print(
        f"{torch.cuda.get_device_name()}: {count} frames of {args.width}x{args.height} at input {args.size}, fp16, "
        f"batch_size {args.batch_size}: {1000 * seconds / count:.2f} ms/frame, peak VRAM {peak / 2**30:.2f} GiB"
    )


WINDOW_WARMUP = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["speed", "memory", "memory-child", "gpu"])
    parser.add_argument("--frames", type=int, nargs="+", default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[266, 518], help="speed: input sizes")
    parser.add_argument("--size", type=int, default=None, help="memory / gpu: input size")
    parser.add_argument("--height", type=int, default=None, help="memory / gpu: frame height (72 / 360)")
    parser.add_argument("--width", type=int, default=None, help="memory / gpu: frame width (128 / 640)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--checkpoint", nargs=2, metavar=("VDA", "V2"), help="real VDA-S and v2-S files")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.what == "speed":
        args.frames = (args.frames or [44])[0]
        speed(args)
    elif args.what in ("memory", "memory-child"):
        args.frames = args.frames or [300, 3000]
        args.size = args.size or 28
        args.height, args.width = args.height or 72, args.width or 128
        memory(args) if args.what == "memory" else memory_child(args)
    else:
        args.frames = args.frames or [1000]
        args.size = args.size or 518
        args.height, args.width = args.height or 360, args.width or 640
        gpu(args)


if __name__ == "__main__":
    main()
