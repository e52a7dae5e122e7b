"""The condition stage: depth -> the [0, 1] map a depth ControlNet takes (near = white), in one function.

`condition` is what every surface calls (the ComfyUI nodes, the command line, the diffusers detector and
`control_image`), so each option has one meaning and one default everywhere:

1. crop to the target's aspect ratio (when a target `size` is given), centred, never stretched;
2. near-bright values: disparity as it is, depth (relative or metres) as inverse depth;
3. normalise to [0, 1]: each map's own range, one range for all maps ("batch"), each map's percentile range, or a
   range given from outside (`value_range`: a `DepthRange` gathered over a whole folder or clip);
4. invert (from the ControlNet's convention unless given), then gamma;
5. resize to the target (antialiased), and optionally quantise to 8 or 16 bits.

Pixels that are not finite (NaN, inf) never move the range; they come out as far (0, or 1 when inverted), and
so do the pixels of a `far_mask` (the sky of Depth Anything 3: infinitely far, whatever depth the network gave it).

Example:
    >>> condition(torch.tensor([[1.0, 3.0]])).tolist()
    [[0.0, 1.0]]
    >>> condition(torch.tensor([[1.0, 4.0]]), kind="metric_depth").tolist()  # 1 m is nearer: white
    [[1.0, 0.0]]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F

from .controlnets import control_rules
from .options import TypeProblem, check, gamma_problem

OUTPUT_KINDS = ("disparity", "relative_depth", "metric_depth")
NORMALIZE_MODES = ("per_image", "batch", "percentile")
DEFAULT_PERCENTILES = (2.0, 98.0)
METRIC_FLOOR = 1e-3  # metres: nothing is nearer than a millimetre
_QUANTIZE_CHUNK = 1 << 20  # pixels quantised at a time
_QUANTILE_SAMPLES = 4_000_000  # torch.quantile refuses inputs over 16M elements; larger maps are subsampled

DepthInput = Union[torch.Tensor, np.ndarray, Sequence[Union[torch.Tensor, np.ndarray]]]
Size = Union[int, tuple[int, int], None]


# -------------------------------------------------------------------------------------------- depth maps


def depth_maps(depth: DepthInput) -> tuple[list[torch.Tensor], str]:
    """Depth in any accepted form -> (list of float32 (H, W) CPU tensors, layout).

    The layout is "single" for (H, W), "batch" for (B, H, W) and "list" for a list of maps; `condition` returns
    its result in the same layout.
    """
    if isinstance(depth, (list, tuple)):
        maps = []
        for index, item in enumerate(depth):
            item = torch.as_tensor(np.asarray(item) if not isinstance(item, torch.Tensor) else item)
            if item.ndim == 3 and item.shape[0] == 1:
                item = item[0]
            if item.ndim != 2:
                raise ValueError(f"Depth map {index} has shape {tuple(item.shape)}; each must be (H, W).")
            maps.append(item)
        layout = "list"
    elif isinstance(depth, (torch.Tensor, np.ndarray)):
        tensor = torch.as_tensor(depth) if isinstance(depth, np.ndarray) else depth
        if tensor.ndim == 2:
            maps, layout = [tensor], "single"
        elif tensor.ndim == 3:
            maps, layout = list(tensor), "batch"
        else:
            raise ValueError(f"Expected depth of shape (H, W) or (B, H, W), got {tuple(tensor.shape)}.")
    else:
        raise TypeError(
            f"Expected depth as a torch tensor, a numpy array or a list of them, got {type(depth).__name__} "
            "(to make a control image from a photo, use DepthAnythingDetector)."
        )
    if not maps:
        raise ValueError("No depth maps given.")
    for index, item in enumerate(maps):
        if item.numel() == 0:
            raise ValueError(
                f"Depth map {index} is empty (shape {tuple(item.shape)}): there is no depth to normalise; give maps "
                "of at least one pixel."
            )
        if not (item.is_floating_point() or item.dtype in (torch.uint8, torch.int16, torch.int32, torch.int64)):
            raise TypeError(f"Depth map {index} has dtype {item.dtype}; give float or integer depth.")
    return [m.detach().to("cpu", torch.float32) for m in maps], layout


def near_bright(depth: torch.Tensor, kind: str = "disparity") -> torch.Tensor:
    """Values that grow toward the camera: disparity as it is, depth as inverse depth; non-finite stay NaN.

    >>> near_bright(torch.tensor([2.0, float("inf")]), "metric_depth").tolist()
    [0.5, nan]
    """
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"Unknown depth kind {kind!r}; use one of {', '.join(OUTPUT_KINDS)}.")
    depth = depth.float()
    finite = torch.isfinite(depth)
    if kind == "disparity":
        values = depth
    elif kind == "metric_depth":
        values = 1.0 / depth.clamp_min(METRIC_FLOOR)
    else:  # relative depth has no unit: floor it relative to its own scale
        top = depth[finite].abs().max() if finite.any() else torch.tensor(1.0)
        values = 1.0 / depth.clamp_min(float(top) * 1e-6 + 1e-30)
    return values if bool(finite.all()) else torch.where(finite, values, torch.nan)


@dataclass
class DepthRange:
    """A range of near-bright values shared by many maps, gathered one map at a time.

    This is how one range spans a whole folder or clip without holding its maps: a first pass `update`s the
    range with every map, a second conditions each map with `value_range=` this range.

    Example:
        >>> shared = DepthRange()
        >>> for depth in (torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 5.0]])):
        ...     _ = shared.update(depth)
        >>> (shared.low, shared.high)
        (1.0, 5.0)
    """

    low: float = math.inf
    high: float = -math.inf

    def update(self, depth: torch.Tensor, kind: str = "disparity") -> "DepthRange":
        values = near_bright(torch.as_tensor(depth), kind)
        finite = values[torch.isfinite(values)]
        if finite.numel():
            self.low = min(self.low, float(finite.min()))
            self.high = max(self.high, float(finite.max()))
        return self

    def merge(self, other: "DepthRange") -> "DepthRange":
        return DepthRange(min(self.low, other.low), max(self.high, other.high))

    @property
    def empty(self) -> bool:
        return self.high < self.low


def _finite_bounds(values: torch.Tensor) -> tuple[float, float]:
    finite = torch.isfinite(values)
    if bool(finite.all()):
        return float(values.min()), float(values.max())
    if not bool(finite.any()):
        return math.inf, -math.inf
    return float(values[finite].min()), float(values[finite].max())


def _percentile_bounds(values: torch.Tensor, percentiles: tuple[float, float]) -> tuple[float, float]:
    flat = values.flatten()
    flat = flat[torch.isfinite(flat)]
    if not flat.numel():
        return math.inf, -math.inf
    if flat.numel() > _QUANTILE_SAMPLES:
        flat = flat[:: flat.numel() // _QUANTILE_SAMPLES + 1]  # a fixed stride: reproducible
    q = torch.tensor([percentiles[0] / 100, percentiles[1] / 100])
    low, high = torch.quantile(flat, q).tolist()
    return low, high


def _unit(values: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """values over [low, high] -> [0, 1]; a constant map (no depth order) is 0, non-finite pixels are 0 (far)."""
    if not high > low:
        return torch.zeros_like(values)
    low_t, span = torch.tensor(low, dtype=torch.float32), torch.tensor(high, dtype=torch.float32) - low
    if torch.isfinite(span):
        out = values.sub(low_t).div_(span)
    else:  # a range wider than float32 holds: halve everything first
        out = values.div(2).sub_(low_t / 2).div_(high / 2 - low / 2)
    return out.clamp_(0, 1).nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)  # in place: one map-sized copy in all


def _ranges(
    values: list[torch.Tensor], mode: str, percentiles: tuple[float, float], value_range
) -> list[tuple[float, float]]:
    if value_range is not None:
        if isinstance(value_range, DepthRange):
            value_range = (value_range.low, value_range.high)
        low, high = (float(v) for v in value_range)
        return [(low, high)] * len(values)
    if mode == "per_image":
        return [_finite_bounds(v) for v in values]
    if mode == "batch":
        bounds = [_finite_bounds(v) for v in values]
        shared = (min(b[0] for b in bounds), max(b[1] for b in bounds))
        return [shared] * len(values)
    return [_percentile_bounds(v, percentiles) for v in values]


def value_ranges(
    depth: DepthInput,
    *,
    kind: str = "disparity",
    normalize: str = "per_image",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    value_range: DepthRange | tuple[float, float] | None = None,
    far_mask: DepthInput | None = None,
) -> list[DepthRange]:
    """The near-bright range each map is mapped to [0, 1] over by `condition` with the same options (`far_mask`
    pixels left out, as there).

    Files that keep depth record it (`depth_anything.depth_files`), so that a 16-bit map can be read back as
    values. Passing a map's range as `value_range` to `condition` gives exactly the map `normalize` gives.

    >>> value_ranges(torch.tensor([[1.0, 4.0]]), kind="metric_depth")
    [DepthRange(low=0.25, high=1.0)]
    """
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"Unknown normalize {normalize!r}; use one of {', '.join(map(repr, NORMALIZE_MODES))}.")
    maps, _ = depth_maps(depth)
    values = near_bright_values(maps, kind, far_masks(far_mask, maps))
    return [DepthRange(low, high) for low, high in _ranges(values, normalize, percentiles, value_range)]


def near_bright_values(maps: list[torch.Tensor], kind: str, far: list[torch.Tensor | None]) -> list[torch.Tensor]:
    """Each map in near-bright units, its `far` pixels NaN: far whatever the network said, out of every range."""
    values = [near_bright(m, kind) for m in maps]
    return [v if f is None else v.masked_fill(f, torch.nan) for v, f in zip(values, far)]


# ------------------------------------------------------------------------------------------ target sizes


def size_problem(size: Size, multiple: int = 8, why: str = "diffusers' VAE works in 8-pixel steps") -> str | None:
    """Why `size` (None, a short side, or (width, height)) is not a valid output size, or None."""
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, (int, tuple, list)):
        return TypeProblem(f"size must be an int (short side) or a (width, height) pair, got {size!r}.")
    sides = [size] if isinstance(size, int) else list(size)
    pair_ok = isinstance(size, int) or len(sides) == 2
    if not pair_ok or not all(isinstance(s, int) and not isinstance(s, bool) for s in sides):
        return TypeProblem(f"size must be an int (short side) or a (width, height) pair of ints, got {size!r}.")
    for side in sides:
        if side < multiple or side % multiple:
            below = side // multiple * multiple
            hint = f"use {below} or {below + multiple}" if below else f"use {multiple}"
            return f"Output sides must be positive multiples of {multiple} ({why}); got {side}, {hint}."
    return None


def output_size(height: int, width: int, size: Size, multiple: int = 8) -> tuple[int, int]:
    """(height, width) of the conditioning image for a map or photo of this size.

    None keeps the size; an int is the short side, the long side following the aspect ratio rounded to the
    nearest multiple; a (width, height) pair is used as given.

    >>> output_size(750, 1000, 512)
    (512, 680)
    """
    if size is None:
        return height, width
    if isinstance(size, int):
        scale = size / min(height, width)
        long_side = max(multiple, round(max(height, width) * scale / multiple) * multiple)
        return (size, long_side) if height <= width else (long_side, size)
    return int(size[1]), int(size[0])


def crop_box(height: int, width: int, out_height: int, out_width: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the centred crop of an image with the aspect ratio out_height:out_width.

    >>> crop_box(60, 120, 64, 64)
    (0, 30, 60, 60)
    """
    if width * out_height > out_width * height:  # too wide
        keep = max(1, min(width, round(height * out_width / out_height)))
        return 0, (width - keep) // 2, height, keep
    keep = max(1, min(height, round(width * out_height / out_width)))
    return (height - keep) // 2, 0, keep, width


