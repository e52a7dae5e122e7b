"""Tiled high-resolution depth on real ground truth, with a stand-in model whose crops disagree beyond scale
and shift: single pass, naive tiling, today's tiling, the fusion candidates and the new default.

Scenes: Middlebury 2014 "Motorcycle" (scikit-image ships it: left image and ground-truth disparity at quarter
resolution, 741 x 500, invalid pixels inf), enlarged to 2K, 4K and 8K wide (and 1280 on request; image bicubic,
ground truth nearest so that its discontinuities stay one pixel sharp), and a generated 4K street scene with thin
structures (poles, wires, a fence, branches) whose disparity is exact.

No real weights can be downloaded here, so the depth model is a stand-in that behaves like Depth Anything where
tiling matters: it sees only a ~518-pixel view of what it is given (the official processing size) and answers
with a random scale and shift for every view, plus noise. A crop (any view but the whole frame) also gets faults
a real network shows when it sees a crop without the rest of the scene, each switchable (`FAULTS`): a tilt and a
bend, range compression (a random gamma on the view's normalised disparity) and a lift of its flat regions. The
stand-in knows what it is shown by finding the view in the scene (an exact match of an 8 x 8 patch, or the whole
frame); the tiler never looks at pixels itself. Real weights run through the very same `tiled_predict`.

Methods (`METHODS`): single pass, naive tiling, today's tiling (one scale + shift per tile), the old lowpass
guard, three candidates (a guided filter: scale + shift per window; an edge-aware correction field alone; a tone
curve + tilt per tile alone) and the new default (`fusion="local"`: tone curve + tilt + edge-aware field).

Metrics, against ground truth on its valid pixels:
  AbsRel, delta1   after one least-squares scale + shift in disparity, measured in depth (1 / disparity)
  boundary F1      Depth Pro's scale-invariant boundary F1 (t = 1.05 .. 1.25, 10 steps, weighted by t)
  grid gradient    mean |difference| of neighbouring global-pixel blocks of the error where the truth is smooth,
                   % of the depth range per global pixel (`ErrorStructure`); pixel gradient: the same per pixel
  tile band        RMS error in the band of wavelengths from half to twice the tile stride, % of the range
  halo px          how far from depth edges (global pixels) the error stays 25 % above its local level
  overlap disagr.  mean |difference| of neighbouring fitted tiles over their overlap, % of the depth range
  shift change     mean |difference| after shifting the tile grid by half a stride, % of the range
  passes, time     network passes (what dominates with a real model) and wall time with the stand-in

Parts, each resumable (rows go to benchmarks/tiling_results.jsonl as they are measured; a rerun skips them):
  python benchmarks/tiling.py quality [--scenes m2k,m4k,thin4k] [--faults ...] [--methods ...]
  python benchmarks/tiling.py pyramid          (8K: default grid, 518-px tiles, pyramid)
  python benchmarks/tiling.py cost             (fusion time next to v2-S network passes on the CPU, 4K)
  python benchmarks/tiling.py memory           (peak memory at 1 and 16 MP, fresh processes)
  python benchmarks/tiling.py picture          (benchmarks/tiling_crops.png)
  python benchmarks/tiling.py thin-bias        (signed error on thin structures, each fault alone, no noise)
  python benchmarks/tiling.py report           (the markdown tables of everything measured so far)
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from depth_anything.tiling import Fusion, fit_scale_shift, tile_grid, tiled_predict  # noqa: E402
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


@dataclass(frozen=True)
class Faults:
    """How the stand-in's answer departs from the truth it can resolve; the non-affine ones only on crops.

    Amplitudes are in units of the scene's depth range R (2nd-98th percentile of its disparity), so that a
    flat tile (sky, a wall) is disturbed as much as a busy one: that is where a disagreement shows most.
    """

    tilt: float = 0.0  # a random plane over the view, peak-to-peak up to this x R, and a random bend half as large
    gamma: float = 1.0  # range compression: the view's normalised disparity to a power log-uniform in [1/g, g]
    flat: float = 0.0  # a random offset up to +-this x R on the view's flat regions (soft mask, edges blurred)
    noise: float = 0.01  # every view: noise of this x R, correlated over 1.5 pixels of the view


# The fault types of the report, each switchable; "all" combines them. Every type keeps the random scale and
# shift of every call and the noise; "noise-free" (all faults, no noise) shows what the noise alone costs every method.
FAULTS = {
    "affine": Faults(),
    "tilt": Faults(tilt=0.05),
    "gamma": Faults(gamma=1.5),
    "flat": Faults(flat=0.05),
    "all": Faults(tilt=0.05, gamma=1.5, flat=0.05),
    "noise-free": Faults(tilt=0.05, gamma=1.5, flat=0.05, noise=0.0),
}
FAULT_LABELS = {
    "affine": "scale + shift + noise only (the earlier stand-in)",
    "tilt": "+ tilt and bend (5 % of R)",
    "gamma": "+ range compression (gamma 1/1.5-1.5)",
    "flat": "+ flat regions lifted (5 % of R)",
    "all": "all of them",
    "noise-free": "all of them, no noise",
}


class StandInModel:
    """A depth "model" that sees only a ~518-px view of its input and answers up to a random scale and shift.

    It finds each view in the scene (exact 8 x 8 patch match; otherwise the view must be the whole frame,
    resized) and area-averages the ground truth over that view at the official processing size (what a 518-px
    network can resolve). Its random draws depend only on the view (a network is deterministic: the same view
    gets the same answer, so the single pass and the tiler's global pass agree). A crop (any view but the whole
    frame, or every view with `deviate_whole`) then gets this view's non-affine `faults`: range compression, a
    lift of its flat regions, a tilt and a bend, each drawn at random. Every view gets noise (1 % of the depth
    range, correlated over 1.5 pixels of the view), a random scale (x0.2-5) and shift, and is enlarged back to
    the size it was given.
    """

    def __init__(
        self, scene: Scene, *, input_size: int = 518, seed: int = 0, faults: Faults = Faults(), deviate_whole=False
    ):
        self.scene, self.input_size, self.faults, self.deviate_whole = scene, input_size, faults, deviate_whole
        self.known_units = False  # True: skip the random scale and shift (the noise floor's tiles, see run_floor)
        self.seed = seed
        self.keys = _patch_keys(scene.image)
        flat = self.keys.ravel()
        self.order = np.argsort(flat, kind="stable")
        self.sorted_keys = flat[self.order]
        self.range = float(np.percentile(scene.filled, 98) - np.percentile(scene.filled, 2))
        self.calls = 0

    def with_faults(self, faults: Faults) -> "StandInModel":
        """The same stand-in (scene index shared) with other faults."""
        other = copy.copy(self)
        other.faults, other.calls = faults, 0
        return other

    def in_known_units(self) -> "StandInModel":
        """The same stand-in answering in the ground truth's units: noise only, no faults, no scale and shift.

        Its noise is the very noise the affine-only stand-in adds to the same view (the draws come in the same
        order), so tiles blended from it are what a fusion that knew every call's scale and shift would reach.
        """
        other = self.with_faults(Faults(noise=self.faults.noise))
        other.known_units = True
        return other

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
        # A network answers the same view the same way: this view's draws depend on what it shows, not on when.
        rng = np.random.default_rng([self.seed, y, x, h, w, *view.shape[-2:]])
        region = torch.from_numpy(self.scene.filled[y : y + h, x : x + w])[None, None]
        seen = processing_size(*view.shape[-2:], input_size=self.input_size)
        mode = "area" if seen[0] <= h and seen[1] <= w else "bilinear"
        disparity = F.interpolate(region, size=seen, mode=mode, **({} if mode == "area" else {"align_corners": False}))
        whole = (h, w) == tuple(self.scene.image.shape[-2:])
        if self.deviate_whole or not whole:
            disparity = self._deviate(disparity, rng)
        disparity = disparity + self.faults.noise * self.range * smooth_noise(rng, seen)
        scale = math.exp(rng.uniform(math.log(0.2), math.log(5.0)))
        shift = rng.uniform(-1.0, 1.0) * self.range
        if not self.known_units:
            disparity = scale * disparity + shift
        return F.interpolate(disparity, size=tuple(view.shape[-2:]), mode="bilinear", align_corners=False)[0, 0]

    def _deviate(self, disparity: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """This call's non-affine disagreement with the whole view, on the seen (1, 1, h, w) disparity."""
        d, spec = disparity.double(), self.faults
        low, high = float(d.min()), float(d.max())
        out = d
        if spec.gamma > 1 and high - low > 1e-6 * self.range:
            gamma = math.exp(rng.uniform(-math.log(spec.gamma), math.log(spec.gamma)))
            out = low + (high - low) * ((d - low) / (high - low)) ** gamma
        if spec.flat > 0:
            lift = rng.uniform(-1.0, 1.0) * spec.flat * self.range
            out = out + lift * _flatness(d, max(high - low, 0.1 * self.range))
        if spec.tilt > 0:
            h, w = d.shape[-2:]
            v = ((torch.arange(h, dtype=d.dtype) + 0.5) / h - 0.5)[:, None]
            u = ((torch.arange(w, dtype=d.dtype) + 0.5) / w - 0.5)[None, :]
            angle = rng.uniform(0.0, 2 * math.pi)
            plane = math.cos(angle) * u + math.sin(angle) * v
            # and a bend: a random quadratic surface (bowl, ridge or saddle), half the tilt's amplitude
            xx, yy, xy = rng.uniform(-1.0, 1.0, 3)
            bend = xx * u * u + yy * v * v + xy * u * v
            out = out + rng.uniform(-1.0, 1.0) * spec.tilt * self.range * _peak_to_peak_one(plane)
            out = out + rng.uniform(-0.5, 0.5) * spec.tilt * self.range * _peak_to_peak_one(bend)
        return out.float()


