"""Tiled high-resolution depth on real ground truth: single pass vs naive tiling vs `tiled_predict`.

Scenes: Middlebury 2014 "Motorcycle" (scikit-image ships it: left image and ground-truth disparity at quarter
resolution, 741 x 500, invalid pixels inf), enlarged to 1280 (where "auto" starts to tile), 2K and 4K wide
(image bicubic, ground truth nearest so that its discontinuities stay one pixel sharp), and a generated 4K
street scene with thin structures (poles, wires, a fence, branches) whose disparity is exact.

No real weights can be downloaded here, so the depth model is a stand-in that behaves like Depth Anything where
tiling matters: it sees only a ~518-pixel view of what it is given (the official processing size), and returns
that view's disparity with a random scale and shift for every image (and mild noise). It knows what it is shown
by finding the view in the scene (an exact match of an 8 x 8 patch, or the whole frame); the tiler never looks
at pixels itself. Real weights run through the very same `tiled_predict`.

Methods, all through the same stand-in:
  single  one pass on the whole image (what every popular depth node does)
  naive   overlapping tiles, each min-max normalised, blended with the same raised-cosine weights (no alignment)
  ours    depth_anything.tiling.tiled_predict (global pass + aligned tiles + low frequencies from the global map)

Metrics, against ground truth on its valid pixels:
  AbsRel, delta1   after one least-squares scale + shift in disparity, measured in depth (1 / disparity)
  boundary F1      Depth Pro's scale-invariant boundary F1: occluding contours where neighbouring pixels'
                   depth ratio exceeds t, F1 per direction, t = 1.05 .. 1.25 (10 steps), weighted by t
  seam ratio       mean |gradient| of the error map in 5-pixel bands along tile borders and overlap centre
                   lines, over its mean elsewhere (1 = no seams; single pass is measured on the same lines)
  overlap disagr.  mean |difference| of neighbouring tiles over their overlap before blending, in % of the
                   depth range
  shift change     mean |difference| of the result with the tile grid shifted by half a tile, each aligned to
                   ground truth, in % of the range (for single pass: two runs, i.e. the stand-in's noise floor)
  time, passes     wall time with the stand-in (the faster of the plain and the shifted run), and network
                   passes: what dominates with a real model
  memory           peak working memory of tiled_predict beyond its input and output, 1 MP vs 16 MP, in fresh
                   processes (engine alone with a trivial predictor, and infer(tiled=True) with random vits)

Run:  python benchmarks/tiling.py            (about 3-4 minutes on 2 CPU cores; --quick for a smoke run)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from depth_anything import tiling  # noqa: E402
from depth_anything.tiling import tile_grid, tiled_predict  # noqa: E402
from depth_anything.transforms import processing_size  # noqa: E402

PATCH_KEY = 8  # side of the patch the stand-in uses to find a view in the scene


# ----------------------------------------------------------------------------------------------- scenes


class Scene:
    """An image (3, H, W) in [0, 1], its ground-truth disparity (H, W) and where that is valid."""

    def __init__(self, name: str, image: torch.Tensor, disparity: np.ndarray, valid: np.ndarray):
        self.name, self.image, self.disparity, self.valid = name, image, disparity.astype(np.float32), valid
        self.filled = _fill_invalid(self.disparity, valid)

    @property
    def size(self) -> str:
        return f"{self.image.shape[2]}x{self.image.shape[1]}"


def _fill_invalid(disparity: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Nearest valid value where the ground truth has none: the stand-in must answer everywhere."""
    if valid.all():
        return disparity
    from scipy.ndimage import distance_transform_edt

    _, (iy, ix) = distance_transform_edt(~valid, return_indices=True)
    return disparity[iy, ix]


def _dither(image: torch.Tensor, seed: int) -> torch.Tensor:
    # Half a grey level of noise: invisible, and it makes every 8 x 8 patch unique so views can be found.
    generator = torch.Generator().manual_seed(seed)
    noise = (torch.rand(image.shape, generator=generator) - 0.5) / 255.0
    return (image + noise).clamp(0, 1).contiguous()


