"""What a batch run writes: the condition stage's maps rendered as output files, written atomically.

Every file goes through `depth_anything.files.write_atomic`, so a killed run leaves either a complete output or
none, and the next run removes what killed runs left behind. 16-bit PNG, npy and EXR outputs carry the
metadata of `depth_anything.depth_files` (model, kind, the range the map was made over), so they keep their values.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image

from ..conditioning import DepthRange, condition, near_bright, quantize, value_ranges
from ..depth_files import DepthMetadata, depth_metadata, exr_bytes, for_map, png16_bytes, write_npy
from ..files import partial_path, remove_stale_partials, write_atomic
from ..options import DEPTH_FILE_FORMATS, FORMAT_SUFFIXES, OUTPUT_FORMATS, RAW_FORMATS
from ..postprocess import colorize

__all__ = [
    "FORMATS",
    "QuantizedDepth",
    "RenderOptions",
    "SettingsMismatchError",
    "check_settings",
    "output_array",
    "partial_path",
    "remove_stale_partials",
    "render",
    "save",
    "write_atomic",
]

FORMATS = OUTPUT_FORMATS
GAP = 50  # white pixels between image and depth, as in the official run.py
SETTINGS_FILE = ".depth-anything.json"
_PNG_LEVEL = 1  # fast zlib level (OpenCV's default, as the official scripts wrote); files ~10% larger than level 6


@dataclass(frozen=True)
class RenderOptions:
    """How a depth map becomes an output file: the format, and the condition stage's options."""

    format: str = "side-by-side"  # see FORMATS
    colormap: str = "Spectral_r"  # "grayscale" for gray
    normalize: str = "per_image"  # NORMALIZE_MODES; "batch" is one range for the whole run or clip
    kind: str = "disparity"  # the model's output kind (metric depth is far = large)
    invert: bool = False
    gamma: float = 1.0
    about: DepthMetadata | None = field(default=None, compare=False)  # model and settings files record

    @property
    def suffix(self) -> str:
        return FORMAT_SUFFIXES[self.format]

    @property
    def needs_image(self) -> bool:
        return self.format == "side-by-side"

    @property
    def two_pass(self) -> bool:
        """One range for all outputs needs every depth before the first file is written."""
        return self.normalize == "batch" and self.format not in RAW_FORMATS

    def settings(self) -> dict:
        """What decides the outputs' content, for the run's settings record (`check_settings`)."""
        return {name: value for name, value in vars(self).items() if name != "about"}

    def own_range(self, depth: torch.Tensor) -> DepthRange:
        """The range one map is rendered over in a single-pass run (its own, or its percentile range)."""
        mode = "per_image" if self.normalize == "batch" else self.normalize
        return value_ranges(depth, kind=self.kind, normalize=mode)[0]

    def metadata(self, size: tuple[int, int], value_range: DepthRange | None) -> DepthMetadata | None:
        """What a png16 / npy / exr output of this size, rendered over `value_range`, records; None for pictures."""
        if self.format not in DEPTH_FILE_FORMATS:
            return None
        base = self.about if self.about is not None else depth_metadata(kind=self.kind)
        base = replace(base, kind=self.kind, normalize=self.normalize, near_white=not self.invert, gamma=self.gamma)
        return for_map(base, "raw" if self.format in RAW_FORMATS else "levels", size, value_range)

    def unit(self, depth: torch.Tensor, value_range: DepthRange | None = None) -> torch.Tensor:
        """The [0, 1] map of `depth`: over `value_range` when given, else over its own range."""
        mode = "per_image" if self.normalize == "batch" else self.normalize
        return condition(
            depth, kind=self.kind, normalize=mode, invert=self.invert, gamma=self.gamma, value_range=value_range
        )


@dataclass
class QuantizedDepth:
    """A depth map kept compactly between the two passes of a shared-range run: its near-bright values in 16
    bits across their own range, plus that range (2 bytes per pixel)."""

    levels: np.ndarray  # uint16 (H, W)
    low: float
    high: float

    @classmethod
    def from_depth(cls, depth: torch.Tensor, kind: str = "disparity") -> "QuantizedDepth":
        own = DepthRange().update(depth, kind)
        levels = quantize(condition(near_bright(depth, kind), value_range=own), 16)
        return cls(levels, own.low, own.high)

    @property
    def range(self) -> DepthRange:
        return DepthRange(self.low, self.high)

    def values(self) -> torch.Tensor:
        """The near-bright values back, to 1/65535 of the map's own range."""
        own = torch.from_numpy(self.levels.astype(np.float32)) / 65535.0
        return self.low + own * (self.high - self.low) if self.high > self.low else torch.full_like(own, self.low)

    def save(self, file: BinaryIO) -> None:
        np.savez(file, levels=self.levels, range=np.array([self.low, self.high], dtype=np.float64))

    @classmethod
    def load(cls, path: Path) -> "QuantizedDepth":
        with np.load(path) as data:
            low, high = data["range"].tolist()
            return cls(data["levels"], low, high)