def _peak_to_peak_one(surface: torch.Tensor) -> torch.Tensor:
    surface = surface - surface.mean()
    return surface / max(float(surface.max() - surface.min()), 1e-12)


def _flatness(disparity: torch.Tensor, view_range: float, sigma: float = 2.0) -> torch.Tensor:
    """A soft mask (1, 1, h, w) in [0, 1] of where the view's disparity barely changes, edges blurred.

    Flat means a gradient below a quarter of the view's range spread evenly over its longer side: a wall facing
    the camera, the sky, a table top seen from above; the transition is smoothed over a few view pixels, as a
    network's region-wise bias would be.
    """
    from scipy.ndimage import gaussian_filter

    d = disparity[0, 0].numpy()
    gy, gx = np.gradient(d)
    scale = 0.25 * view_range / max(d.shape)
    mask = np.exp(-((np.hypot(gx, gy) / scale) ** 2))
    return torch.from_numpy(gaussian_filter(mask, sigma, mode="nearest"))[None, None].to(disparity.dtype)


def smooth_noise(rng: np.random.Generator, size: tuple[int, int], sigma: float = 1.5) -> torch.Tensor:
    """Unit-variance noise correlated over a few pixels: a network's errors are smooth, not white."""
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(rng.standard_normal(tuple(size)), sigma, mode="reflect")
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


