"""Tiled video depth with Video Depth Anything: tiles in time (`infer_video(tiled=True)`) against whole frames
and against tiling each frame on its own, with a stand-in temporal model; and the memory the tile clips hold.

No real weights can be downloaded here, so the network is a stand-in `Backend` on a random-weight Video Depth
Anything Small (the windows, stitching, tile clips and fusion are the product's own code; only the network's
answer is replaced). The frames are a camera panning over a scene whose pixels hold their own scene position,
so the stand-in reads from its (normalised, resized) input where each pixel is and at which time: a ground
ramp, two boxes (one moving), thin poles and wires. It renders the truth each input pixel covers (4 x 4
supersampled: detail finer than the view is averaged away, as a network's is) and answers as a temporal model:

  per call (a window of up to 32 frames, or one frame): a random scale (x0.2-5) and shift; on a crop (any view
      but the whole frame) a tilt and a bend (5 % of the range R), range compression (gamma 1/1.5-1.5) and a
      lift of flat regions (5 % of R); and noise (1 % of R) -- all shared by the frames of the call, as a
      temporal model agrees with itself across the frames it sees together;
  per frame: jitter, 0.25 % of R ("steady") or 1 % of R ("jittery": a temporal model no steadier from frame to
      frame within its window than its noise, the hard case for tiles in time).

So a clip of crops is consistent over time, and one frame at a time is not: each call draws its own faults.

Methods: *whole* = `infer_video` on the whole frames; *tiled in time* = `infer_video(tiled=True)` (the whole
frames as one clip, every tile position a clip of its own, each frame's tiles fitted to that frame's whole-frame
depth); *tiled per frame* = `infer(frame, tiled=True)` frame by frame (each tile and each global pass a call of
its own: what tiling an image model frame by frame does).

Metrics, after one least-squares scale + shift in disparity for the whole clip ("clip": what one range for the
clip sees) and after one per frame ("frame": what is left when each frame is normalised on its own): AbsRel (in
depth); flicker = mean |(d_t - d_t-1) - (g_t - g_t-1)| over pixels and frame pairs, % of R (how much the depth
changes between frames beyond what the truth does); boundary F1 (Depth Pro's, per-frame alignment, mean over
frames); frames through the network (all calls together: the compute); memory = each method in a fresh process: its peak resident memory above what the loaded model and
the frames already held.

  python benchmarks/video_tiling.py [--frames 40] [--results benchmarks/video_tiling_results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from checkpoints import write_video_checkpoint  # noqa: E402
from tiling import boundary_f1, smooth_noise  # noqa: E402  (the image tiling benchmark's metric, noise)

from depth_anything import DepthModel  # noqa: E402
from depth_anything.backends import Backend  # noqa: E402
from depth_anything.transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

HEIGHT, WIDTH, INPUT_SIZE = 360, 640, 112  # frames, and the network's short side: tiles see 3.2x finer
VIEW = 0.6  # the camera shows this share of the scene's width; it pans across the rest over the clip
RANGE = 1.3  # the truth's disparity range R (ground 0.2-0.7, boxes 1.2 and 1.5)
METHODS = ("whole", "tiled in time", "tiled per frame")
MEMORY_SIZES = ((HEIGHT, WIDTH, INPUT_SIZE), (720, 1280, 224))  # (height, width, input_size)


def truth(ys: torch.Tensor, xs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Disparity at scene positions (ys, xs in [0, 1]) and time t in [0, 1]: ground, boxes, poles, wires."""
    d = 0.2 + 0.5 * ys
    d = torch.where((ys > 0.3) & (ys < 0.7) & (xs > 0.15) & (xs < 0.35), torch.full_like(d, 1.2), d)
    mover = 0.45 + 0.3 * t  # a box crossing the scene
    d = torch.where((ys > 0.55) & ((xs - mover).abs() < 0.08), torch.full_like(d, 1.5), d)
    for pole in (0.42, 0.5, 0.58, 0.66, 0.81, 0.9):
        d = torch.where(((xs - pole).abs() < 0.0012) & (ys > 0.1), torch.full_like(d, 1.0), d)
    wire = 0.2 + 0.05 * torch.sin(12 * xs)
    return torch.where((ys - wire).abs() < 0.002, torch.full_like(d, 0.9), d)


