"""Depth files that keep their values: float32 OpenEXR, self-describing 16-bit PNG, and .npy with a sidecar.

A 16-bit PNG of depth is a [0, 1] map in 65536 levels; on its own it does not say which values its levels stand
for. Every file written here carries one metadata document (`DepthMetadata`, JSON) that says what it holds: the
model and family, the kind of values (`model.output_kind`: disparity, relative depth, or metres), the
normalisation and the near-bright range that was mapped to [0, 1], whether near is white, the gamma, the map's
size, and the input size and tiling it was computed with. With it, `load_depth` gives the values back:

- EXR (`.exr`): the raw float32 values in one channel ("Y" by default, see `EXR_CHANNELS`), bit-exact; the
  document is a string attribute of the header under `METADATA_KEY`.
- 16-bit PNG (`.png`): the condition stage's map (near = white unless inverted), the document in one iTXt chunk
  under `METADATA_KEY`; the values come back to 1/65535 of the recorded range (in near-bright units: disparity,
  or inverse depth for depth kinds).
- npy (`.npy`): the raw float32 values; the document in a sidecar `<name>.json` beside it.

`depth_metadata` is the one builder of the document, used by the command line and the ComfyUI nodes alike.

Example:
    >>> model = DepthAnything.from_pretrained("depth_anything_v2_vits")  # doctest: +SKIP
    >>> depth = model.infer("photo.jpg")[0]  # doctest: +SKIP
    >>> save_depth("photo.exr", depth, model=model)  # doctest: +SKIP
    >>> loaded = load_depth("photo.exr")  # doctest: +SKIP
    >>> bool((loaded.values == depth.numpy()).all())  # doctest: +SKIP
    True
"""

from __future__ import annotations

import io
import json
import math
import numbers
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .conditioning import NORMALIZE_MODES, OUTPUT_KINDS, DepthRange, condition, value_ranges
from .files import write_atomic
from .options import DEPTH_FILE_FORMATS, FORMAT_SUFFIXES, TILING_MODES

__all__ = [
    "DEPTH_FORMATS",
    "EXR_CHANNELS",
    "METADATA_KEY",
    "DepthFile",
    "DepthFileError",
    "DepthMetadata",
    "depth_format",
    "depth_metadata",
    "exr_bytes",
    "for_map",
    "is_png16",
    "load_depth",
    "png16_bytes",
    "save_depth",
    "sidecar_path",
    "write_npy",
    "write_sidecar",
]

METADATA_KEY = "depth_anything"  # PNG iTXt keyword, EXR header attribute; the sidecar .json is the document itself
SCHEMA = "depth-anything/depth-file"
SCHEMA_VERSION = 1
DEPTH_FORMATS = {FORMAT_SUFFIXES[name]: name for name in DEPTH_FILE_FORMATS}  # the files that keep values
EXR_CHANNELS = ("Y", "Z")  # Y: a gray image to every reader; Z: the depth-pass name compositors file as depth
DEFAULT_EXR_CHANNEL = "Y"
EXR_DEPTH_NAMES = ("Y", "Z", "depth.Z", "Depth.Z")  # read in this order from files without our metadata
LEVELS = 65535
_PNG_LEVEL = 1  # fast zlib, as the command line's PNGs


class DepthFileError(ValueError):
    """A depth file that cannot be read as depth; the message names the file, what is wrong and what to do."""


