"""Depth maps -> conditioning and previews: normalisation to [0, 1] (near = 1) and colour maps."""

from __future__ import annotations

import numpy as np
import torch

from ._colormap_data import COLORMAPS_HEX

NORMALIZE_MODES = ("per_image", "batch", "percentile")
COLORMAPS = ("Spectral_r", "inferno", "turbo", "grayscale")


def _as_batch(depth) -> tuple[torch.Tensor, bool]:
    """(B, H, W) float32 tensor, and whether the input had no batch dimension."""
    tensor = torch.as_tensor(np.asarray(depth) if not isinstance(depth, torch.Tensor) else depth)
    if tensor.ndim == 2:
        return tensor[None].float(), True
    if tensor.ndim != 3:
        raise ValueError(f"Expected depth of shape (H, W) or (B, H, W), got {tuple(tensor.shape)}.")
    return tensor.float(), False


def _scale(values: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    span = high - low
    # A constant map has no depth order: it becomes 0 rather than NaN.
    return torch.where(span > 0, (values - low) / span.clamp_min(torch.finfo(torch.float32).tiny), 0.0).clamp(0, 1)


def normalize(
    depth: torch.Tensor | np.ndarray,
    mode: str = "per_image",
    *,
    invert: bool = False,
    gamma: float = 1.0,
    metric: bool = False,
    percentiles: tuple[float, float] = (2.0, 98.0),
) -> torch.Tensor:
    """Depth or disparity -> float32 in [0, 1] with near = 1, the convention of depth ControlNets.

    Args:
        depth: (H, W) or (B, H, W), as returned by `DepthAnything.infer`.
        mode: "per_image" (min-max of each map), "batch" (one min-max range for the whole batch or clip: no
            flicker between video frames), "percentile" (each map's `percentiles` range, robust to outliers).
        invert: near = 0 instead (for ControlNets trained far-is-white).
        gamma: applied after normalisation (and inversion); >1 darkens the far range, <1 lifts it.
        metric: the input is metric depth in metres (far = large); it is turned into inverse depth first so
            that the result is near-bright like the relative models' disparity.
        percentiles: the (low, high) percentiles used by mode="percentile".

    Returns:
        float32 tensor of the input's shape, in [0, 1].

    Example:
        >>> normalize(torch.tensor([[1.0, 3.0]])).tolist()
        [[0.0, 1.0]]
    """
    if mode not in NORMALIZE_MODES:
        raise ValueError(f"Unknown normalization {mode!r}; use one of {', '.join(NORMALIZE_MODES)}.")
    if not gamma > 0:
        raise ValueError(f"gamma must be positive, got {gamma}.")
    batch, squeeze = _as_batch(depth)
    batch = torch.nan_to_num(batch, nan=0.0, posinf=0.0, neginf=0.0)
    if metric:
        batch = 1.0 / batch.clamp_min(1e-3)  # metres -> inverse depth, near = large

    flat = batch.flatten(1)
    if mode == "per_image":
        low, high = flat.amin(1), flat.amax(1)
    elif mode == "batch":
        low, high = flat.amin().expand(len(flat)), flat.amax().expand(len(flat))
    else:
        lo, hi = percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}.")
        q = torch.tensor([lo / 100, hi / 100])
        bounds = torch.stack([_quantile(row, q) for row in flat])
        low, high = bounds[:, 0], bounds[:, 1]
    out = _scale(batch, low.view(-1, 1, 1), high.view(-1, 1, 1))
    if invert:
        out = 1.0 - out
    if gamma != 1.0:
        out = out.pow(gamma)
    return out[0] if squeeze else out


def _quantile(values: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    # torch.quantile refuses inputs over 16M elements; subsample huge maps with a fixed stride.
    if values.numel() > 4_000_000:
        values = values[:: values.numel() // 4_000_000 + 1]
    return torch.quantile(values, q.to(values.device))


def _lut(name: str) -> torch.Tensor:
    if name not in COLORMAPS_HEX:
        raise ValueError(f"Unknown colormap {name!r}; use one of {', '.join(COLORMAPS)}.")
    table = np.frombuffer(bytes.fromhex(COLORMAPS_HEX[name]), dtype=np.uint8).reshape(256, 3)
    return torch.from_numpy(table.copy())


def colorize(depth: torch.Tensor | np.ndarray, cmap: str = "Spectral_r") -> torch.Tensor:
    """Normalised depth in [0, 1] -> RGB preview, float32 (..., H, W, 3) in [0, 1].

    The colours are the official run.py's: the map is quantised to 8 bits and looked up in matplotlib's table
    (Spectral_r for v2, inferno for v1; turbo; grayscale repeats the value).

    Example:
        >>> colorize(torch.zeros(1, 4, 4), "grayscale").shape
        torch.Size([1, 4, 4, 3])
    """
    values = torch.as_tensor(np.asarray(depth) if not isinstance(depth, torch.Tensor) else depth).float()
    if cmap == "grayscale":
        return values.clamp(0, 1)[..., None].expand(*values.shape, 3).contiguous()
    index = (values.clamp(0, 1) * 255).floor().long()  # run.py truncates to uint8
    return _lut(cmap)[index.cpu()].float() / 255.0


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """float [0, 1] -> uint8 with rounding (so that 8-bit outputs equal the values, not one below)."""
    return (image.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def to_uint16(image: torch.Tensor) -> np.ndarray:
    """float [0, 1] -> uint16 with rounding, for 16-bit PNG depth."""
    return (image.detach().cpu().double().clamp(0, 1) * 65535).round().to(torch.int32).numpy().astype(np.uint16)