def guided_fusion(radius: int = 4, ridge: float = 0.01):
    """Candidate "spatially varying scale and shift": a guided filter of the global map with the tile as guide.

    Each tile gets one robust scale and shift, then a scale and a shift per window of (2 radius + 1)^2 global
    pixels (least squares of the global map on the tile, pulled toward the tile's own scale where the window is
    flat), averaged over the windows that cover each pixel and enlarged to the tile: the fast guided filter.
    Written here with public pieces only, through `tiled_predict(fusion=callable)`.
    """

    def box(values: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.pad(values, (radius,) * 4), 2 * radius + 1, stride=1, divisor_override=1)

    def fuse(depth: torch.Tensor, reference: torch.Tensor, scale_only: bool) -> torch.Tensor:
        coarse = F.interpolate(depth[:, None], size=reference.shape[-2:], mode="area")
        scale, shift = fit_scale_shift(coarse[:, 0], reference, scale_only=scale_only)
        scale, shift = scale[:, None, None, None], shift[:, None, None, None]
        guide, target = scale * coarse + shift, reference[:, None]
        count = box(torch.ones_like(guide))
        mean_g, mean_t = box(guide) / count, box(target) / count
        var = (box(guide * guide) / count - mean_g**2).clamp_min(0.0)
        cov = box(guide * target) / count - mean_g * mean_t
        pull = ridge * guide.var(dim=(1, 2, 3), keepdim=True) + 1e-12
        a = (cov + pull) / (var + pull)
        b = torch.zeros_like(a) if scale_only else mean_t - a * mean_g
        a, b = box(a) / count, box(b) / count
        enlarge = lambda v: F.interpolate(v, size=depth.shape[-2:], mode="bilinear", align_corners=False)[:, 0]  # noqa: E731
        return enlarge(a) * (scale[:, 0] * depth + shift[:, 0]) + enlarge(b)

    return fuse


# name -> (what it is, options of its runner: tiled_predict's, unless RUNNERS names another)
METHODS = {
    "single": ("one pass on the whole image", None),
    "naive": ("tiles min-max normalised, same blend, no alignment", None),
    "tile": ("today's tiling: one robust scale + shift per tile (fusion='tile')", {"fusion": "tile"}),
    "lowpass": ("tile + global low frequencies below 2 global px (lowpass=2, the old guard)", {"lowpass": 2.0}),
    "guided": ("candidate: scale + shift per 9x9-global-px window (guided filter)", {"fusion": guided_fusion()}),
    "field": ("candidate: tile + edge-aware correction field only", {"fusion": Fusion(curve=1, tilt=False)}),
    "curve": ("candidate: tone curve + tilt per tile only", {"fusion": Fusion(field=None)}),
    "local": ("new default: tone curve + tilt + edge-aware field (fusion='local')", {"fusion": "local"}),
    "local half-overlap": ("new default with half-tile overlap", {"fusion": "local", "overlap": "half"}),
    "local bilinear-field": ("default with the field enlarged bilinearly", {"fusion": Fusion(enlarge=None)}),
    "local enlarge-1": ("default with the enlargement's value kernel 1 x edge", {"fusion": Fusion(enlarge=1.0)}),
    "local enlarge-2": ("default with the enlargement's value kernel 2 x edge", {"fusion": Fusion(enlarge=2.0)}),
    "local enlarge-10": ("default with the enlargement's value kernel 10 x edge", {"fusion": Fusion(enlarge=10.0)}),
    "local field-2": ("default with a field radius of 2 global px", {"fusion": Fusion(field=2.0)}),
    "local field-8": ("default with a field radius of 8 global px", {"fusion": Fusion(field=8.0)}),
    "floor": ("noise floor of the default grid: tiles with known faults, scale and shift (run_floor)", {}),
    "floor half-overlap": ("noise floor of the half-overlap grid", {"overlap": "half"}),
}
DEFAULT_METHODS = ("single", "naive", "tile", "lowpass", "guided", "field", "curve", "local")


def run_single(scene: Scene, model: StandInModel, **_) -> dict:
    return {"depth": model(scene.image[None])[0], "passes": 1}


def blend_tiles(scene: Scene, model: StandInModel, grid, transform=lambda depth: depth) -> dict:
    """Every tile of `grid` through the model and `transform`, blended with the engine's weights; no global pass."""
    weight_y, weight_x = grid.weights()
    output = torch.zeros(scene.image.shape[-2:])
    tiles = {}
    for y, x in grid.boxes():
        depth = transform(model(scene.image[None, :, y : y + grid.tile_height, x : x + grid.tile_width])[0])
        tiles[(y, x)] = depth
        blend = weight_y[grid.ys.index(y)][:, None] * weight_x[grid.xs.index(x)][None, :]
        output[y : y + grid.tile_height, x : x + grid.tile_width] += blend * depth
    return {"depth": output, "passes": len(grid), "tiles": tiles, "grid": grid}


def run_naive(scene: Scene, model: StandInModel, shift=(0, 0), **_) -> dict:
    """Overlapping tiles, each min-max normalised, blended with the same weights as ours: no alignment."""
    grid = tile_grid(*scene.image.shape[-2:], shift=shift)
    return blend_tiles(scene, model, grid, lambda depth: (depth - depth.min()) / (depth.max() - depth.min()))


def overlap_pixels(scene: Scene, overlap: int | str | None) -> int | None:
    """A method's overlap option in pixels: "half" is half the default tile; None is the engine's default."""
    return tile_grid(*scene.image.shape[-2:]).tile_height // 2 if overlap == "half" else overlap


def run_floor(scene: Scene, model: StandInModel, shift=(0, 0), overlap=None, **_) -> dict:
    """The noise floor of a grid: its tiles as a fusion that knew every call's faults, scale and shift would
    have them (the truth the tile resolves plus the stand-in's noise), blended with the engine's weights.

    No fusion of these passes can do better on average: what is left is each tile's own noise, at the tile's
    resolution. The global pass is not needed for it (it is counted in the passes all the same).
    """
    size = scene.image.shape[-2:]
    grid = tile_grid(*size, overlap=overlap_pixels(scene, overlap), shift=shift)
    result = blend_tiles(scene, model.in_known_units(), grid)
    return {**result, "passes": result["passes"] + 1}