# ---------------------------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class DepthMetadata:
    """What a depth file holds: the JSON document stored under `METADATA_KEY`.

    Attributes:
        kind: the values' quantity, `model.output_kind`: "disparity" (near = large), "relative_depth" or
            "metric_depth" (metres; both far = large).
        model, family, encoder: the checkpoint's file name, the family ("v2", "metric_indoor", ...), the size.
        values: "raw" (the model's own values: EXR, npy) or "levels" (a 16-bit map over `value_range`: PNG).
        normalize: how `value_range` was chosen ("per_image", "batch", "percentile").
        value_range: (low, high), the near-bright values (disparity, or 1 / depth for depth kinds) mapped to 0
            and 1; None when the map had no finite value or the mapping is not known.
        near_white: False when the map was inverted (near = black).
        gamma: applied to the [0, 1] map after inversion.
        size: (height, width) of the map.
        input_size, max_size, tiling, tile, overlap: how the depth was computed.
        exr_channel: the EXR channel that holds the values.
    """

    kind: str = "disparity"
    model: str | None = None
    family: str | None = None
    encoder: str | None = None
    values: str = "raw"
    normalize: str | None = None
    value_range: tuple[float, float] | None = None
    near_white: bool = True
    gamma: float = 1.0
    size: tuple[int, int] | None = None
    input_size: int | None = None
    max_size: int | None = None
    tiling: str = "off"
    tile: int | None = None
    overlap: int | None = None
    exr_channel: str | None = None

    @property
    def unit(self) -> str | None:
        return "metre" if self.kind == "metric_depth" else None

    @property
    def range_of(self) -> str:
        """What `value_range` is in: the near-bright quantity of `kind`."""
        return "disparity" if self.kind == "disparity" else "inverse_depth"

    def to_dict(self) -> dict[str, Any]:
        from . import __version__

        low_high = None
        if self.value_range is not None:
            low_high = {"low": self.value_range[0], "high": self.value_range[1], "of": self.range_of}
        return {
            "schema": SCHEMA,
            "version": SCHEMA_VERSION,
            "software": f"depth-anything-preprocessor {__version__}",
            "model": self.model,
            "family": self.family,
            "encoder": self.encoder,
            "kind": self.kind,
            "unit": self.unit,
            "values": self.values,
            "normalize": self.normalize,
            "range": low_high,
            "near_white": self.near_white,
            "gamma": self.gamma,
            "size": list(self.size) if self.size is not None else None,
            "input_size": self.input_size,
            "max_size": self.max_size,
            "tiling": {"mode": self.tiling, "tile": self.tile, "overlap": self.overlap},
            "exr_channel": self.exr_channel,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes, source: str) -> "DepthMetadata":
        """Parse a document; DepthFileError naming `source` (the file and where in it) when it is broken."""
        try:
            document = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DepthFileError(f"{source} is not valid JSON ({exc}). {_REPAIR}") from None
        if not isinstance(document, dict):
            raise DepthFileError(f"{source} holds {type(document).__name__}, not a JSON object. {_REPAIR}")
        try:
            return cls._from_dict(document)
        except (KeyError, TypeError, ValueError) as exc:
            raise DepthFileError(f"{source} is broken: {exc}. {_REPAIR}") from None

    @classmethod
    def _from_dict(cls, document: dict) -> "DepthMetadata":
        if document.get("schema") != SCHEMA:
            raise ValueError(f"'schema' is {document.get('schema')!r}, not {SCHEMA!r}")
        kind = _choice(document, "kind", OUTPUT_KINDS)
        values = _choice(document, "values", ("raw", "levels"))
        normalize = _choice(document, "normalize", NORMALIZE_MODES, optional=True)
        value_range = None
        if document.get("range") is not None:
            low_high = document["range"]
            if not isinstance(low_high, dict):
                raise ValueError(f"'range' must be an object with low and high, got {low_high!r}")
            low, high = _number(low_high, "low"), _number(low_high, "high")
            if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                raise ValueError(f"'range' must have finite low <= high, got {low!r}, {high!r}")
            value_range = (low, high)
        near_white = document.get("near_white", True)
        if not isinstance(near_white, bool):
            raise ValueError(f"'near_white' must be true or false, got {near_white!r}")
        gamma = _number(document, "gamma", default=1.0)
        if not gamma > 0:
            raise ValueError(f"'gamma' must be positive, got {gamma!r}")
        size = document.get("size")
        if size is not None:
            if not (isinstance(size, list) and len(size) == 2 and all(_is_count(s) for s in size)):
                raise ValueError(f"'size' must be [height, width], got {size!r}")
            size = (int(size[0]), int(size[1]))
        tiling = document.get("tiling") or {}
        if not isinstance(tiling, dict):
            raise ValueError(f"'tiling' must be an object, got {tiling!r}")
        return cls(
            kind=kind,
            model=_text(document, "model"),
            family=_text(document, "family"),
            encoder=_text(document, "encoder"),
            values=values,
            normalize=normalize,
            value_range=value_range,
            near_white=near_white,
            gamma=gamma,
            size=size,
            input_size=_count(document, "input_size"),
            max_size=_count(document, "max_size"),
            tiling=_choice(tiling, "mode", TILING_MODES, optional=True) or "off",
            tile=_count(tiling, "tile"),
            overlap=_count(tiling, "overlap"),
            exr_channel=_text(document, "exr_channel"),
        )