def motorcycle(width: int) -> Scene:
    from skimage.data import stereo_motorcycle

    left, _, disparity = stereo_motorcycle()
    height = round(left.shape[0] * width / left.shape[1])
    image = torch.from_numpy(left).permute(2, 0, 1).float()[None] / 255.0
    image = F.interpolate(image, size=(height, width), mode="bicubic", align_corners=False)[0].clamp(0, 1)
    gt = torch.from_numpy(np.nan_to_num(disparity, posinf=0.0))[None, None]
    valid = torch.from_numpy(np.isfinite(disparity))[None, None].float()
    gt = F.interpolate(gt, size=(height, width), mode="nearest-exact")[0, 0].numpy()
    valid = F.interpolate(valid, size=(height, width), mode="nearest-exact")[0, 0].numpy() > 0.5
    return Scene("Motorcycle", _dither(image, width), gt, valid)


def thin_structures(width: int = 3840, height: int = 2160, seed: int = 0) -> Scene:
    """A street: sky, ground plane, houses, poles with sagging wires, a picket fence and bare branches.

    Disparity is exact (no anti-aliasing); structures are 2-7 pixels wide at 4K, below what a 518-pixel view
    can resolve.
    """
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    horizon = 0.55 * height
    disp = np.where(ys < horizon, 0.06, 0.08 + 0.85 * (ys - horizon) / (height - horizon)).astype(np.float32)
    colour = np.zeros((height, width, 3), np.float32)
    sky = np.stack([0.45 + 0.2 * ys / horizon, 0.6 + 0.2 * ys / horizon, 0.9 + 0 * ys], -1)
    ground = np.stack([0.35 + 0 * ys, 0.45 + 0 * ys, 0.25 + 0 * ys], -1)
    colour[:] = np.where((ys < horizon)[..., None], sky, ground)

    def paint(mask, value, rgb):
        disp[mask] = value
        colour[mask] = rgb

    for _ in range(7):  # houses on the horizon
        x0, w, h = rng.uniform(0, width), rng.uniform(0.06, 0.16) * width, rng.uniform(0.08, 0.2) * height
        paint((xs >= x0) & (xs < x0 + w) & (ys >= horizon - h) & (ys < horizon + 0.02 * height),
              rng.uniform(0.12, 0.2), rng.uniform(0.3, 0.8, 3))
    poles = []
    for i in range(6):  # poles at increasing distance, wires between neighbours
        x = (0.08 + 0.16 * i + rng.uniform(-0.02, 0.02)) * width
        d = 0.75 - 0.09 * i
        base = horizon + (d - 0.08) / 0.85 * (height - horizon)
        top = base - (0.55 + 0.1 * d) * height * d
        half = max(1.0, 5.0 * d)
        paint((abs(xs - x) <= half) & (ys >= top) & (ys <= base), d, (0.25, 0.2, 0.15))
        poles.append((x, top, d))
    for (x0, y0, d0), (x1, y1, d1) in zip(poles, poles[1:]):
        for k in range(3):  # three wires with sag, 1-3 px thick
            t = np.clip((xs - x0) / (x1 - x0), 0, 1)
            wire_y = y0 + (y1 - y0) * t + 18 * k + 0.06 * height * 4 * t * (1 - t)
            inside = (xs >= x0) & (xs <= x1) & (abs(ys - wire_y) <= 0.5 + 0.5 * k)
            value = d0 + (d1 - d0) * t
            disp[inside] = value[inside]
            colour[inside] = 0.08
    fence_d, fence_top = 0.8, 0.78 * height  # a picket fence across the lower right
    fence_base = horizon + (fence_d - 0.08) / 0.85 * (height - horizon)
    pickets = (xs > 0.55 * width) & ((xs % 34) < 6) & (ys >= fence_top) & (ys <= fence_base)
    rails = (xs > 0.55 * width) & ((abs(ys - fence_top - 40) < 3) | (abs(ys - fence_base + 40) < 3))
    paint(pickets | rails, fence_d, (0.85, 0.8, 0.7))
    for _ in range(40):  # bare branches: thin random walks in front of the sky
        x, y, d = rng.uniform(0.0, 1.0) * width, rng.uniform(0.05, 0.45) * height, rng.uniform(0.3, 0.5)
        angle = rng.uniform(0, 2 * math.pi)
        for _step in range(300):
            angle += rng.normal(0, 0.15)
            x, y = x + 2 * math.cos(angle), y + 2 * math.sin(angle)
            if not (2 <= x < width - 2 and 2 <= y < height - 2):
                break
            disp[int(y) - 1 : int(y) + 1, int(x) - 1 : int(x) + 1] = d
            colour[int(y) - 1 : int(y) + 1, int(x) - 1 : int(x) + 1] = (0.2, 0.15, 0.1)
    colour += rng.normal(0, 0.03, colour.shape).astype(np.float32)  # texture
    image = torch.from_numpy(colour.clip(0, 1)).permute(2, 0, 1)
    return Scene("Thin structures", _dither(image, seed + 7), disp, np.ones_like(disp, bool))