def run_tiled(scene: Scene, model: StandInModel, shift=(0, 0), **options) -> dict:
    """`tiled_predict` with these options; keeps every fitted tile (for the overlap disagreement)."""
    tiles = {}
    options["overlap"] = overlap_pixels(scene, options.get("overlap"))
    depth = tiled_predict(
        scene.image, model, shift=shift, on_tile=lambda y, x, d: tiles.__setitem__((y, x), d.clone()), **options
    )
    grid = tile_grid(*scene.image.shape[-2:], tile=options.get("tile"), overlap=options.get("overlap"), shift=shift)
    return {"depth": depth, "passes": 1 + len(grid), "tiles": tiles, "grid": grid}


RUNNERS = {"single": run_single, "naive": run_naive, "floor": run_floor, "floor half-overlap": run_floor}


def run_method(name: str, scene: Scene, model: StandInModel, shift=(0, 0)) -> dict:
    options = METHODS[name][1]
    runner = RUNNERS.get(name, run_tiled)
    return runner(scene, model, shift=shift, **dict(options or {}))


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


def edge_mask(scene: Scene, t: float = 1.05) -> np.ndarray:
    """Pixels on either side of a ground-truth depth discontinuity (neighbour depth ratio above t)."""
    depth = 1.0 / np.where(scene.valid, scene.disparity, 1.0)
    left, top, right, bottom = _contours(depth, scene.valid, t)
    edges = np.zeros(scene.valid.shape, bool)
    edges[:, :-1] |= left | right
    edges[:, 1:] |= left | right
    edges[:-1, :] |= top | bottom
    edges[1:, :] |= top | bottom
    return edges


class ErrorStructure:
    """What the error map looks like at the global pass's grain: a tile grid, and halos along depth edges.

    The error (aligned prediction - ground truth, in % of the depth range R) is area-averaged over blocks of one
    global-pass pixel (`factor` image pixels): a tile grid is a pattern of that size and larger, while the
    stand-in's per-pixel noise (which every pass has, the single pass too) would otherwise swamp it.

    - `grid_gradient`: mean |difference| of neighbouring blocks where the truth is smooth (no ground-truth edge
      within two global pixels), % of R per global pixel. A tile patchwork raises it; the native-resolution
      value is `pixel_gradient`.
    - `tile_band`: RMS of the error (smooth blocks, mean removed) in the band of wavelengths from half to twice
      the tile stride, % of R: the error energy at the tile period.
    - `halo_width`: how far from ground-truth edges, in global-pass pixels, the mean |error| stays more than a
      quarter above the error level of the same neighbourhood away from edges (8-16 global pixels from any edge,
      averaged over about 16 global pixels around), looked at up to 8 global pixels out. The local reference
      keeps a scene whose edges crowd in one kind of region (branches in the sky) from reading as a halo.
    """

    def __init__(self, scene: Scene, global_width: int, stride: int, depth_range: float):
        self.scene, self.factor, self.range = scene, scene.image.shape[2] / global_width, depth_range
        self.stride = stride
        from scipy.ndimage import distance_transform_edt

        edges = edge_mask(scene)
        self.distance = distance_transform_edt(~edges) / self.factor  # in global-pass pixels
        smooth = scene.valid & (self.distance > 2.0)
        self.block = max(1, round(self.factor))
        self.smooth_blocks = self._blocks(smooth.astype(np.float64)) > 0.999

    def _blocks(self, values: np.ndarray) -> np.ndarray:
        b = self.block
        h, w = values.shape[0] // b * b, values.shape[1] // b * b
        return values[:h, :w].reshape(h // b, b, w // b, b).mean(axis=(1, 3))

    def measure(self, aligned: np.ndarray) -> dict:
        error = 100.0 * (aligned - self.scene.disparity) / self.range
        error = np.where(self.scene.valid, error, 0.0)
        blocks, smooth = self._blocks(error), self.smooth_blocks
        pairs_x, pairs_y = smooth[:, 1:] & smooth[:, :-1], smooth[1:, :] & smooth[:-1, :]
        steps = np.concatenate([np.abs(np.diff(blocks, axis=1))[pairs_x], np.abs(np.diff(blocks, axis=0))[pairs_y]])
        pixel_smooth = self.scene.valid & (self.distance > 2.0)
        px_x, px_y = pixel_smooth[:, 1:] & pixel_smooth[:, :-1], pixel_smooth[1:, :] & pixel_smooth[:-1, :]
        pixel_steps = np.concatenate([np.abs(np.diff(error, axis=1))[px_x], np.abs(np.diff(error, axis=0))[px_y]])
        return {
            "grid_gradient": float(steps.mean()),
            "pixel_gradient": float(pixel_steps.mean()),
            "tile_band": self._band(blocks, smooth),
            "halo_width": self._halo(np.abs(error)),
        }

    def _band(self, blocks: np.ndarray, smooth: np.ndarray) -> float:
        values = np.where(smooth, blocks - blocks[smooth].mean(), 0.0)
        power = np.abs(np.fft.fft2(values)) ** 2 / values.size
        fy = np.fft.fftfreq(values.shape[0])[:, None]
        fx = np.fft.fftfreq(values.shape[1])[None, :]
        wavelength = 1.0 / np.maximum(np.hypot(fy, fx), 1e-12)  # in blocks
        stride = self.stride / self.block
        band = (wavelength >= stride / 2) & (wavelength <= 2 * stride)
        return float(np.sqrt(power[band].sum() / smooth.sum()))

    def halo_profile(self, abs_error: np.ndarray, step: float = 0.5, far: tuple[float, float] = (8.0, 16.0)):
        """Mean of |error| / its local level away from edges, at distances 0, step, ... global pixels from edges."""
        from scipy.ndimage import gaussian_filter, zoom

        valid = self.scene.valid
        reference = valid & (self.distance >= far[0]) & (self.distance < far[1])
        sigma = far[1] / self.block * self.factor  # 16 global pixels, in blocks
        level = gaussian_filter(self._blocks(np.where(reference, abs_error, 0.0)), sigma, mode="nearest")
        weight = gaussian_filter(self._blocks(reference.astype(np.float64)), sigma, mode="nearest")
        overall = float(abs_error[reference].mean())
        level = np.where(weight > 1e-3, level / np.maximum(weight, 1e-12), overall)
        height, width = abs_error.shape
        level = zoom(level, (height / level.shape[0], width / level.shape[1]), order=1, mode="nearest")
        level = np.pad(level, ((0, height - level.shape[0]), (0, width - level.shape[1])), mode="edge")[:height, :width]
        ratio = abs_error / np.maximum(level, 1e-6 * overall + 1e-12)
        bins = np.minimum((self.distance / step).astype(np.int64), int(far[0] / step))
        sums = np.bincount(bins[valid], ratio[valid], minlength=int(far[0] / step) + 1)
        counts = np.bincount(bins[valid], minlength=int(far[0] / step) + 1)
        return (sums / np.maximum(counts, 1))[: int(far[0] / step)]

    def _halo(self, abs_error: np.ndarray, step: float = 0.5) -> float:
        above = np.nonzero(self.halo_profile(abs_error, step) > 1.25)[0]
        return 0.0 if len(above) == 0 else float((above[-1] + 1) * step)


def robust_range(values: np.ndarray) -> float:
    return float(np.percentile(values, 98) - np.percentile(values, 2))


# ----------------------------------------------------------------------------------------------- results


SCENES = {  # name -> (scene, the stand-in's seed)
    "m1280": (lambda: motorcycle(1280), 0),
    "m2k": (lambda: motorcycle(2048), 1),
    "m4k": (lambda: motorcycle(3840), 2),
    "thin4k": (lambda: thin_structures(3840, 2160), 3),
    "m8k": (lambda: motorcycle(7680), 4),
}
GOAL_SCENES = ("m2k", "m4k", "thin4k")  # the goals are stated on these, with all faults at once


class Results:
    """Rows of every part, one JSON object per line, appended as each is measured: a stopped run resumes."""

    def __init__(self, path: Path, fresh: bool = False):
        self.path = path
        if fresh and path.exists():
            path.unlink()
        lines = path.read_text().splitlines() if path.exists() else []
        self.rows = [json.loads(line) for line in lines if line.strip()]

    def find(self, **key) -> dict | None:
        return next((r for r in self.rows if all(r.get(k) == v for k, v in key.items())), None)

    def add(self, row: dict) -> None:
        self.rows = [r for r in self.rows if not _same_key(r, row)] + [row]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as file:
            file.write(json.dumps(row) + "\n")
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)

    def part(self, name: str) -> list[dict]:
        return [r for r in self.rows if r["part"] == name]


