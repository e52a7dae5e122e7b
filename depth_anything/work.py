"""How much work depth for an image is, before any of it starts: network passes x tokens, and time on this device.

Allowed settings can still ask for practically endless work: input_size 4088 is one pass of 85,000 tokens, whose
attention alone is about 140 TFLOP (three quarters of an hour on a laptop CPU, well under a second on a
data-centre GPU). So every surface asks here first (`DepthModel.infer`, and through it the ComfyUI nodes and
the command line's tiled path; the command line's reading threads for plain passes):

- `estimate` counts the passes an image needs (one, or a global pass plus its tiles), the tokens of each, and
  the model's FLOPs for them (`DepthModel.pass_flops`), and turns them into seconds at this device's measured
  matrix-multiply speed (`device_speed`, measured once per device and precision);
- `check_work` warns above `options.WARN_SECONDS` per image and refuses above `options.LIMIT_SECONDS` (or
  $DEPTH_ANYTHING_MAX_SECONDS; 0 turns the limit off), with the estimate and a setting that fits.

The estimate is deliberately simple (FLOPs at half the matmul speed, which the v2 encoder reaches on CPUs and
GPUs alike): it tells a minute from an hour, not 50 s from 60 s.

Example:
    >>> work = estimate(model, [(4088, 4088)], input_size=4088)  # doctest: +SKIP
    >>> work[0].describe()  # doctest: +SKIP
    '1 pass of up to 85,264 tokens, 140 TFLOP: about 47 min on cpu'
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .options import LIMIT_SECONDS, PATCH, WARN_SECONDS

EFFICIENCY = 0.5  # share of the matmul speed a forward pass reaches (v2-S measured 0.78 on a CPU)
LIMIT_VARIABLE = "DEPTH_ANYTHING_MAX_SECONDS"
_speeds: dict[tuple[str, torch.dtype], float] = {}


class WorkLimitError(ValueError):
    """Settings whose estimated work per image is beyond the limit; the message gives the estimate and a fit."""


class WorkWarning(UserWarning):
    """Settings whose estimated work per image is long, though within the limit."""


@dataclass(frozen=True)
class Work:
    """The estimated work of depth for one image.

    Attributes:
        size: the image's (height, width).
        passes: network passes (1, or 1 global pass + the tiles).
        tokens: patch tokens of the largest pass.
        flops: floating-point operations of all passes.
        seconds: the estimated time on the model's device.
        device: where it runs, for messages.
    """

    size: tuple[int, int]
    passes: int
    tokens: int
    flops: float
    seconds: float
    device: str

    def describe(self) -> str:
        plural = "pass" if self.passes == 1 else "passes"
        return (
            f"{self.passes:,} {plural} of up to {self.tokens:,} tokens, {_flops(self.flops)}: about "
            f"{_duration(self.seconds)} on {self.device}"
        )


def device_speed(device: torch.device | str, dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of a 1024 x 1024 matrix multiply on `device` in `dtype`, measured once (a few milliseconds)."""
    device = torch.device(device)
    key = (str(device), dtype)
    if key not in _speeds:
        a = torch.randn(1024, 1024, device=device).to(dtype)
        b = torch.randn(1024, 1024, device=device).to(dtype)
        best = math.inf
        for _ in range(3):  # the best of three: the first call warms the kernels up
            _sync(device)
            start = time.perf_counter()
            (a @ b).sum().item()
            best = min(best, time.perf_counter() - start)
        _speeds[key] = 2 * 1024**3 / max(best, 1e-9)
    return _speeds[key]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def estimate(
    model,
    sizes: Sequence[tuple[int, int]],
    *,
    input_size: int | None = None,
    max_size: int | None = None,
    tiled: bool | str = False,
    tile: int | None = None,
    overlap: int | None = None,
    device: torch.device | str | None = None,
) -> list[Work]:
    """The `Work` of each image of size (height, width), with `DepthModel.infer`'s settings, on `device` (default:
    where the model is; ComfyUI asks for its load device before moving the model there)."""
    from .tiling import tile_grid

    rule = model.family.preprocessing
    device = torch.device(device) if device is not None else model.device
    speed = EFFICIENCY * device_speed(device, model.dtype)
    works = []
    for height, width in sizes:
        net = [rule.net_size(height, width, input_size, max_size)]
        if tiled:
            model_size = rule.input_size if input_size is None else input_size
            grid = tile_grid(
                height, width, tile=tile, overlap=overlap, model_size=model_size, max_size=max_size,
                auto=tiled == "auto", net_size=lambda h, w: rule.net_size(h, w, input_size, max_size),
            )
            if grid is not None:
                net += [rule.net_size(grid.tile_height, grid.tile_width, input_size, max_size)] * len(grid)
        flops = sum(model.pass_flops(h, w) * net.count((h, w)) for h, w in set(net))  # tiles share a size
        tokens = max((h // PATCH) * (w // PATCH) for h, w in net)
        works.append(Work((height, width), len(net), tokens, flops, flops / speed, _device_name(device)))
    return works


def limit_seconds() -> float:
    """The refusal limit per image: $DEPTH_ANYTHING_MAX_SECONDS when set (0 or below: none), else LIMIT_SECONDS."""
    value = os.environ.get(LIMIT_VARIABLE)
    if value is None or not value.strip():
        return LIMIT_SECONDS
    try:
        limit = float(value)
    except ValueError:
        raise ValueError(f"${LIMIT_VARIABLE} must be a number of seconds, got {value!r}.") from None
    return limit if limit > 0 else math.inf


def check_work(model, sizes: Sequence[tuple[int, int]], **settings) -> list[Work]:
    """Estimate the work of each image with `settings` (`estimate`'s keywords): refuse the run when one image is
    over the limit, warn (`WorkWarning`) when one takes over WARN_SECONDS. Returns the estimates.

    Raises:
        WorkLimitError: with the estimate, the limit, and a setting that fits.
    """
    settings = dict(dict(input_size=None, max_size=None, tiled=False, tile=None, overlap=None), **settings)
    works = estimate(model, sizes, **settings)
    settings.pop("device", None)  # the advice below is estimated where the model is
    worst = max(works, key=lambda w: w.seconds)
    limit = limit_seconds()
    if worst.seconds > limit:
        height, width = worst.size
        raise WorkLimitError(
            f"Depth for a {width}x{height} image with these settings is {worst.describe()}, over the "
            f"{_duration(limit)} limit per image. {fitting_setting(model, worst.size, **settings)} "
            f"(${LIMIT_VARIABLE} sets the limit in seconds; 0 removes it.)"
        )
    if worst.seconds > WARN_SECONDS:
        height, width = worst.size
        warnings.warn(
            f"Depth for a {width}x{height} image will take a while: {worst.describe()}. "
            f"{fitting_setting(model, worst.size, **settings)}",
            WorkWarning,
            stacklevel=3,
        )
    return works


def fitting_setting(model, size: tuple[int, int], *, input_size, max_size, tiled, tile, overlap) -> str:
    """A sentence with a setting whose estimate is within WARN_SECONDS: the default tiles, else the largest
    input_size that fits."""
    rule = model.family.preprocessing
    current = rule.input_size if input_size is None else input_size
    if tiled and (tile is not None or overlap is not None):
        (work,) = estimate(model, [size], input_size=input_size, max_size=max_size, tiled=tiled)
        if work.seconds <= WARN_SECONDS:
            return f"The default tile and overlap fit: {work.describe()}."
    options = dict(max_size=max_size, tiled=tiled, tile=tile, overlap=overlap)

    def fits(steps: int) -> Work | None:
        (work,) = estimate(model, [size], input_size=steps * PATCH, **options)
        return work if work.seconds <= WARN_SECONDS else None

    low, high = 0, current // PATCH - 1  # the work grows with input_size: search the largest that fits
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    work = fits(low) if low else None
    if work is None:
        return "No input_size fits this device's speed; use a GPU, or a smaller image."
    advice = f"input_size {low * PATCH} fits: {work.describe()}"
    if not tiled:
        advice += "; for fine detail at that cost, tiling sees the image in native-resolution tiles"
    return advice + "."


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _flops(flops: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9)):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops / 1e6:.3g} MFLOP"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