def resize_unit(map01: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A [0, 1] map (H, W) -> (height, width): antialiased bilinear, whose non-negative weights never overshoot."""
    if tuple(map01.shape) == (height, width):
        return map01
    out = F.interpolate(map01[None, None], size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return out[0, 0].clamp(0.0, 1.0)


# ------------------------------------------------------------------------------------------------ stage


def quantize(map01: torch.Tensor, bits: int) -> np.ndarray:
    """[0, 1] -> uint8 (bits=8) or uint16 (bits=16) with rounding, so that the levels equal the values."""
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits!r}.")
    values = map01.detach().cpu()
    out = np.empty(values.numel(), dtype=np.uint8 if bits == 8 else np.uint16)
    flat = values.reshape(-1)
    for start in range(0, flat.numel(), _QUANTIZE_CHUNK):  # in chunks: no float64 copy of a large map
        chunk = flat[start : start + _QUANTIZE_CHUNK]
        if bits == 8:
            out[start : start + len(chunk)] = chunk.float().clamp(0, 1).mul_(255).round_().to(torch.uint8).numpy()
        else:
            levels = chunk.double().clamp(0, 1).mul_(65535).round_()
            out[start : start + len(chunk)] = levels.to(torch.int32).numpy()
    return out.reshape(tuple(values.shape))


def condition(
    depth: DepthInput,
    *,
    kind: str = "disparity",
    normalize: str = "per_image",
    invert: bool | None = None,
    gamma: float = 1.0,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    value_range: DepthRange | tuple[float, float] | None = None,
    controlnet: Any = None,
    size: Size = None,
    bits: int | None = None,
    far_mask: DepthInput | None = None,
):
    """Depth -> conditioning: [0, 1] maps with near = 1 (white), as depth ControlNets take them.

    Args:
        depth: (H, W), (B, H, W) or a list of (H, W) maps (sizes may differ), tensors or arrays.
        kind: what the values are: "disparity" (v1 / v2, near = large), "relative_depth" or "metric_depth"
            (far = large: turned into inverse depth first). A model tells its own as `model.output_kind`.
        normalize: "per_image" (each map's own range), "batch" (one range across all maps: no flicker between
            video frames) or "percentile" (each map's `percentiles` range, robust to outliers).
        invert: True for far = white; None takes it from `controlnet` (near = white when none is named).
        gamma: applied after normalisation (and inversion): above 1 darkens the far range, below 1 lifts it.
        percentiles: the (low, high) percentiles of normalize="percentile".
        value_range: a range to use instead of normalising: a `DepthRange` gathered over many maps, or
            (low, high) in near-bright units.
        controlnet: hub id, path, model or pipeline the image is for (`depth_anything.controlnets`): sets the
            polarity and the size multiple.
        size: None keeps each map's size; an int is the short side (the long side follows, rounded to the size
            multiple); (width, height) is exact, reached by a centred crop, never by stretching.
        bits: None for float32 tensors; 8 or 16 for uint8 / uint16 numpy arrays.
        far_mask: maps like `depth` (same layout and sizes), true (or above 0.5) where a pixel is infinitely
            far, e.g. the sky mask of `model.infer(..., return_sky=True)`: those pixels become far (0, or 1 when
            inverted) and do not move the range.

    Returns:
        The input's layout: (H, W) for (H, W); (B, H, W) for a batch (a list when a target crop made sizes
        differ); a list for a list.
    """
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"Unknown normalize {normalize!r}; use one of {', '.join(map(repr, NORMALIZE_MODES))}.")
    lo, hi = percentiles
    if not 0 <= lo < hi <= 100:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}.")
    check(gamma_problem(gamma))
    if bits not in (None, 8, 16):
        raise ValueError(f"bits must be None, 8 or 16, got {bits!r}.")
    maps, layout = depth_maps(depth)
    rules = control_rules(controlnet, invert)
    check(size_problem(size, rules.multiple, rules.why))
    far = far_masks(far_mask, maps)

    targets = [output_size(*m.shape, size, rules.multiple) for m in maps]
    if size is not None:
        boxes = [crop_box(*m.shape, *target) for m, target in zip(maps, targets)]
        maps = [m[top : top + h, left : left + w] for m, (top, left, h, w) in zip(maps, boxes)]
        far = [None if f is None else f[top : top + h, left : left + w] for f, (top, left, h, w) in zip(far, boxes)]
    values = near_bright_values(maps, kind, far)
    out = []
    for v, (low, high), (height, width) in zip(values, _ranges(values, normalize, percentiles, value_range), targets):
        unit = _unit(v, low, high)  # a new tensor: the steps below work on it in place
        if rules.invert:
            unit = unit.neg_().add_(1.0)
        if gamma != 1.0:
            unit = unit.pow_(gamma)
        unit = resize_unit(unit, height, width)
        out.append(quantize(unit, bits) if bits else unit)
    return _in_layout(out, layout)


def invalid_mask(depth: DepthInput, kind: str = "disparity"):
    """Where `condition` had no depth to use: True at pixels whose value is NaN or infinite (their conditioning
    is the far value), in `condition`'s layout (bool). What the Estimate node's invalid_mask output shows.

    >>> invalid_mask(torch.tensor([[1.0, float("nan"), float("inf")]])).tolist()
    [[False, True, True]]
    """
    maps, layout = depth_maps(depth)
    return _in_layout([torch.isnan(near_bright(m, kind)) for m in maps], layout)


def far_masks(far_mask: DepthInput | None, maps: list[torch.Tensor]) -> list[torch.Tensor | None]:
    """`condition`'s far_mask as one boolean (H, W) map (or None) per depth map, checked against their sizes."""
    if far_mask is None:
        return [None] * len(maps)

    def as_numbers(mask):
        if isinstance(mask, (list, tuple)):
            return [as_numbers(m) for m in mask]
        return torch.as_tensor(mask).float()  # booleans are welcome here, unlike depth

    masks, _ = depth_maps(as_numbers(far_mask))
    if len(masks) != len(maps) or any(f.shape != m.shape for f, m in zip(masks, maps)):
        raise ValueError(
            f"far_mask holds maps of sizes {[tuple(f.shape) for f in masks]}, the depth "
            f"{[tuple(m.shape) for m in maps]}: give one mask per depth map, of its size."
        )
    return [f > 0.5 for f in masks]