def _same_key(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in ("part", "scene_key", "fault", "method", "fusion", "mode", "megapixels"))


# ----------------------------------------------------------------------------------------------- quality


def quality(results: Results, scene_keys, faults, methods, shift_faults) -> None:
    """Every method on every fault type of every scene; rows already in `results` are not measured again."""
    for key in scene_keys:
        todo = [
            (f, m) for f in faults for m in methods
            if not results.find(part="quality", scene_key=key, fault=f, method=m)
        ]
        if not todo:
            continue
        make, seed = SCENES[key]
        scene = make()
        base = StandInModel(scene, seed=seed)
        structure = error_structure(scene)
        for fault, method in todo:
            model = base.with_faults(FAULTS[fault])
            row = measure(scene, model, method, structure, shift=fault in shift_faults)
            results.add({"part": "quality", "scene_key": key, "fault": fault, **row})


def error_structure(scene: Scene, tile: int | None = None) -> ErrorStructure:
    height, width = scene.image.shape[-2:]
    global_width = processing_size(height, width, input_size=518)[1]
    grid = tile_grid(height, width, tile=tile)
    return ErrorStructure(scene, global_width, grid.xs[1] - grid.xs[0], robust_range(scene.disparity[scene.valid]))


def measure(scene: Scene, model: StandInModel, method: str, structure: ErrorStructure, *, shift: bool,
            runner=None) -> dict:
    """One method on one scene: accuracy, edges, tile grid, halos, seams (and the shifted grid, if asked)."""
    runner = runner or (lambda offset: run_method(method, scene, model, offset))
    start = time.perf_counter()
    result = runner((0, 0))
    seconds = time.perf_counter() - start
    aligned = align_to_gt(result["depth"].numpy(), scene)
    abs_rel, delta1 = depth_errors(aligned, scene)
    grid = tile_grid(*scene.image.shape[-2:])
    row = {
        "scene": scene.name, "size": scene.size, "method": method, "abs_rel": abs_rel, "delta1": delta1,
        "boundary_f1": boundary_f1(aligned, scene), **structure.measure(aligned),
        "seam_ratio": seam_ratio(aligned, scene, grid),
        "overlap_disagreement": (
            overlap_disagreement(result, robust_range(result["depth"].numpy())) if "tiles" in result else None
        ),
        "shift_change": None, "seconds": seconds, "passes": result["passes"],
    }
    if shift:
        stride = grid.xs[1] - grid.xs[0]
        shifted = align_to_gt(runner((stride // 2, stride // 2))["depth"].numpy(), scene)
        row["shift_change"] = 100.0 * float(np.mean(np.abs(aligned - shifted)[scene.valid])) / structure.range
    return row


# ----------------------------------------------------------------------------------------------- beyond 4K


def pyramid(results: Results, methods) -> None:
    """At 8K: the default grid (1036-px tiles seen at 518), native 518-px tiles, and a pyramid (518-px tiles of a
    4K pass fitted to the global pass, then the default grid fitted to that 4K result instead of the global map).
    """
    todo = [m for m in methods if not results.find(part="pyramid", method=m)]
    if not todo:
        return
    make, seed = SCENES["m8k"]
    scene = make()
    model = StandInModel(scene, seed=seed, faults=FAULTS["all"])
    structure = error_structure(scene)
    middle = None
    for method in todo:
        if method == "pyramid":
            if middle is None:
                middle = half_scene(scene)
            runner = lambda offset: run_pyramid(scene, model, *middle, shift=offset)  # noqa: E731
        elif method == "local, 518 tiles":
            runner = lambda offset: run_tiled(scene, model, shift=offset, tile=518)  # noqa: E731
        else:
            runner = None
        row = measure(scene, model, method, structure, shift=False, runner=runner)
        results.add({"part": "pyramid", "scene_key": "m8k", "fault": "all", **row, "method": method})


PYRAMID_METHODS = ("single", "tile", "local", "local, 518 tiles", "pyramid")


def half_scene(scene: Scene) -> tuple[Scene, StandInModel]:
    """The scene at half its size (2 x 2 area average), and a stand-in for it with the same faults."""
    pool = lambda a: F.avg_pool2d(torch.as_tensor(a)[None].float(), 2)[0]  # noqa: E731
    image = pool(scene.image)
    filled = pool(torch.from_numpy(scene.filled)[None])[0].numpy()
    middle = Scene(scene.name + " / 2", image.contiguous(), filled, np.ones_like(filled, bool))
    return middle, StandInModel(middle, seed=SCENES["m8k"][1] + 100, faults=FAULTS["all"])


def run_pyramid(scene: Scene, model: StandInModel, middle: Scene, middle_model: StandInModel, shift=(0, 0)) -> dict:
    reference = tiled_predict(middle.image, middle_model, shift=shift)  # 518-px tiles of the half-size image
    size = tuple(reference.shape)

    def predict(batch: torch.Tensor) -> torch.Tensor:
        if tuple(batch.shape[-2:]) == size:  # the "global" pass: the half-size result stands in for it
            return reference[None]
        return model(batch)

    depth = tiled_predict(scene.image, predict, net_size=lambda h, w: size, shift=shift)
    passes = 1 + len(tile_grid(*size)) + len(tile_grid(*scene.image.shape[-2:]))
    return {"depth": depth, "passes": passes}


# ----------------------------------------------------------------------------------------------- cost


def cost(results: Results, fusions=("tile", "local")) -> None:
    """The engine's own work next to the network's with random-weight v2-S on the CPU, at 3840 x 2160."""
    import tempfile

    sys.path.insert(0, str(ROOT / "tests"))
    from checkpoints import write_checkpoint

    from depth_anything import DepthAnything
    from depth_anything.tile_fusion import FUSIONS, fuse_tiles

    todo = [f for f in fusions if not results.find(part="cost", fusion=f)]
    if not todo:
        return
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = write_checkpoint(Path(folder) / "depth_anything_v2_vits.pth")
        model = DepthAnything.from_pretrained(checkpoint, device="cpu")
    image = thin_structures(3840, 2160).image
    predict = model.tile_predictor()
    predict(torch.rand(1, 3, 518, 518))  # warm-up
    for name in todo:
        seconds = {"network": 0.0, "fusion": 0.0}

        def timed(key, function):
            def call(*args):
                start = time.perf_counter()
                out = function(*args)
                seconds[key] += time.perf_counter() - start
                return out

            return call

        fuse = timed("fusion", lambda d, r, s: fuse_tiles(d, r, fusion=FUSIONS[name], scale_only=s))
        start = time.perf_counter()
        tiled_predict(image, timed("network", predict), fusion=fuse)
        total = time.perf_counter() - start
        results.add({
            "part": "cost", "fusion": name, "size": "3840x2160", "passes": 1 + len(tile_grid(2160, 3840)),
            "network_s": seconds["network"], "fusion_s": seconds["fusion"],
            "engine_s": total - seconds["network"], "total_s": total,
        })


# ----------------------------------------------------------------------------------------------- memory


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
depth = tiled_predict(image, predict, batch_size=4, model_size=int(sys.argv[5]), fusion=sys.argv[6])
seconds = time.perf_counter() - start
peak = rss("VmHWM") - before - depth.numel() * 4
print(json.dumps({"megapixels": height * width / 1e6, "size": f"{width}x{height}", "mode": mode,
                  "fusion": sys.argv[6], "working_mb": peak / 2**20, "seconds": seconds}))
"""



def memory(results: Results, modes, megapixels=(1, 16), fusion: str = "local") -> None:
    """Peak working memory of tiled_predict at 1 and 16 MP, each in a fresh process."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        for mode in modes:
            for size in megapixels:
                if results.find(part="memory", mode=mode, megapixels=size, fusion=fusion):
                    continue
                # Big blocks straight from mmap, so that freed memory leaves the resident size at once and the
                # peak resident size measures the peak of live memory, not the allocator's fragmentation.
                env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
                out = subprocess.run(
                    [sys.executable, "-c", MEMORY_PROBE, str(ROOT), str(size), mode, folder, "518", fusion],
                    capture_output=True, text=True, check=True, env=env,
                )
                row = json.loads(out.stdout.strip().splitlines()[-1])
                results.add({"part": "memory", **row, "megapixels_measured": row["megapixels"], "megapixels": size})


# ----------------------------------------------------------------------------------------------- picture


def picture(path: Path, fault: str = "all") -> None:
    """Crops of Motorcycle 4K (one where four tiles meet) and the thin-structure scene, with all faults:
    image, ground truth, then single pass, today's tiling and the new fusion, as depth and as error maps.
    """
    panels = []
    for key in ("m4k", "thin4k"):
        make, seed = SCENES[key]
        scene = make()
        model = StandInModel(scene, seed=seed, faults=FAULTS[fault])
        methods = ("single", "tile", "local")
        aligned = {m: align_to_gt(run_method(m, scene, model)["depth"].numpy(), scene) for m in methods}
        crops = [_crop_for(scene)] + ([_seam_crop(scene)] if scene.name == "Motorcycle" else [])
        panels += [(scene, aligned, crop) for crop in crops]
    save_crops(path, panels)


def save_crops(path: Path, panels) -> None:
    """One row per crop: image, ground truth, three depth maps (one colour range per row), their error maps.

    Every depth map is first aligned to the ground truth (one scale and shift), as for the metrics. Errors are
    red where too near, blue where too far, full colour at 3 % of the scene's depth range.
    """
    from PIL import Image, ImageDraw

    from depth_anything import colorize

    methods = ("single", "tile", "local")
    rows = []
    for scene, aligned, (y, x, size) in panels:
        window = (slice(y, y + size), slice(x, x + size))
        gt, valid = scene.disparity[window], scene.valid[window]
        low, high = np.percentile(gt[valid], 1), np.percentile(gt[valid], 99)
        cells = [scene.image[:, window[0], window[1]].permute(1, 2, 0).numpy()]
        for disparity in [gt] + [aligned[m][window] for m in methods]:
            cells.append(colorize(torch.from_numpy(np.clip((disparity - low) / (high - low), 0, 1)))[..., :3].numpy())
        cells[1][~valid] = 0.0  # no ground truth there (occlusions): black
        depth_range = robust_range(scene.disparity[scene.valid])
        for m in methods:
            error = np.clip((aligned[m][window] - gt) / (0.03 * depth_range), -1, 1)
            error[~valid] = 0.0
            cell = np.ones((size, size, 3), np.float32)
            cell[..., 0] -= np.clip(-error, 0, 1)
            cell[..., 1] -= np.abs(error)
            cell[..., 2] -= np.clip(error, 0, 1)
            cells.append(cell)
        rows.append(np.concatenate([np.pad(c, ((4, 4), (4, 4), (0, 0)), constant_values=1.0) for c in cells], axis=1))
    width = max(r.shape[1] for r in rows)
    body = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=1.0) for r in rows])
    header = np.ones((28, width, 3), np.float32)
    image = Image.fromarray((np.concatenate([header, body]) * 255).round().astype(np.uint8))
    draw = ImageDraw.Draw(image)
    step = panels[0][2][2] + 8
    labels = ("image", "ground truth", "single pass", "today's tiling", "new fusion (local)",
              "error: single", "error: today's", "error: new")
    for i, label in enumerate(labels):
        draw.text((i * step + 8, 8), label, fill=(0, 0, 0))
    image.save(path)


