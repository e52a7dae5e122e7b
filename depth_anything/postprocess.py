"""Previews of depth: the official colour maps, and [0, 1] maps as 8 / 16-bit integers.

Normalisation lives in `depth_anything.conditioning`; `normalize` is re-exported here for older imports.
"""

from __future__ import annotations

import numpy as np
import torch

from ._colormap_data import COLORMAPS_HEX
from .conditioning import NORMALIZE_MODES, normalize, quantize

__all__ = ["COLORMAPS", "NORMALIZE_MODES", "colorize", "normalize", "to_uint8", "to_uint16"]

COLORMAPS = ("Spectral_r", "inferno", "turbo", "grayscale")


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
    return quantize(image, 8)


def to_uint16(image: torch.Tensor) -> np.ndarray:
    """float [0, 1] -> uint16 with rounding, for 16-bit PNG depth."""
    return quantize(image, 16)
