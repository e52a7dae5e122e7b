"""Previews of depth: the official colour maps, and [0, 1] maps as 8 / 16-bit integers.

Normalisation lives in `depth_anything.conditioning`; `normalize` is re-exported here for older imports.
"""

from __future__ import annotations

import numpy as np
import torch

from ._colormap_data import COLORMAPS_HEX
from .conditioning import NORMALIZE_MODES, normalize, quantize

__all__ = ["COLORMAPS", "NORMALIZE_MODES", "colorize", "colorize_uint8", "normalize", "to_uint8", "to_uint16"]

COLORMAPS = ("Spectral_r", "inferno", "turbo", "grayscale")
_CHUNK = 1 << 20  # pixels coloured at a time by colorize_uint8


def _lut(name: str) -> torch.Tensor:
    if name not in COLORMAPS_HEX:
        raise ValueError(f"Unknown colormap {name!r}; use one of {', '.join(COLORMAPS)}.")
    table = np.frombuffer(bytes.fromhex(COLORMAPS_HEX[name]), dtype=np.uint8).reshape(256, 3)
    return torch.from_numpy(table.copy())


def colorize(depth: torch.Tensor | np.ndarray, cmap: str = "Spectral_r") -> torch.Tensor:
    """Normalised depth in [0, 1] -> RGB preview, float32 (..., H, W, 3) in [0, 1].

    The colours are the official run.py's: the map is quantised to 8 bits and looked up in matplotlib's table
    (Spectral_r for v2, inferno for v1; turbo; grayscale repeats the value). Values outside [0, 1] are clamped;
    NaN shows as 0 (far), as the condition stage gives non-finite depth.

    Example:
        >>> colorize(torch.zeros(1, 4, 4), "grayscale").shape
        torch.Size([1, 4, 4, 3])
    """
    values = torch.as_tensor(np.asarray(depth) if not isinstance(depth, torch.Tensor) else depth).float()
    values = torch.nan_to_num(values, nan=0.0).clamp(0, 1)  # clamp sends +-inf to 1 / 0
    if cmap == "grayscale":
        return values[..., None].expand(*values.shape, 3).contiguous()
    return _lut(cmap)[_levels(values).long()].float() / 255.0


def colorize_uint8(depth: torch.Tensor, cmap: str = "Spectral_r") -> np.ndarray:
    """`colorize` as uint8 (..., H, W, 3), straight from the colour table: what files store, with no float
    picture of the map's size on the way (4x less memory for a large map).

    >>> colorize_uint8(torch.ones(2, 2), "grayscale")[0, 0].tolist()
    [255, 255, 255]
    """
    values = torch.as_tensor(np.asarray(depth) if not isinstance(depth, torch.Tensor) else depth).detach().cpu()
    table = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1) if cmap == "grayscale" else None
    table = _lut(cmap).numpy() if table is None else table
    out = np.empty((values.numel(), 3), dtype=np.uint8)
    flat = values.reshape(-1)
    for start in range(0, flat.numel(), _CHUNK):  # in chunks: a few MB of temporaries for any map size
        chunk = torch.nan_to_num(flat[start : start + _CHUNK].float(), nan=0.0).clamp_(0, 1)
        if cmap == "grayscale":
            levels = chunk.mul_(255).round_().to(torch.uint8)  # grayscale rounds, as `quantize` does
        else:
            levels = _levels(chunk)
        out[start : start + _CHUNK] = table[levels.numpy()]
    return out.reshape(*values.shape, 3)


def _levels(values: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> the colour table's row, 0..255, truncated as run.py's uint8 cast does."""
    return values.cpu().mul(255).floor_().to(torch.uint8)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """float [0, 1] -> uint8 with rounding (so that 8-bit outputs equal the values, not one below)."""
    return quantize(image, 8)


def to_uint16(image: torch.Tensor) -> np.ndarray:
    """float [0, 1] -> uint16 with rounding, for 16-bit PNG depth."""
    return quantize(image, 16)