_REPAIR = (
    f"Re-save the depth with Depth Anything, or remove the '{METADATA_KEY}' metadata to read the file as a plain "
    "0..1 map (near = white)."
)


def _choice(document: dict, key: str, choices, optional: bool = False):
    value = document.get(key)
    if value is None and optional:
        return None
    if value not in choices:
        raise ValueError(f"'{key}' must be one of {', '.join(choices)}, got {value!r}")
    return value


def _number(document: dict, key: str, default: float | None = None) -> float:
    value = document.get(key, default)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"'{key}' must be a number, got {value!r}")
    return float(value)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _count(document: dict, key: str) -> int | None:
    value = document.get(key)
    if value is not None and not _is_count(value):
        raise ValueError(f"'{key}' must be a whole number or null, got {value!r}")
    return value


def _text(document: dict, key: str) -> str | None:
    value = document.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"'{key}' must be a string or null, got {value!r}")
    return value


def depth_metadata(
    model=None,
    *,
    kind: str | None = None,
    model_name: str | None = None,
    family: str | None = None,
    encoder: str | None = None,
    normalize: str | None = None,
    value_range: DepthRange | tuple[float, float] | None = None,
    invert: bool = False,
    gamma: float = 1.0,
    input_size: int | None = None,
    max_size: int | None = None,
    tiling: str | bool = "off",
    tile: int | None = None,
    overlap: int | None = None,
) -> DepthMetadata:
    """The metadata of depth made by `model` (a `DepthModel`) with these settings: the one builder.

    Args:
        model: the model the depth comes from; gives the kind, family, encoder and checkpoint name.
        kind, family, encoder: what the model is, when no model is given (`kind`: "disparity",
            "relative_depth" or "metric_depth"; `family`: e.g. "v2" or "metric_indoor"; `encoder`: e.g. "vits").
        model_name: the name to record instead of the checkpoint's file name (e.g. a ComfyUI model choice).
        normalize, value_range, invert, gamma: the condition stage's options the map is (or would be) made with.
        input_size, max_size, tiling, tile, overlap: how the depth was computed (`tiling`: "off" / "auto" / "on",
            or a bool); input_size defaults to the family's own.

    Example:
        >>> depth_metadata(kind="metric_depth", value_range=(0.05, 2.0)).range_of
        'inverse_depth'
    """
    if model is not None:
        kind = model.output_kind
        family = model.family.name
        encoder = model.encoder or None
        if model_name is None:
            checkpoint = getattr(model, "checkpoint", None)
            model_name = Path(checkpoint.path).name if checkpoint is not None else getattr(model, "source", None)
        if input_size is None:
            input_size = model.family.preprocessing.input_size
    kind = kind or "disparity"
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"Unknown depth kind {kind!r}; use one of {', '.join(OUTPUT_KINDS)}.")
    if isinstance(tiling, bool):
        tiling = "on" if tiling else "off"
    return DepthMetadata(
        kind=kind,
        model=model_name,
        family=family,
        encoder=encoder,
        normalize=normalize,
        value_range=_finite_range(value_range),
        near_white=not invert,
        gamma=float(gamma),
        input_size=input_size,
        max_size=max_size,
        tiling=tiling,
        tile=tile,
        overlap=overlap,
    )


def _finite_range(value_range) -> tuple[float, float] | None:
    if value_range is None:
        return None
    if isinstance(value_range, DepthRange):
        value_range = (value_range.low, value_range.high)
    low, high = (float(v) for v in value_range)
    return (low, high) if math.isfinite(low) and math.isfinite(high) and low <= high else None


def for_map(metadata: DepthMetadata, values: str, size: tuple[int, int], value_range=None) -> DepthMetadata:
    """`metadata` for one file: its encoding ("raw" / "levels"), its size and (when given) its own range."""
    if value_range is not None:
        metadata = replace(metadata, value_range=_finite_range(value_range))
    return replace(metadata, values=values, size=(int(size[0]), int(size[1])))


# ------------------------------------------------------------------------------------------ levels <-> values


def near_bright_values(unit: np.ndarray, metadata: DepthMetadata) -> np.ndarray:
    """The [0, 1] map before inversion and gamma, back to near-bright values over the recorded range."""
    low, high = metadata.value_range
    return (low + unit.astype(np.float64) * (high - low)).astype(np.float32)