# ----------------------------------------------------------------------------------------------- stand-in


class StandInModel:
    """A depth "model" that sees only a ~518-px view of its input and answers up to a random scale and shift.

    It finds each view in the scene (exact 8 x 8 patch match; otherwise the view must be the whole frame,
    resized), area-averages the ground truth over that view at the official processing size (what a 518-px
    network can resolve), adds noise (1 % of the depth range, correlated over 1.5 pixels of the view), applies
    a random scale (x0.2-5) and shift, and enlarges back to
    the size it was given.
    """

    def __init__(self, scene: Scene, *, input_size: int = 518, noise: float = 0.01, seed: int = 0):
        self.scene, self.input_size, self.noise = scene, input_size, noise
        self.rng = np.random.default_rng(seed)
        self.keys = _patch_keys(scene.image)
        flat = self.keys.ravel()
        self.order = np.argsort(flat, kind="stable")
        self.sorted_keys = flat[self.order]
        self.range = float(np.percentile(scene.filled, 98) - np.percentile(scene.filled, 2))
        self.calls = 0

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += len(batch)
        return torch.stack([self._view(view) for view in batch])

    def locate(self, view: torch.Tensor) -> tuple[int, int, int, int]:
        """(y, x, h, w) of the scene region the view shows."""
        scene = self.scene.image
        h, w = view.shape[-2:]
        if (h, w) == tuple(scene.shape[-2:]):
            return 0, 0, h, w
        if min(h, w) >= PATCH_KEY:
            key = _patch_keys(view[:, :PATCH_KEY, :PATCH_KEY].contiguous())[0, 0]
            lo, hi = np.searchsorted(self.sorted_keys, [key, key + np.uint64(1)])
            for index in self.order[lo:hi]:
                y, x = divmod(int(index), self.keys.shape[1])
                inside = y + h <= scene.shape[1] and x + w <= scene.shape[2]
                if inside and torch.equal(scene[:, y : y + h, x : x + w], view):
                    return y, x, h, w
        if abs(w / h - scene.shape[2] / scene.shape[1]) < 0.02:
            return 0, 0, scene.shape[1], scene.shape[2]  # the whole frame, resized
        raise LookupError("the stand-in was shown something that is not part of its scene")

    def _view(self, view: torch.Tensor) -> torch.Tensor:
        y, x, h, w = self.locate(view)
        region = torch.from_numpy(self.scene.filled[y : y + h, x : x + w])[None, None]
        seen = processing_size(*view.shape[-2:], input_size=self.input_size)
        mode = "area" if seen[0] <= h and seen[1] <= w else "bilinear"
        disparity = F.interpolate(region, size=seen, mode=mode, **({} if mode == "area" else {"align_corners": False}))
        disparity = disparity + self.noise * self.range * _smooth_noise(self.rng, seen)
        scale = math.exp(self.rng.uniform(math.log(0.2), math.log(5.0)))
        shift = self.rng.uniform(-1.0, 1.0) * self.range
        disparity = scale * disparity + shift
        return F.interpolate(disparity, size=tuple(view.shape[-2:]), mode="bilinear", align_corners=False)[0, 0]


