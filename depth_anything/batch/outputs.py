"""What a batch run writes: rendering depth to output arrays and writing files atomically.

Every file is written to a temporary name in its own folder and renamed into place, so a killed run leaves
either a complete output or none; the temporary names carry host and process id, so stale ones can be
removed safely by the next run.
"""

from __future__ import annotations

import io
import json
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image

from ..postprocess import colorize, normalize, to_uint8, to_uint16

FORMATS = ("side-by-side", "png8", "png16", "npy")
GAP = 50  # white pixels between image and depth, as in the official run.py
PARTIAL_SUFFIX = ".partial"
SETTINGS_FILE = ".depth-anything.json"
_HOST = socket.gethostname().replace(".", "_").replace("-", "_")
_PNG_LEVEL = 1  # fast zlib level (OpenCV's default, as the official scripts wrote); files ~10% larger than level 6


@dataclass(frozen=True)
class RenderOptions:
    """How a depth map becomes an output file."""

    format: str = "side-by-side"  # see FORMATS
    colormap: str = "Spectral_r"  # "grayscale" for gray
    normalize: str = "per_image"  # NORMALIZE_MODES; "batch" is one range for the whole run or clip
    metric: bool = False  # the model predicts metres (far = large)

    @property
    def suffix(self) -> str:
        return ".npy" if self.format == "npy" else ".png"

    @property
    def needs_image(self) -> bool:
        return self.format == "side-by-side"

    @property
    def two_pass(self) -> bool:
        """One range for all outputs needs every depth before the first file is written."""
        return self.normalize == "batch" and self.format != "npy"


# ---------------------------------------------------------------------------------------------- rendering


def value_range(depth: torch.Tensor, metric: bool) -> tuple[float, float]:
    """(low, high) of the values `normalize` spreads over [0, 1] for this map (inverse depth for metric)."""
    values = torch.nan_to_num(depth.float(), nan=0.0, posinf=0.0, neginf=0.0)
    if metric:
        values = 1.0 / values.clamp_min(1e-3)
    return float(values.min()), float(values.max())


@dataclass
class QuantizedDepth:
    """A depth map stored compactly for the second pass: 16 bits across its own range, plus that range."""

    levels: np.ndarray  # uint16 (H, W): normalize(depth, "per_image") in 1/65535 steps
    low: float
    high: float

    @classmethod
    def from_depth(cls, depth: torch.Tensor, metric: bool) -> "QuantizedDepth":
        low, high = value_range(depth, metric)
        return cls(to_uint16(normalize(depth, "per_image", metric=metric)), low, high)

    def unit(self, low: float, high: float) -> torch.Tensor:
        """[0, 1] map over the shared range (low, high), near = 1."""
        own = torch.from_numpy(self.levels.astype(np.float32)) / 65535.0
        values = self.low + own * (self.high - self.low)
        span = high - low
        return ((values - low) / span).clamp(0, 1) if span > 0 else torch.zeros_like(values)

    def save(self, file: BinaryIO) -> None:
        np.savez(file, levels=self.levels, range=np.array([self.low, self.high], dtype=np.float64))

    @classmethod
    def load(cls, path: Path) -> "QuantizedDepth":
        with np.load(path) as data:
            low, high = data["range"].tolist()
            return cls(data["levels"], low, high)


def to_unit(depth: torch.Tensor, options: RenderOptions) -> torch.Tensor:
    """One map's [0, 1] depth (near = 1) with its own range ("per_image" or "percentile")."""
    mode = "per_image" if options.normalize == "batch" else options.normalize
    return normalize(depth, mode, metric=options.metric)


def depth_picture(unit: torch.Tensor, colormap: str) -> np.ndarray:
    """[0, 1] depth -> uint8 (H, W) for grayscale, else (H, W, 3) through the colour map."""
    if colormap == "grayscale":
        return to_uint8(unit)
    return to_uint8(colorize(unit, colormap))


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
        return to_uint16(unit)
    picture = depth_picture(unit, options.colormap)
    if options.format == "side-by-side":
        if image is None:
            raise ValueError("side-by-side output needs the input image")
        return side_by_side(image, picture)
    return picture


def output_array(depth: torch.Tensor, image: np.ndarray | None, options: RenderOptions) -> np.ndarray:
    """One input's output from its own depth: the raw float32 map for npy, else `render` over its own range."""
    if options.format == "npy":
        return depth.float().numpy()
    return render(to_unit(depth, options), image, options)


# ------------------------------------------------------------------------------------------------ writing


def partial_path(path: Path, tag: str = "") -> Path:
    """A temporary name beside `path` unique to this host and process: `.name[.tag].host-pid.partial`."""
    middle = f".{tag}" if tag else ""
    return path.with_name(f".{path.name}{middle}.{_HOST}-{os.getpid()}{PARTIAL_SUFFIX}")


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file through a temporary one in the same folder, renamed into place when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = partial_path(path)
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())  # the rename must not land before the data
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def encode(array: np.ndarray, suffix: str) -> bytes:
    """An array from `render` -> the bytes of a .png (8 or 16 bit) or .npy file."""
    buffer = io.BytesIO()
    if suffix == ".npy":
        np.save(buffer, array)
    else:
        Image.fromarray(array).save(buffer, format="PNG", compress_level=_PNG_LEVEL)
    return buffer.getvalue()


def save(path: Path, array: np.ndarray) -> None:
    """Save a rendered array atomically; the format follows the suffix (.png or .npy)."""
    data = encode(array, path.suffix)
    write_atomic(path, lambda file: file.write(data))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(folders: Iterable[Path]) -> int:
    """Delete temporary files that killed runs on this host left behind; returns how many."""
    removed = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.glob(f".*{PARTIAL_SUFFIX}"):
            owner = path.name[: -len(PARTIAL_SUFFIX)].rsplit(".", 1)[-1]
            host, _, pid = owner.rpartition("-")
            if host == _HOST and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                path.unlink(missing_ok=True)
                removed += 1
    return removed


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
            if old.get(key) != value
        ]
        if changed:
            raise SettingsMismatchError(
                f"{outdir} holds outputs made with other settings ({'; '.join(changed)}). Use another --outdir, "
                "or --overwrite to replace them."
            )
    text = json.dumps({**previous, **settings}, indent=2, sort_keys=True) + "\n"
    write_atomic(path, lambda file: file.write(text.encode()))