def frame(index: int, count: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """Frame `index` of the clip, float32 (H, W, 3) in [0, 1]: each pixel's scene y, scene x and time (floats
    keep the positions exact through the network's resize)."""
    t = index / max(count - 1, 1)
    left = (1 - VIEW) * t
    ys = (torch.arange(height) + 0.5) / height
    xs = left + VIEW * (torch.arange(width) + 0.5) / width
    image = torch.stack([ys[:, None].expand(height, width), xs[None, :].expand(height, width),
                         torch.full((height, width), t)], dim=-1)
    return image.numpy().astype(np.float32)


def frame_truth(index: int, count: int) -> np.ndarray:
    image = torch.from_numpy(frame(index, count))
    return truth(image[..., 0], image[..., 1], image[..., 2]).numpy()


class TemporalStandIn(Backend):
    """A temporal depth "network" that reads where each input pixel is (see the module's docstring)."""

    name = "temporal stand-in"

    def __init__(self, model, seed: int = 0, jitter: float = 0.0025):
        super().__init__(model)
        self.seed, self.jitter, self.frames = seed, jitter, 0
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        self.frames += len(pixels)
        where = pixels.float() * self.std + self.mean  # back to the positions the frames hold
        ys, xs, ts = where[:, 0], where[:, 1], where[:, 2]
        seen = self._supersampled(ys, xs, ts)  # (T, h, w)
        # one draw per call, from what the call shows (a network is deterministic): its first frame's bounds
        key = [self.seed, *(round(float(v) * 1e4) for v in (ys[0].min(), xs[0].min(), xs[0].max(), ts[0, 0, 0]))]
        rng = np.random.default_rng(key)
        whole = float(xs[0].max() - xs[0].min()) > 0.9 * VIEW
        out = seen if whole else self._crop_faults(seen, rng)
        out = out + 0.01 * RANGE * smooth_noise(rng, out.shape[-2:])
        jitter = torch.stack([smooth_noise(rng, out.shape[-2:]) for _ in range(len(out))])
        out = out + self.jitter * RANGE * jitter
        scale = math.exp(rng.uniform(math.log(0.2), math.log(5.0)))
        return (scale * out + rng.uniform(-1, 1) * RANGE).float()

    @staticmethod
    def _supersampled(ys, xs, ts, factor: int = 4) -> torch.Tensor:
        # pixel spacing from the positions themselves (the input was resized): sub-pixel offsets within each pixel
        dy = (ys[:, -1, 0] - ys[:, 0, 0]) / max(ys.shape[1] - 1, 1)
        dx = (xs[:, 0, -1] - xs[:, 0, 0]) / max(xs.shape[2] - 1, 1)
        total = torch.zeros_like(ys)
        for i in range(factor):
            for j in range(factor):
                oy = ((i + 0.5) / factor - 0.5) * dy[:, None, None]
                ox = ((j + 0.5) / factor - 0.5) * dx[:, None, None]
                total += truth(ys + oy, xs + ox, ts)
        return total / factor**2

    @staticmethod
    def _crop_faults(seen: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        low, high = float(seen.min()), float(seen.max())
        span = max(high - low, 1e-6)
        gamma = math.exp(rng.uniform(-math.log(1.5), math.log(1.5)))
        out = low + span * ((seen - low) / span) ** gamma
        gy, gx = torch.gradient(seen, dim=(-2, -1))
        flat = torch.exp(-((torch.hypot(gx, gy) / (0.25 * span / max(seen.shape[-2:]))) ** 2))
        out = out + rng.uniform(-1, 1) * 0.05 * RANGE * flat
        h, w = seen.shape[-2:]
        v = ((torch.arange(h) + 0.5) / h - 0.5)[:, None]
        u = ((torch.arange(w) + 0.5) / w - 0.5)[None, :]
        angle = rng.uniform(0, 2 * math.pi)
        plane = math.cos(angle) * u + math.sin(angle) * v
        xx, yy, xy = rng.uniform(-1, 1, 3)
        bend = xx * u * u + yy * v * v + xy * u * v
        bend = (bend - bend.mean()) / max(float(bend.max() - bend.min()), 1e-12)
        return out + rng.uniform(-1, 1) * 0.05 * RANGE * plane + rng.uniform(-0.5, 0.5) * 0.05 * RANGE * bend


JITTER = {"steady": 0.0025, "jittery": 0.01}


def stand_in_model(folder: Path, jitter: str = "steady") -> tuple[DepthModel, TemporalStandIn]:
    model = DepthModel.from_pretrained(write_video_checkpoint(folder / "video_depth_anything_vits.pth", seed=0),
                                       device="cpu")
    backend = TemporalStandIn(model, jitter=JITTER[jitter])
    model.use_backend(backend)
    return model, backend


def run(method: str, model: DepthModel, frames: list[np.ndarray], input_size: int = INPUT_SIZE) -> torch.Tensor:
    if method == "whole":
        return model.infer_video(frames, input_size=input_size)
    if method == "tiled in time":
        return model.infer_video(frames, input_size=input_size, tiled=True)
    return torch.cat([model.infer(f, input_size=input_size, tiled=True) for f in frames])


def _aligned(depth: np.ndarray, truths: np.ndarray) -> np.ndarray:
    """One least-squares scale + shift in disparity mapping `depth` onto `truths` (any shape)."""
    p, g = depth.reshape(-1).astype(np.float64), truths.reshape(-1).astype(np.float64)
    scale, shift = np.linalg.lstsq(np.stack([p, np.ones_like(p)], 1), g, rcond=None)[0]
    return scale * depth + shift


def scores(depth: np.ndarray, truths: np.ndarray) -> dict:
    """Per clip (one scale + shift for the clip: what one range for the clip, normalize="batch", sees) and per
    frame (each frame aligned on its own: what is left when every frame is normalised by itself)."""
    valid = np.ones(truths.shape[1:], bool)
    out = {}
    for name, aligned in (("clip", _aligned(depth, truths)),
                          ("frame", np.stack([_aligned(d, t) for d, t in zip(depth, truths)]))):
        abs_rel = float(np.mean(np.abs(1 / np.clip(aligned, truths.min(), None) - 1 / truths) * truths))
        change = np.diff(aligned, axis=0) - np.diff(truths, axis=0)
        out[f"abs_rel_{name}"] = abs_rel
        out[f"flicker_{name}"] = 100 * float(np.abs(change).mean()) / RANGE
        if name == "frame":
            out["boundary_f1"] = float(np.mean([boundary_f1(a, SimpleNamespace(disparity=t, valid=valid))
                                                for a, t in zip(aligned, truths)]))
    return out


MEMORY_PROBE = """
import json, os, sys, tempfile, threading, time
from pathlib import Path
import video_tiling as bench

def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

with tempfile.TemporaryDirectory() as folder:
    model, _ = bench.stand_in_model(Path(folder))
    count, height, width, input_size = (int(v) for v in sys.argv[2:6])
    frames = [bench.frame(i, count, height, width) for i in range(count)]
    bench.run(sys.argv[1], model, frames[:2], input_size)  # warm-up: kernels, threads, allocator pools
    baseline, peak, done = resident_mb(), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], resident_mb())
            time.sleep(0.005)

    thread = threading.Thread(target=sample)
    thread.start()
    bench.run(sys.argv[1], model, frames, input_size)
    done.set()
    thread.join()
    print(json.dumps({"memory_mb": max(peak[0], resident_mb()) - baseline}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=40, help="clip length (40: two windows)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "video_tiling_results.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    frames = [frame(i, args.frames) for i in range(args.frames)]
    truths = np.stack([frame_truth(i, args.frames) for i in range(args.frames)])
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for jitter in JITTER:
            model, backend = stand_in_model(Path(folder), jitter)
            for method in METHODS:
                backend.frames = 0
                depth = run(method, model, frames).numpy()
                rows.append({"stand-in": jitter, "method": method, **scores(depth, truths), "frames": backend.frames})
    memory = []
    for height, width, input_size in MEMORY_SIZES:  # the stand-in's jitter does not change what is held
        for method in METHODS:
            probe = subprocess.run(
                [sys.executable, "-c", MEMORY_PROBE, method, str(args.frames), str(height), str(width),
                 str(input_size)], cwd=ROOT / "benchmarks", capture_output=True, text=True, check=True,
            )
            memory.append({"size": f"{width}x{height}", "input_size": input_size, "method": method,
                           **json.loads(probe.stdout.strip().splitlines()[-1])})
    args.results.write_text(json.dumps({"frames": args.frames, "size": f"{WIDTH}x{HEIGHT}",
                                        "input_size": INPUT_SIZE, "rows": rows, "memory": memory}, indent=1))
    print(f"{args.frames} frames of {WIDTH}x{HEIGHT}, input_size {INPUT_SIZE}")
    print("| stand-in | method | AbsRel (clip) | flicker % of R (clip) | AbsRel (frame) | flicker % of R (frame) "
          "| boundary F1 | frames through the network |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['stand-in']} | {r['method']} | {r['abs_rel_clip']:.4f} | {r['flicker_clip']:.3f} | "
              f"{r['abs_rel_frame']:.4f} | {r['flicker_frame']:.3f} | {r['boundary_f1']:.3f} | {r['frames']} |")
    print()
    print("| frames | input_size | method | memory MB (peak above the loaded model and the frames) |")
    print("|---|---|---|---|")
    for m in memory:
        print(f"| {m['size']} | {m['input_size']} | {m['method']} | {m['memory_mb']:.0f} |")


if __name__ == "__main__":
    main()