def _smooth_noise(rng: np.random.Generator, size: tuple[int, int], sigma: float = 1.5) -> torch.Tensor:
    """Unit-variance noise correlated over a few pixels: a network's errors are smooth, not white."""
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(rng.standard_normal(size), sigma, mode="reflect")
    return torch.from_numpy((noise / noise.std()).astype(np.float32))


def _patch_keys(image: torch.Tensor) -> np.ndarray:
    """A 64-bit polynomial hash of every PATCH_KEY x PATCH_KEY patch (top-left anchored) of (3, H, W) float32."""
    bits = image.numpy().view(np.uint32).astype(np.uint64)
    pixel = bits[0] * np.uint64(0x9E3779B97F4A7C15) + bits[1] * np.uint64(0xC2B2AE3D27D4EB4F) + bits[2]
    rows = np.zeros((pixel.shape[0], pixel.shape[1] - PATCH_KEY + 1), np.uint64)
    for j in range(PATCH_KEY):
        rows = rows * np.uint64(1000003) + pixel[:, j : j + rows.shape[1]]
    keys = np.zeros((rows.shape[0] - PATCH_KEY + 1, rows.shape[1]), np.uint64)
    for i in range(PATCH_KEY):
        keys = keys * np.uint64(0x100000001B3) + rows[i : i + keys.shape[0]]
    return keys


# ----------------------------------------------------------------------------------------------- methods


def run_single(scene: Scene, model: StandInModel) -> dict:
    return {"depth": model(scene.image[None])[0], "passes": 1}


def run_naive(scene: Scene, model: StandInModel, tile: int | None, overlap: int | None, shift=(0, 0)) -> dict:
    """Overlapping tiles, each min-max normalised, blended with the same weights as ours: no alignment."""
    height, width = scene.image.shape[-2:]
    grid = tile_grid(height, width, tile=tile, overlap=overlap, shift=shift)
    weight_y, weight_x = grid.weights()
    output = torch.zeros(height, width)
    tiles = {}
    for y, x in grid.boxes():
        depth = model(scene.image[None, :, y : y + grid.tile_height, x : x + grid.tile_width])[0]
        depth = (depth - depth.min()) / (depth.max() - depth.min())
        tiles[(y, x)] = depth
        blend = weight_y[grid.ys.index(y)][:, None] * weight_x[grid.xs.index(x)][None, :]
        output[y : y + grid.tile_height, x : x + grid.tile_width] += blend * depth
    return {"depth": output, "passes": len(grid), "tiles": tiles, "grid": grid}


def run_ours(scene: Scene, model: StandInModel, tile: int | None, overlap: int | None, shift=(0, 0), **options) -> dict:
    tiles = {}
    iterations = tiling.ROBUST_ITERATIONS
    tiling.ROBUST_ITERATIONS = options.pop("robust_iterations", iterations)  # ablation of the robust fit
    try:
        depth = tiled_predict(
            scene.image, model, tile=tile, overlap=overlap, shift=shift,
            on_tile=lambda y, x, d: tiles.__setitem__((y, x), d.clone()), **options,
        )
    finally:
        tiling.ROBUST_ITERATIONS = iterations
    grid = tile_grid(*scene.image.shape[-2:], tile=tile, overlap=overlap, shift=shift)
    return {"depth": depth, "passes": 1 + len(grid), "tiles": tiles, "grid": grid}


# ----------------------------------------------------------------------------------------------- metrics


def align_to_gt(pred: np.ndarray, scene: Scene) -> np.ndarray:
    """One least-squares scale + shift in disparity over the valid ground truth."""
    p, g = pred[scene.valid].astype(np.float64), scene.disparity[scene.valid].astype(np.float64)
    a = np.stack([p, np.ones_like(p)], 1)
    (scale, shift), *_ = np.linalg.lstsq(a, g, rcond=None)
    return (scale * pred + shift).astype(np.float32)