def _seam_crop(scene: Scene, size: int = 320) -> tuple[int, int, int]:
    """A crop centred on a corner where four tiles overlap: where a tile patchwork shows first."""
    grid = tile_grid(*scene.image.shape[-2:])
    y = grid.ys[len(grid.ys) // 2] + (grid.ys[0] + grid.tile_height - grid.ys[1]) // 2
    x = grid.xs[len(grid.xs) // 2] + (grid.xs[0] + grid.tile_width - grid.xs[1]) // 2
    return y - size // 2, x - size // 2, size


def _crop_for(scene: Scene) -> tuple[int, int, int]:
    height, width = scene.image.shape[-2:]
    if scene.name == "Motorcycle":
        return int(0.30 * height), int(0.42 * width), 320
    return int(0.28 * height), int(0.2 * width), 320


# ----------------------------------------------------------------------------------------------- report


def _f(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def quality_table(rows: list[dict]) -> str:
    lines = [
        "| scene | method | AbsRel | delta1 | boundary F1 | grid gradient | pixel gradient | tile band | halo px "
        "| overlap disagr. % | shift change % | passes | time s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scene']} {r['size']} | {r['method']} | {_f(r['abs_rel'])} | {_f(r['delta1'])} | "
            f"{_f(r['boundary_f1'])} | {_f(r['grid_gradient'], 3)} | {_f(r['pixel_gradient'], 3)} | "
            f"{_f(r['tile_band'], 3)} | {r['halo_width']:.1f} | {_f(r['overlap_disagreement'], 2)} | "
            f"{_f(r['shift_change'], 2)} | {r['passes']} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def goals_table(results: Results, method: str = "local", fault: str = "all") -> str:
    """The issue's goals, on all faults at once: each scene's `method` against its single pass."""
    checks = [
        ("AbsRel <= 0.5x single pass", "abs_rel", lambda ours, single: ours <= 0.5 * single, "ratio"),
        ("boundary F1 >= 3x single pass", "boundary_f1", lambda ours, single: ours >= 3 * single, "ratio"),
        ("grid gradient <= single pass", "grid_gradient", lambda ours, single: ours <= single, "ratio"),
        ("pixel gradient <= single pass", "pixel_gradient", lambda ours, single: ours <= single, "ratio"),
        ("tile-band energy <= single pass", "tile_band", lambda ours, single: ours <= single, "ratio"),
        ("halo <= 2 global px", "halo_width", lambda ours, single: ours <= 2.0, "value"),
    ]
    header = "| goal | " + " | ".join(GOAL_SCENES) + " | met |"
    lines = [header, "|---" * (len(GOAL_SCENES) + 2) + "|"]
    for label, metric, passes, shown in checks:
        cells, met = [], []
        for key in GOAL_SCENES:
            ours = results.find(part="quality", scene_key=key, fault=fault, method=method)
            single = results.find(part="quality", scene_key=key, fault=fault, method="single")
            if ours is None or single is None:
                cells.append("not run")
                continue
            ok = passes(ours[metric], single[metric])
            met.append(ok)
            if shown == "ratio":
                cells.append(f"{ours[metric]:.4g} vs {single[metric]:.4g} ({ours[metric] / single[metric]:.2f}x)")
            else:
                cells.append(f"{ours[metric]:.1f}")
        verdict = "not run" if not met else ("yes" if all(met) else ("no" if not any(met) else "partly"))
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {verdict} |")
    return "\n".join(lines)


def report(results: Results) -> str:
    out = []
    rows = results.part("quality")
    order = list(FAULTS)
    method_order = list(METHODS)
    scene_order = list(SCENES)
    for fault in order:
        selected = [r for r in rows if r["fault"] == fault]
        if not selected:
            continue
        # rows of methods no longer in METHODS (measured at an earlier commit, named in the method) come last
        rank = lambda name: method_order.index(name) if name in method_order else len(method_order)  # noqa: E731
        selected.sort(key=lambda r: (scene_order.index(r["scene_key"]), rank(r["method"])))
        out += [f"Faults: **{fault}** ({FAULT_LABELS[fault]})", "", quality_table(selected), ""]
    if rows:
        out += ["Goals (all faults at once, the new default `local` against the single pass):", ""]
        out += [goals_table(results), ""]
    if results.part("pyramid"):
        out += ["Beyond 4K (Motorcycle 7680 wide, all faults):", "", quality_table(results.part("pyramid")), ""]
    if results.part("cost"):
        out += ["| fusion | image | passes | network s | fusion s | fusion / network | engine besides network s |",
                "|---|---|---|---|---|---|---|"]
        for r in results.part("cost"):
            out.append(f"| {r['fusion']} | {r['size']} | {r['passes']} | {r['network_s']:.1f} | {r['fusion_s']:.2f} | "
                       f"{100 * r['fusion_s'] / r['network_s']:.1f} % | {r['engine_s']:.2f} |")
        out.append("")
    if results.part("memory"):
        out += ["| peak working memory | fusion | size | MB | time s |", "|---|---|---|---|---|"]
        for m in results.part("memory"):
            what = "engine, trivial predictor" if m["mode"] == "engine" else "engine + random vits, input_size 518"
            out.append(f"| {what} | {m['fusion']} | {m['size']} ({m['megapixels_measured']:.1f} MP) | "
                       f"{m['working_mb']:.1f} | {m['seconds']:.1f} |")
    return "\n".join(out)


def thin_bias() -> str:
    """Mean signed error on the thin-structure scene's thin pixels (those 5 % of R nearer than their 9 x 9
    median), without noise, each fault alone: which fault leaves thin structures off."""
    from scipy import ndimage

    make, seed = SCENES["thin4k"]
    scene = make()
    depth_range = robust_range(scene.disparity[scene.valid])
    median = ndimage.median_filter(scene.disparity, size=9)
    thin = scene.valid & (scene.disparity - median > 0.05 * depth_range)
    faults = {
        "scale + shift only": Faults(noise=0.0), "tilt": Faults(tilt=0.05, noise=0.0),
        "gamma": Faults(gamma=1.5, noise=0.0), "flat": Faults(flat=0.05, noise=0.0), "all": FAULTS["noise-free"],
    }
    lines = ["| faults (no noise) | curve | local |", "|---|---|---|"]
    for label, fault in faults.items():
        model = StandInModel(scene, seed=seed, faults=fault)
        cells = []
        for method in ("curve", "local"):
            error = align_to_gt(run_method(method, scene, model)["depth"].numpy(), scene) - scene.disparity
            cells.append(f"{100 * float(error[thin].mean()) / depth_range:+.1f} %")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- main


PARTS = ("quality", "pyramid", "cost", "memory", "picture", "thin-bias")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("parts", nargs="*", default=["quality"], help=f"any of {', '.join(PARTS)}, or report")
    parser.add_argument("--scenes", default=",".join(GOAL_SCENES), help=f"of {', '.join(SCENES)}")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"of {'; '.join(FAULTS)} (comma-separated)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"of {'; '.join(METHODS)}")
    parser.add_argument("--shift-faults", default="all", help="fault types on which the shifted grid is also run")
    parser.add_argument("--memory-modes", default="engine,model", help="engine (trivial predictor), model (vits)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "tiling_results.jsonl")
    parser.add_argument("--fresh", action="store_true", help="forget the results file's rows first")
    parser.add_argument("--picture", type=Path, default=ROOT / "benchmarks" / "tiling_crops.png")
    args = parser.parse_args()
    torch.set_num_threads(2)
    results = Results(args.results, fresh=args.fresh)
    split = lambda text: [item.strip() for item in text.split(",") if item.strip()]  # noqa: E731
    faults = split(args.faults)
    for name in split(args.scenes) + faults + split(args.methods):
        if name not in SCENES and name not in FAULTS and name not in METHODS:
            parser.error(f"unknown scene, fault or method {name!r}")
    for part in args.parts:
        if part == "quality":
            quality(results, split(args.scenes), faults, split(args.methods), set(split(args.shift_faults)))
        elif part == "pyramid":
            pyramid(results, PYRAMID_METHODS)
        elif part == "cost":
            cost(results)
        elif part == "memory":
            memory(results, split(args.memory_modes))
        elif part == "picture":
            picture(args.picture)
        elif part == "thin-bias":
            print(thin_bias())
        elif part != "report":
            parser.error(f"unknown part {part!r}: use {', '.join(PARTS)} or report")
    print()
    print(report(results))


if __name__ == "__main__":
    main()