def unit_from_levels(levels: np.ndarray, metadata: DepthMetadata) -> np.ndarray:
    """16-bit levels -> the [0, 1] near = white map before gamma (float64): undoes gamma, then inversion."""
    stored = levels.astype(np.float64) / LEVELS
    if metadata.gamma != 1.0:
        stored = stored ** (1.0 / metadata.gamma)
    return stored if metadata.near_white else 1.0 - stored


def values_from_near_bright(values: np.ndarray, kind: str) -> np.ndarray:
    """Near-bright values -> the kind's own: disparity as it is, depth from inverse depth."""
    if kind == "disparity":
        return values.astype(np.float32)
    with np.errstate(divide="ignore"):
        return (1.0 / values.astype(np.float64)).astype(np.float32)


# ------------------------------------------------------------------------------------------------ writing


def openexr():
    """The OpenEXR bindings (PyPI `openexr`), imported when an EXR is read or written."""
    try:
        import OpenEXR
    except ImportError:
        raise ModuleNotFoundError(
            "Reading and writing .exr files needs the OpenEXR bindings, a dependency of this package that is "
            "missing here: pip install openexr"
        ) from None
    return OpenEXR


def png16_bytes(levels: np.ndarray, metadata: DepthMetadata | None, pnginfo: PngInfo | None = None) -> bytes:
    """A uint16 (H, W) map -> 16-bit grayscale PNG bytes with the metadata in one iTXt chunk (plus `pnginfo`'s
    chunks, e.g. ComfyUI's workflow)."""
    if levels.dtype != np.uint16 or levels.ndim != 2:
        raise ValueError(f"a 16-bit PNG takes a uint16 (H, W) map, got {levels.dtype} {levels.shape}")
    info = PngInfo()
    for chunk in (pnginfo.chunks if pnginfo is not None else []):
        info.add(*chunk)
    if metadata is not None:
        info.add_itxt(METADATA_KEY, metadata.to_json())
    buffer = io.BytesIO()
    Image.fromarray(levels).save(buffer, format="PNG", pnginfo=info, compress_level=_PNG_LEVEL)
    return buffer.getvalue()


def exr_bytes(values: np.ndarray, metadata: DepthMetadata | None, channel: str = DEFAULT_EXR_CHANNEL) -> bytes:
    """A float (H, W) map -> single-part scanline OpenEXR bytes: one float32 channel, ZIP (lossless), the
    metadata as a string attribute of the header. Written by the OpenEXR library itself."""
    OpenEXR = openexr()

    if channel not in EXR_CHANNELS:
        raise ValueError(f"exr_channel must be one of {', '.join(EXR_CHANNELS)}, got {channel!r}.")
    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"an EXR depth map is (H, W), got {values.shape}")
    header: dict[str, Any] = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    if metadata is not None:
        header[METADATA_KEY] = replace(metadata, exr_channel=channel).to_json()
    buffer = io.BytesIO()
    OpenEXR.File(header, {channel: values}).write(buffer)
    return buffer.getvalue()


def sidecar_path(path: str | Path) -> Path:
    """Where a .npy's metadata lives: beside it, as <name>.json."""
    return Path(path).with_suffix(".json")


def write_sidecar(path: Path, metadata: DepthMetadata, *, overwrite: bool = True) -> None:
    """The metadata of the .npy at `path`, written beside it (before the .npy itself, by whoever writes that)."""
    text = json.dumps(metadata.to_dict(), allow_nan=False, indent=2) + "\n"
    write_atomic(sidecar_path(path), lambda file: file.write(text.encode()), overwrite=overwrite)


def write_npy(path: Path, values: np.ndarray, metadata: DepthMetadata | None, *, overwrite: bool = True) -> None:
    """The .npy and, first, its sidecar: an existing .npy always has its metadata beside it."""
    if metadata is not None:
        write_sidecar(path, metadata, overwrite=overwrite)
    values = np.asarray(values, dtype=np.float32)
    write_atomic(path, lambda file: np.save(file, values), overwrite=overwrite)  # streamed: no copy in memory