def depth_picture(unit: torch.Tensor, colormap: str) -> np.ndarray:
    """[0, 1] depth -> uint8 (H, W) for grayscale, else (H, W, 3) through the colour map."""
    if colormap == "grayscale":
        return quantize(unit, 8)
    return quantize(colorize(unit, colormap), 8)


def side_by_side(image: np.ndarray, picture: np.ndarray) -> np.ndarray:
    """image | 50 px white | depth, as the official run.py and run_video.py write them."""
    if picture.ndim == 2:
        picture = np.repeat(picture[:, :, None], 3, axis=2)
    gap = np.full((image.shape[0], GAP, 3), 255, dtype=np.uint8)
    return np.concatenate([image, gap, picture], axis=1)


def render(unit: torch.Tensor, image: np.ndarray | None, options: RenderOptions) -> np.ndarray:
    """[0, 1] depth (near = 1) -> the picture saved: uint16 (H, W) for png16, uint8 otherwise.

    `image` is the uint8 RGB input, needed for side-by-side.
    """
    if options.format == "png16":
        return quantize(unit, 16)
    picture = depth_picture(unit, options.colormap)
    if options.format == "side-by-side":
        if image is None:
            raise ValueError("side-by-side output needs the input image")
        return side_by_side(image, picture)
    return picture


def output_array(
    depth: torch.Tensor, image: np.ndarray | None, options: RenderOptions, value_range: DepthRange | None = None
) -> np.ndarray:
    """One input's output from its own depth: the raw float32 map for npy / exr, else `render` over
    `value_range` (by default its own range)."""
    if options.format in RAW_FORMATS:
        return depth.float().numpy()
    return render(options.unit(depth, value_range), image, options)


def encode(array: np.ndarray, suffix: str, metadata: DepthMetadata | None = None) -> bytes:
    """An array from `output_array` -> the bytes of a .png (8 or 16 bit), .npy or .exr file; 16-bit PNGs and
    EXRs carry `metadata` (a .npy's goes beside it: `save`)."""
    if suffix == ".exr":
        return exr_bytes(array, metadata)
    if suffix == ".png" and array.dtype == np.uint16:
        return png16_bytes(array, metadata)
    buffer = io.BytesIO()
    if suffix == ".npy":
        np.save(buffer, array)
    else:
        Image.fromarray(array).save(buffer, format="PNG", compress_level=_PNG_LEVEL)
    return buffer.getvalue()


def save(path: Path, array: np.ndarray, metadata: DepthMetadata | None = None) -> None:
    """Save a rendered array atomically with its metadata; the format follows the suffix (.png, .npy, .exr)."""
    if path.suffix == ".npy":
        write_npy(path, array, metadata)
        return
    data = encode(array, path.suffix, metadata)
    write_atomic(path, lambda file: file.write(data))


# ------------------------------------------------------------------------------------------ run settings


class SettingsMismatchError(ValueError):
    """The output folder holds outputs made with other settings."""


def check_settings(outdir: Path, settings: dict[str, dict], overwrite: bool) -> None:
    """Record the settings outputs are made with, and refuse to mix outputs of different settings.

    `settings` maps a kind of output ("images", "videos") to what decides its content. Resuming skips
    finished files, so a second run with another format or model into the same folder would silently leave a
    mix; the settings file catches that. Kinds not in this run keep their record.
    """
    path = outdir / SETTINGS_FILE
    previous: dict = {}
    if path.is_file():
        try:
            loaded = json.loads(path.read_text())
            previous = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            previous = {}
    if not overwrite:
        changed = [
            f"{kind} {key}: {old.get(key)!r} -> {value!r}"
            for kind, record in settings.items()
            if isinstance(old := previous.get(kind), dict)
            for key, value in record.items()
            if key in old and old[key] != value  # a setting an older version did not record cannot clash
        ]
        if changed:
            raise SettingsMismatchError(
                f"{outdir} holds outputs made with other settings ({'; '.join(changed)}). Use another --outdir, "
                "or --overwrite to replace them."
            )
    text = json.dumps({**previous, **settings}, indent=2, sort_keys=True) + "\n"
    write_atomic(path, lambda file: file.write(text.encode()))