def depth_errors(aligned: np.ndarray, scene: Scene) -> tuple[float, float]:
    gt = scene.disparity[scene.valid]
    low = gt.min()
    pred_depth = 1.0 / np.clip(aligned[scene.valid], low, None)  # disparity floored at the scene's farthest
    gt_depth = 1.0 / gt
    abs_rel = float(np.mean(np.abs(pred_depth - gt_depth) / gt_depth))
    delta1 = float(np.mean(np.maximum(pred_depth / gt_depth, gt_depth / pred_depth) < 1.25))
    return abs_rel, delta1


def _contours(depth: np.ndarray, valid: np.ndarray, t: float):
    """Depth Pro's foreground/background relations to the left, top, right and bottom neighbour."""
    pair_x = valid[:, 1:] & valid[:, :-1]
    pair_y = valid[1:, :] & valid[:-1, :]
    return (
        (depth[:, :-1] / depth[:, 1:] > t) & pair_x,
        (depth[:-1, :] / depth[1:, :] > t) & pair_y,
        (depth[:, 1:] / depth[:, :-1] > t) & pair_x,
        (depth[1:, :] / depth[:-1, :] > t) & pair_y,
    )


def boundary_f1(aligned: np.ndarray, scene: Scene) -> float:
    """Depth Pro's scale-invariant boundary F1, on depth = 1 / disparity."""
    floor = scene.disparity[scene.valid].min()
    pred = 1.0 / np.clip(aligned, floor, None)
    gt = 1.0 / np.where(scene.valid, scene.disparity, 1.0)
    thresholds = np.linspace(1.05, 1.25, 10)
    scores = []
    for t in thresholds:
        p_rel, g_rel = _contours(pred, scene.valid, t), _contours(gt, scene.valid, t)
        hits = [np.count_nonzero(p & g) for p, g in zip(p_rel, g_rel)]
        recall = np.mean([h / max(np.count_nonzero(g), 1) for h, g in zip(hits, g_rel)])
        precision = np.mean([h / max(np.count_nonzero(p), 1) for h, p in zip(hits, p_rel)])
        scores.append(0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision))
    return float(np.sum(np.array(scores) * thresholds / thresholds.sum()))


def seam_ratio(aligned: np.ndarray, scene: Scene, grid, band: int = 2) -> float:
    """Mean |gradient| of the error across tile borders and overlap centre lines, over its mean elsewhere."""
    error = aligned - scene.disparity
    gx = np.abs(np.diff(error, axis=1))
    gy = np.abs(np.diff(error, axis=0))
    vx = scene.valid[:, 1:] & scene.valid[:, :-1]
    vy = scene.valid[1:, :] & scene.valid[:-1, :]
    lines_x = _seam_lines(grid.xs, grid.tile_width, scene.image.shape[2])
    lines_y = _seam_lines(grid.ys, grid.tile_height, scene.image.shape[1])
    near_x = np.zeros(gx.shape[1], bool)
    for line in lines_x:
        near_x[max(0, line - band - 1) : line + band] = True
    near_y = np.zeros(gy.shape[0], bool)
    for line in lines_y:
        near_y[max(0, line - band - 1) : line + band] = True
    on = gx[:, near_x][vx[:, near_x]].sum() + gy[near_y][vy[near_y]].sum()
    on_count = vx[:, near_x].sum() + vy[near_y].sum()
    off = gx[:, ~near_x][vx[:, ~near_x]].sum() + gy[~near_y][vy[~near_y]].sum()
    off_count = vx[:, ~near_x].sum() + vy[~near_y].sum()
    return float((on / on_count) / (off / off_count))