def depth_format(path: str | Path) -> str:
    """'exr', 'png16' or 'npy' from a file name; ValueError naming the suffixes otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in DEPTH_FORMATS:
        raise ValueError(
            f"{Path(path).name}: depth files are {', '.join(DEPTH_FORMATS)} (16-bit PNG, npy, float EXR), "
            f"not {suffix or 'a name without a suffix'!r}."
        )
    return DEPTH_FORMATS[suffix]


def save_depth(
    path: str | Path,
    depth: torch.Tensor | np.ndarray,
    *,
    model=None,
    metadata: DepthMetadata | None = None,
    kind: str | None = None,
    normalize: str = "per_image",
    value_range: DepthRange | tuple[float, float] | None = None,
    invert: bool = False,
    gamma: float = 1.0,
    exr_channel: str = DEFAULT_EXR_CHANNEL,
    overwrite: bool = True,
) -> Path:
    """Save one depth map so that it keeps its values; the format follows the suffix (.exr, .png, .npy).

    Args:
        path: the file; written atomically (`depth_anything.files.write_atomic`).
        depth: (H, W) (or (1, H, W)) raw values in the model's own quantity, as `model.infer` returns them.
        model: the `DepthModel` they come from (recorded: kind, family, checkpoint). Or give `metadata`
            (`depth_metadata(...)`, also for the input size and tiling), or just `kind`.
        normalize, value_range, invert, gamma: how the 16-bit PNG's [0, 1] map is made (the condition stage's
            options); EXR and npy keep the raw values and record the range for readers that want a map.
        exr_channel: "Y" (default: every EXR reader shows it as a gray image) or "Z" (the depth-pass name).
        overwrite: False never replaces an existing file (FileExistsError).

    Returns:
        The path written.

    Example:
        >>> save_depth("depth.png", model.infer("photo.jpg")[0], model=model)  # doctest: +SKIP
    """
    path = Path(path)
    fmt = depth_format(path)
    values = torch.as_tensor(np.asarray(depth) if not isinstance(depth, torch.Tensor) else depth)
    values = values.detach().to("cpu", torch.float32)
    if values.ndim == 3 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != 2:
        raise ValueError(f"save_depth takes one map (H, W), got shape {tuple(values.shape)}.")
    if metadata is None:
        metadata = depth_metadata(model, kind=kind)
    metadata = replace(metadata, normalize=normalize, near_white=not invert, gamma=float(gamma))
    (own,) = value_ranges(values, kind=metadata.kind, normalize=normalize, value_range=value_range)
    if fmt == "png16":
        levels = condition(values, kind=metadata.kind, value_range=own, invert=invert, gamma=gamma, bits=16)
        data = png16_bytes(levels, for_map(metadata, "levels", values.shape, own))
    elif fmt == "exr":
        data = exr_bytes(values.numpy(), for_map(metadata, "raw", values.shape, own), exr_channel)
    else:
        write_npy(path, values.numpy(), for_map(metadata, "raw", values.shape, own), overwrite=overwrite)
        return path
    return write_atomic(path, lambda file: file.write(data), overwrite=overwrite)


# ------------------------------------------------------------------------------------------------ reading


@dataclass
class DepthFile:
    """A depth file read back by `load_depth`.

    Attributes:
        values: float32 (H, W): the model's raw values (metres for metric models); for a file without metadata,
            its values as they are (a PNG's levels / 65535), read as near = large.
        metadata: the file's document, or None.
        note: set when the file has no metadata (or no range): how its values were read.
    """

    path: Path
    format: str
    values: np.ndarray
    metadata: DepthMetadata | None
    note: str | None = None
    levels: np.ndarray | None = None  # a PNG's uint16 levels

    @property
    def kind(self) -> str:
        """The kind of `values`: the metadata's, or "disparity" (near = large) when the file does not say."""
        if self.metadata is None or (self.format == "png16" and self.metadata.value_range is None):
            return "disparity"
        return self.metadata.kind

    @property
    def value_range(self) -> tuple[float, float] | None:
        """The near-bright range `unit` maps to [0, 1]: the recorded one; (0, 1) for values read as a 0..1 map;
        None (each map's own) for raw values of unknown range."""
        if self.metadata is not None and self.metadata.value_range is not None:
            return self.metadata.value_range
        if self.levels is not None or _within_unit(self.values):
            return (0.0, 1.0)
        return None

    def unit(self) -> np.ndarray:
        """The [0, 1] float32 map with near = white: a PNG's own levels (made near = white), raw values over the
        recorded range and gamma (over their own range when the file records none)."""
        meta = self.metadata
        if self.levels is not None and meta is not None and meta.value_range is not None:
            unit = unit_from_levels(self.levels, meta)
            return (unit ** meta.gamma if meta.gamma != 1.0 else unit).astype(np.float32)
        gamma = meta.gamma if meta is not None and self.levels is None else 1.0  # a PNG's levels hold theirs
        return condition(self.values, kind=self.kind, value_range=self.value_range, gamma=gamma).numpy()

    def summary(self) -> str:
        """One line on what the file holds, for logs and the Load Depth node's info output."""
        height, width = self.values.shape
        meta = self.metadata
        if meta is None:
            return f"{self.path.name}: {width}x{height} {self.format}. {self.note}"
        what = {"disparity": "disparity", "relative_depth": "relative depth", "metric_depth": "depth in metres"}
        source = ", ".join(v for v in (meta.model, meta.family, meta.encoder) if v) or "an unnamed model"
        line = f"{self.path.name}: {what[meta.kind]} from {source}, {width}x{height} {self.format}"
        if meta.value_range is not None:
            line += f", range {meta.value_range[0]:.6g}..{meta.value_range[1]:.6g} ({meta.range_of}"
            line += f", {meta.normalize})" if meta.normalize else ")"
        if meta.input_size:
            line += f", input size {meta.input_size}, tiling {meta.tiling}"
        return line + (f". {self.note}" if self.note else ".")


def _within_unit(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return finite.size == 0 or (finite.min() >= 0 and finite.max() <= 1)


def load_depth(path: str | Path) -> DepthFile:
    """Read a depth file (.exr, 16-bit .png or .npy) back as values, using its metadata when it has some.

    A 16-bit PNG with metadata gives its values back to 1/65535 of the recorded range; EXR and npy give them
    bit-exact. A file without metadata is read as a 0..1 map with near = white (`DepthFile.note` says so).
    DepthFileError (with what to do) for a file that holds no depth: an 8-bit PNG, an EXR without a depth
    channel, broken metadata.

    Example:
        >>> loaded = load_depth("depth.png")  # doctest: +SKIP
        >>> loaded.values.dtype, loaded.metadata.kind  # doctest: +SKIP
        (dtype('float32'), 'disparity')
    """
    path = Path(path)
    try:
        fmt = depth_format(path)
    except ValueError as exc:
        raise DepthFileError(str(exc)) from None
    if not path.is_file():
        raise DepthFileError(f"{path} does not exist.")
    reader = {"exr": _read_exr, "png16": _read_png16, "npy": _read_npy}[fmt]
    loaded = reader(path)
    if loaded.values.size == 0:
        raise DepthFileError(f"{path.name} holds an empty map ({loaded.values.shape}): there is no depth to load.")
    meta = loaded.metadata
    if meta is not None and meta.size is not None and tuple(meta.size) != loaded.values.shape:
        raise DepthFileError(
            f"{path.name}: its metadata describes a {meta.size[0]}x{meta.size[1]} map but the file holds "
            f"{loaded.values.shape[0]}x{loaded.values.shape[1]}; the metadata belongs to another file. {_REPAIR}"
        )
    return loaded


def _no_metadata_note(path: Path, where: str) -> str:
    return (
        f"{path.name} has no Depth Anything metadata ({where}), so what its values mean is unknown: it is read "
        "as a 0..1 depth map with near = white (values outside 0..1 are mapped over their own range, larger = "
        "nearer)."
    )


def _read_png16(path: Path) -> DepthFile:
    bit_depth, colour = _png_header(path)
    if bit_depth != 16 or colour != 0:
        kind = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale + alpha", 6: "RGBA"}.get(colour, "unknown")
        raise DepthFileError(
            f"{path.name} is {'an' if bit_depth == 8 else 'a'} {bit_depth}-bit {kind} PNG; depth files are 16-bit "
            "grayscale PNGs (65536 levels), "
            "float EXR or npy. Save depth with Save Depth 16-bit / Save Depth EXR (or --format png16 / exr); to "
            "use an 8-bit depth picture as a ControlNet hint, load it with Load Image."
        )
    try:
        with Image.open(path) as image:
            levels = np.asarray(image).astype(np.uint16)
            text = image.info.get(METADATA_KEY)
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's errors for truncated or damaged data
        raise DepthFileError(f"{path.name} is a damaged or truncated PNG ({exc}); save or copy it again.") from None
    if text is None:
        note = _no_metadata_note(path, f"no '{METADATA_KEY}' iTXt chunk")
        return DepthFile(path, "png16", levels.astype(np.float32) / LEVELS, None, note, levels)
    meta = DepthMetadata.from_json(str(text), f"{path.name}: its '{METADATA_KEY}' PNG metadata")
    if meta.values != "levels":
        raise DepthFileError(
            f"{path.name}: its metadata says it holds {meta.values} values, but a 16-bit PNG holds levels. {_REPAIR}"
        )
    if meta.value_range is None:
        note = f"{path.name} does not record the range its levels were mapped from: read as 0..1, near = white."
        unit = unit_from_levels(levels, replace(meta, gamma=1.0))
        return DepthFile(path, "png16", unit.astype(np.float32), meta, note, levels)
    values = values_from_near_bright(near_bright_values(unit_from_levels(levels, meta), meta), meta.kind)
    return DepthFile(path, "png16", values, meta, None, levels)


def is_png16(path: str | Path) -> bool:
    """Whether a file is a 16-bit grayscale PNG (from its header alone)."""
    try:
        return _png_header(Path(path)) == (16, 0)
    except (DepthFileError, OSError):
        return False


def _png_header(path: Path) -> tuple[int, int]:
    """(bit depth, colour type) from the IHDR chunk, which every PNG starts with."""
    with open(path, "rb") as file:
        head = file.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise DepthFileError(f"{path.name} is not a PNG file (or it is truncated).")
    return head[24], head[25]


def _read_exr(path: Path) -> DepthFile:
    OpenEXR = openexr()

    try:
        exr = OpenEXR.File(str(path), separate_channels=True)
        channels = exr.channels()
        header = exr.header()
    except Exception as exc:  # the library raises RuntimeError (or others) with its own message
        raise DepthFileError(
            f"{path.name} cannot be read as OpenEXR ({exc}): it is truncated or not an EXR file; save or copy it "
            "again."
        ) from None
    meta = None
    if METADATA_KEY in header:
        meta = DepthMetadata.from_json(str(header[METADATA_KEY]), f"{path.name}: its '{METADATA_KEY}' EXR header")
        if meta.values != "raw":
            raise DepthFileError(
                f"{path.name}: its metadata says it holds {meta.values}, but an EXR holds raw values. {_REPAIR}"
            )
    wanted = ([meta.exr_channel] if meta is not None and meta.exr_channel else []) + list(EXR_DEPTH_NAMES)
    name = next((n for n in wanted if n in channels), None)
    if name is None and len(channels) == 1:
        name = next(iter(channels))
    if name is None:
        raise DepthFileError(
            f"{path.name} has no depth channel: it holds {', '.join(sorted(channels)) or 'no channels'}. A depth "
            f"EXR has one channel, or one named {', '.join(EXR_DEPTH_NAMES[:3])}; save depth with Save Depth EXR "
            "(or --format exr), or rename the channel in your compositor."
        )
    values = np.asarray(channels[name].pixels)
    if values.ndim != 2:
        raise DepthFileError(f"{path.name}: channel {name!r} is not a single-channel map ({values.shape}).")
    note = None if meta is not None else _no_metadata_note(path, f"no '{METADATA_KEY}' header attribute")
    return DepthFile(path, "exr", values.astype(np.float32, copy=False), meta, note)


def _read_npy(path: Path) -> DepthFile:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        reason = "it holds Python objects, not numbers" if "pickle" in str(exc).lower() else str(exc)
        raise DepthFileError(
            f"{path.name} cannot be read as a numpy array ({reason}): it is truncated or was not written by "
            "numpy.save; save or copy it again."
        ) from None
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise DepthFileError(
            f"{path.name} holds a {array.dtype} array of shape {array.shape}; a depth map is a float (H, W) array."
        )
    sidecar = sidecar_path(path)
    meta = None
    if sidecar.is_file():
        meta = DepthMetadata.from_json(sidecar.read_bytes(), f"{sidecar.name} (the metadata of {path.name})")
    note = None if meta is not None else _no_metadata_note(path, f"no {sidecar.name} beside it")
    return DepthFile(path, "npy", array.astype(np.float32, copy=False), meta, note)