def _in_layout(maps: list, layout: str):
    if layout == "single":
        return maps[0]
    if layout == "list" or any(m.shape != maps[0].shape for m in maps):
        return maps
    return np.stack(maps) if isinstance(maps[0], np.ndarray) else torch.stack(maps)


def normalize(
    depth: torch.Tensor | np.ndarray,
    mode: str = "per_image",
    *,
    invert: bool = False,
    gamma: float = 1.0,
    metric: bool = False,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
) -> torch.Tensor:
    """Depth or disparity (H, W) / (B, H, W) -> float32 of the same shape in [0, 1], near = 1.

    The shape-keeping form of `condition` (see there): `metric=True` reads the values as metres.

    Example:
        >>> normalize(torch.tensor([[1.0, 3.0]])).tolist()
        [[0.0, 1.0]]
    """
    tensor = torch.as_tensor(np.asarray(depth) if not isinstance(depth, torch.Tensor) else depth)
    if tensor.ndim not in (2, 3):
        raise ValueError(f"Expected depth of shape (H, W) or (B, H, W), got {tuple(tensor.shape)}.")
    kind = "metric_depth" if metric else "disparity"
    return condition(tensor, kind=kind, normalize=mode, invert=invert, gamma=gamma, percentiles=percentiles)


def shared_range(depths: Iterable[torch.Tensor], kind: str = "disparity") -> DepthRange:
    """The `DepthRange` of many maps, read one at a time."""
    shared = DepthRange()
    for depth in depths:
        shared.update(depth, kind)
    return shared