def _seam_lines(starts, size: int, length: int) -> list[int]:
    lines = set()
    for a, b in zip(starts, starts[1:]):
        lines.update({b, a + size, (b + a + size) // 2})  # where b starts, where a ends, the overlap's centre
    return sorted(line for line in lines if 0 < line < length)


def overlap_disagreement(result: dict, depth_range: float) -> float:
    tiles, grid = result["tiles"], result["grid"]
    th, tw = grid.tile_height, grid.tile_width
    total, count = 0.0, 0
    for (y, x), depth in tiles.items():
        right = grid.xs.index(x) + 1
        if right < len(grid.xs):
            other, ox = tiles[(y, grid.xs[right])], grid.xs[right]
            a, b = depth[:, ox - x :], other[:, : x + tw - ox]
            total, count = total + float((a - b).abs().sum()), count + a.numel()
        below = grid.ys.index(y) + 1
        if below < len(grid.ys):
            other, oy = tiles[(grid.ys[below], x)], grid.ys[below]
            a, b = depth[oy - y :, :], other[: y + th - oy, :]
            total, count = total + float((a - b).abs().sum()), count + a.numel()
    return 100.0 * total / max(count, 1) / depth_range


def robust_range(values: np.ndarray) -> float:
    return float(np.percentile(values, 98) - np.percentile(values, 2))


# ----------------------------------------------------------------------------------------------- report


def evaluate(scene: Scene, tile: int | None, overlap: int | None, seed: int, variants: dict) -> list[dict]:
    model = StandInModel(scene, seed=seed)
    rows = []
    gt_range = robust_range(scene.disparity[scene.valid])
    grid = tile_grid(*scene.image.shape[-2:], tile=tile, overlap=overlap)
    stride = grid.tile_height - (overlap if overlap is not None else grid.tile_height // 4)
    half = (stride // 2, stride // 2)

    def measure(name, runner, rerun):
        start = time.perf_counter()
        result = runner()
        seconds = time.perf_counter() - start
        aligned = align_to_gt(result["depth"].numpy(), scene)
        abs_rel, delta1 = depth_errors(aligned, scene)
        start = time.perf_counter()
        shifted = rerun()
        seconds = min(seconds, time.perf_counter() - start)  # the faster of two similar runs: less noise
        shifted = align_to_gt(shifted["depth"].numpy(), scene)
        row = {
            "scene": scene.name, "size": scene.size, "method": name, "abs_rel": abs_rel, "delta1": delta1,
            "boundary_f1": boundary_f1(aligned, scene), "seam_ratio": seam_ratio(aligned, scene, grid),
            "overlap_disagreement": (
                overlap_disagreement(result, robust_range(result["depth"].numpy())) if "tiles" in result else None
            ),
            "shift_change": 100.0 * float(np.mean(np.abs(aligned - shifted)[scene.valid])) / gt_range,
            "seconds": seconds, "passes": result["passes"],
        }
        rows.append(row)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
        return result["depth"], aligned

    outputs = {}
    outputs["single"] = measure("single", lambda: run_single(scene, model), lambda: run_single(scene, model))
    outputs["naive"] = measure(
        "naive", lambda: run_naive(scene, model, tile, overlap), lambda: run_naive(scene, model, tile, overlap, half)
    )
    outputs["ours"] = measure(
        "ours", lambda: run_ours(scene, model, tile, overlap), lambda: run_ours(scene, model, tile, overlap, half)
    )
    for name, options in variants.items():
        variant_overlap = grid.tile_height // 2 if options.pop("half_overlap", False) else overlap
        measure(
            name,
            lambda: run_ours(scene, model, tile, variant_overlap, **options),
            lambda: run_ours(scene, model, tile, variant_overlap, half, **options),
        )
    return rows, outputs


MEMORY_PROBE = r"""
import json, sys, time, torch
sys.path.insert(0, sys.argv[1])
from depth_anything.tiling import tiled_predict
megapixels, mode = float(sys.argv[2]), sys.argv[3]
torch.set_num_threads(2)
height = int((megapixels * 1e6 * 2 / 3) ** 0.5) // 2 * 2
width = height * 3 // 2
ys = torch.linspace(0, 1, height)[:, None]
xs = torch.linspace(0, 1, width)[None, :]
image = torch.stack([ys.expand(height, width), xs.expand(height, width), (ys * xs)]).contiguous()
if mode == "engine":
    predict = lambda batch: batch.mean(dim=1)
    tiled_predict(torch.rand(3, 600, 600), predict, model_size=266, batch_size=4)  # warm-up: kernels, threads
else:
    sys.path.insert(0, sys.argv[1] + "/tests")
    from checkpoints import write_checkpoint
    from depth_anything import DepthAnything
    model = DepthAnything.from_pretrained(write_checkpoint(sys.argv[4] + "/depth_anything_v2_vits.pth"))
    input_size = int(sys.argv[5])
    # what infer(tiled=True) runs, minus infer's own float copy of the whole input (the same without tiling)
    predict = lambda batch: model.infer(batch, input_size=input_size, batch_size=len(batch))
    tiled_predict(torch.rand(3, 600, 600), predict, model_size=input_size)  # warm-up: kernels, threads

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

import ctypes, gc
gc.collect()
ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand back what the warm-up freed, so that reuse is not hidden
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current size
before = rss("VmRSS")
start = time.perf_counter()
depth = tiled_predict(image, predict, batch_size=4, model_size=int(sys.argv[5]))
seconds = time.perf_counter() - start
peak = rss("VmHWM") - before - depth.numel() * 4
print(json.dumps({"megapixels": height * width / 1e6, "size": f"{width}x{height}", "mode": mode,
                  "working_mb": peak / 2**20, "seconds": seconds}))
"""


def measure_memory(quick: bool) -> list[dict]:
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for mode, input_size in (("engine", 518), ("model", 518)):
            for megapixels in (1, 4 if quick else 16):
                if quick and mode == "model":
                    continue
                # Big blocks straight from mmap, so that freed memory leaves the resident size at once and the
                # peak resident size measures the peak of live memory, not the allocator's fragmentation.
                env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
                out = subprocess.run(
                    [sys.executable, "-c", MEMORY_PROBE, str(ROOT), str(megapixels), mode, folder, str(input_size)],
                    capture_output=True, text=True, check=True, env=env,
                )
                row = json.loads(out.stdout.strip().splitlines()[-1])
                row["input_size"] = input_size
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def save_crops(path: Path, panels: list[tuple[Scene, dict, tuple[int, int, int]]]) -> None:
    """One row per crop: image, ground truth, single pass, naive tiling, ours (same colour range per row).

    Every depth map is first aligned to the ground truth (one scale and shift), as for the metrics.
    """
    from PIL import Image, ImageDraw

    from depth_anything import colorize

    rows = []
    for scene, outputs, (y, x, size) in panels:
        gt = scene.disparity[y : y + size, x : x + size]
        valid = scene.valid[y : y + size, x : x + size]
        low, high = np.percentile(gt[valid], 1), np.percentile(gt[valid], 99)
        cells = [scene.image[:, y : y + size, x : x + size].permute(1, 2, 0).numpy()]
        for disparity in [gt] + [outputs[m][1][y : y + size, x : x + size] for m in ("single", "naive", "ours")]:
            cells.append(colorize(torch.from_numpy(np.clip((disparity - low) / (high - low), 0, 1)))[..., :3].numpy())
        cells[1][~valid] = 0.0  # no ground truth there (occlusions): black
        rows.append(np.concatenate([np.pad(c, ((4, 4), (4, 4), (0, 0)), constant_values=1.0) for c in cells], axis=1))
    width = max(r.shape[1] for r in rows)
    picture = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=1.0) for r in rows])
    header = np.ones((28, width, 3), np.float32)
    image = Image.fromarray((np.concatenate([header, picture]) * 255).round().astype(np.uint8))
    draw = ImageDraw.Draw(image)
    size = panels[0][2][2] + 8
    for i, label in enumerate(("image", "ground truth", "single pass", "naive tiling", "ours (tiled_predict)")):
        draw.text((i * size + 8, 8), label, fill=(0, 0, 0))
    image.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only: a smoke run")
    parser.add_argument("--tile", type=int, default=None, help="tile side (default: the engine's choice)")
    parser.add_argument("--overlap", type=int, default=None, help="tile overlap (default: the engine's choice)")
    parser.add_argument("--ablation", action="store_true", help="also run variants of ours (low-pass, overlap)")
    parser.add_argument("--picture", type=Path, default=ROOT / "benchmarks" / "tiling_crops.png")
    parser.add_argument("--json", type=Path, default=None, help="write all rows here")
    parser.add_argument("--memory-only", action="store_true", help="only the peak-memory measurement")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.memory_only:
        print(markdown([], measure_memory(args.quick)))
        return

    if args.quick:
        scenes = [motorcycle(1280), thin_structures(1920, 1080)]
    else:
        scenes = [motorcycle(1280), motorcycle(2048), motorcycle(3840), thin_structures(3840, 2160)]
    all_rows, panels = [], []
    for seed, scene in enumerate(scenes):
        variants = {}
        if args.ablation:
            variants = {
                "ours, lowpass 1": {"lowpass": 1.0},
                "ours, lowpass 4": {"lowpass": 4.0},
                "ours, overlap 1/2": {"half_overlap": True},
                "ours, plain least squares": {"robust_iterations": 0},
            }
        rows, outputs = evaluate(scene, args.tile, args.overlap, seed, variants)
        all_rows += rows
        if scene is scenes[-1] or scene.image.shape[2] == (1280 if args.quick else 3840):
            panels.append((scene, outputs, _crop_for(scene)))
            if scene.name == "Motorcycle":
                panels.append((scene, outputs, _seam_crop(scene)))
    memory = measure_memory(args.quick)
    save_crops(args.picture, panels)
    if args.json:
        args.json.write_text(json.dumps({"rows": all_rows, "memory": memory}, indent=1))
    print()
    print(markdown(all_rows, memory))


def _seam_crop(scene: Scene, size: int = 320) -> tuple[int, int, int]:
    """A crop centred on a corner where four tiles overlap: where naive tiling shows its seams."""
    grid = tile_grid(*scene.image.shape[-2:])
    y = grid.ys[len(grid.ys) // 2] + (grid.ys[0] + grid.tile_height - grid.ys[1]) // 2
    x = grid.xs[len(grid.xs) // 2] + (grid.xs[0] + grid.tile_width - grid.xs[1]) // 2
    return y - size // 2, x - size // 2, size


def _crop_for(scene: Scene) -> tuple[int, int, int]:
    height, width = scene.image.shape[-2:]
    if scene.name == "Motorcycle":
        return int(0.30 * height), int(0.42 * width), 320
    return int(0.28 * height), int(0.2 * width), 320


def markdown(rows: list[dict], memory: list[dict]) -> str:
    lines = [
        "| scene | size | method | AbsRel | delta1 | boundary F1 | seam ratio | overlap disagr. % | shift change % "
        "| passes | time s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        disagreement = "-" if r["overlap_disagreement"] is None else f"{r['overlap_disagreement']:.2f}"
        lines.append(
            f"| {r['scene']} | {r['size']} | {r['method']} | {r['abs_rel']:.4f} | {r['delta1']:.4f} | "
            f"{r['boundary_f1']:.4f} | {r['seam_ratio']:.3f} | {disagreement} | {r['shift_change']:.2f} | "
            f"{r['passes']} | {r['seconds']:.1f} |"
        )
    lines += ["", "| peak working memory | size | MB | time s |", "|---|---|---|---|"]
    for m in memory:
        what = "engine, trivial predictor"
        if m["mode"] != "engine":
            what = f"engine + random vits, input_size {m['input_size']}"
        size = f"{m['size']} ({m['megapixels']:.1f} MP)"
        lines.append(f"| {what} | {size} | {m['working_mb']:.1f} | {m['seconds']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
