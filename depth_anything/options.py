"""The options every surface shares: defaults, rules, and the message that explains a wrong value.

The ComfyUI nodes, the command line and the diffusers detector take their defaults and help texts from here and
show the messages these checks return (`VALIDATE_INPUTS`, argparse errors, exceptions), so a rule and its
explanation exist once and cannot drift apart.

Every `*_problem` function returns None for a valid value, else one sentence that names the value, the rule and a
valid value to use instead.

>>> input_size_problem(520)
'input_size must be a multiple of 14, got 520: use 518 or 532.'
>>> input_size_problem(518) is None
True
"""

from __future__ import annotations

import math
import numbers

PATCH = 14  # ViT patch side: the network sees multiples of 14 pixels
DEFAULT_INPUT_SIZE = 518  # what Depth Anything v1 / v2 were trained at
MAX_INPUT_SIZE = 4088  # largest input_size offered; beyond it tiling sees more detail for less
MAX_SIZE_FACTOR = 3  # default cap on the longest processed side, in multiples of input_size

TILING_MODES = ("off", "auto", "on")
RESIZE_METHODS = ("upper_bound", "lower_bound")  # Depth Anything 3's two pre-processing rules
DEFAULT_TILING = "off"
TILE_SPAN = 5  # a default tile spans at least 1/TILE_SPAN of the short side
OVERLAP_FRACTION = 4  # default overlap: a quarter of the tile
MAX_TILE = 16380  # the largest multiple of 14 below 16384 (ComfyUI's widget limit)
MAX_TILES = 4096  # tiles of one image (64 x 64); the defaults stay near 100 at any resolution

# Work limits, per image, from the estimate of `depth_anything.work` (network passes x tokens at this device's
# measured speed): above WARN_SECONDS a run warns with the estimate; above LIMIT_SECONDS it is refused with the
# estimate and a setting that fits. $DEPTH_ANYTHING_MAX_SECONDS replaces LIMIT_SECONDS (0: no limit).
WARN_SECONDS = 60.0
LIMIT_SECONDS = 900.0

OUTPUT_FORMATS = ("side-by-side", "png8", "png16", "npy", "exr")  # what the command line (and save nodes) write
FORMAT_SUFFIXES = {"side-by-side": ".png", "png8": ".png", "png16": ".png", "npy": ".npy", "exr": ".exr"}
DEPTH_FILE_FORMATS = ("png16", "npy", "exr")  # files that keep values, with metadata; Load Depth reads them
RAW_FORMATS = ("npy", "exr")  # of those, the ones that hold the raw values rather than a [0, 1] map

BATCH_SIZE = 4  # images (or tiles at model resolution) per forward pass on the command line and in the nodes

HELP = {
    "input_size": (
        f"Short side (pixels, a multiple of {PATCH}) the network sees; {DEFAULT_INPUT_SIZE} is what v1 and v2 were "
        "trained at. Larger sees finer detail and costs time and memory; the output keeps the input's own size. "
        "Depth Anything 3 takes it as the longest side (see resize_method); it was trained at 504."
    ),
    "max_size": (
        f"Cap on the longest side the network sees (default {MAX_SIZE_FACTOR} x the input size), so thin panoramas "
        "do not run out of memory."
    ),
    "tiling": (
        "Tiled high-resolution depth: a whole-image pass for the layout plus overlapping native-resolution tiles "
        "for the detail, aligned to it and blended without seams. auto tiles only images large enough to gain."
    ),
    "tile": (
        f"Tile side in image pixels, a multiple of {PATCH}. Default: the input size, or 1/{TILE_SPAN} of the "
        "image's short side when that is larger."
    ),
    "overlap": f"Pixels neighbouring tiles share, blended across. Default: 1/{OVERLAP_FRACTION} of the tile.",
    "normalize": (
        "per_image: each map spans 0-1. batch: one range for the whole batch, run or clip, so video frames do not "
        "flicker. percentile: each map's 2-98 % range, robust to a few extreme pixels."
    ),
    "invert": "Near = black instead of white, for ControlNets trained far = white.",
    "gamma": "Applied after normalisation: above 1 darkens the far range, below 1 lifts it.",
    "batch_size": "Images (or tiles) sent through the network at once; lower it when memory runs out.",
    "focal_px": (
        "The camera's focal length in pixels of the input image, for Depth Anything 3 metric (its metres scale with "
        "it; other models ignore it). 0 / unset: from the photo's EXIF when it has one, else a 26 mm-equivalent "
        "lens (a phone's main camera), and the metres are approximate."
    ),
    "resize_method": (
        "Depth Anything 3 only: upper_bound scales the longest side to the input size (the release's default); "
        "lower_bound the shortest side, for more detail on wide or tall images at more cost."
    ),
    "format": (
        "side-by-side: image | 50 px gap | depth (as the official run.py); png8: depth only; png16: 16-bit "
        "grayscale depth (65536 levels, for ControlNet training); npy: raw float32 depth (the model's own "
        "quantity: disparity, or metres for metric models); exr: the same raw float32 depth as OpenEXR (Blender, "
        "Nuke). png16, npy (in a .json beside it) and exr record the model, kind and range they hold."
    ),
}


class TypeProblem(str):
    """A problem with a value's type rather than its value: `check` raises TypeError for it."""


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _nearest_multiples(value: int, multiple: int, low: int, high: int | None) -> str:
    """'use A or B' with the multiples on either side of `value` that lie inside [low, high]."""
    below = value // multiple * multiple
    valid = [c for c in (below, below + multiple) if c >= low and (high is None or c <= high)]
    return "use " + " or ".join(map(str, valid))


def multiple_problem(
    value, name: str, *, multiple: int = PATCH, minimum: int | None = None, maximum: int | None = None
) -> str | None:
    """Why `value` is not a multiple of `multiple` in [minimum, maximum] (default minimum: `multiple`), or None.

    >>> multiple_problem(99999, "input_size", maximum=MAX_INPUT_SIZE)
    'input_size must be a multiple of 14, at most 4088, got 99999: use 4088.'
    """
    minimum = multiple if minimum is None else minimum
    if not _is_int(value):
        return TypeProblem(f"{name} must be an int (a whole number of pixels), got {value!r}.")
    if value < minimum:
        lowest = math.ceil(minimum / multiple) * multiple
        return f"{name} must be a multiple of {multiple}, at least {minimum}, got {value}: use {lowest}."
    if maximum is not None and value > maximum:
        highest = maximum // multiple * multiple
        return f"{name} must be a multiple of {multiple}, at most {maximum}, got {value}: use {highest}."
    if value % multiple:
        return f"{name} must be a multiple of {multiple}, got {value}: {_nearest_multiples(value, multiple, minimum, maximum)}."
    return None


def input_size_problem(value, name: str = "input_size", maximum: int | None = MAX_INPUT_SIZE) -> str | None:
    """Why `value` cannot be the short side the network sees, or None."""
    return multiple_problem(value, name, maximum=maximum)


def max_size_problem(value) -> str | None:
    """Why `value` cannot cap the longest processed side (None = the default cap), or None."""
    if value is None:
        return None
    if not _is_int(value):
        return TypeProblem(f"max_size must be an int (a whole number of pixels), got {value!r}.")
    if value < PATCH:
        return f"max_size must be at least {PATCH}, got {value}."
    return None


def tiling_problem(value) -> str | None:
    if value in TILING_MODES or value in (True, False):
        return None
    return f"tiling must be one of {', '.join(TILING_MODES)}, got {value!r}."


def tiling_mode(value) -> bool | str:
    """'off' / 'on' / 'auto' (or a bool) -> what `DepthModel.infer(tiled=...)` takes: False, True or 'auto'.

    >>> tiling_mode("on"), tiling_mode("off"), tiling_mode("auto"), tiling_mode(True)
    (True, False, 'auto', True)
    """
    if (problem := tiling_problem(value)) is not None:
        raise ValueError(problem)
    if isinstance(value, bool):
        return value
    return {"off": False, "on": True, "auto": "auto"}[value]


def tile_problem(tile, overlap=None, *, tile_name: str = "tile") -> str | None:
    """Why a tile side and overlap do not work together (None for either means the default), or None."""
    if tile is not None and (problem := multiple_problem(tile, tile_name, maximum=MAX_TILE)):
        return problem
    return overlap_problem(overlap, tile, tile_name=tile_name)


def overlap_problem(overlap, tile: int | None, *, tile_name: str = "tile") -> str | None:
    """Why `overlap` cannot be the overlap of tiles of side `tile` (None: the default overlap), or None."""
    if overlap is None:
        return None
    if not _is_int(overlap) or overlap < 0:
        return f"overlap must be a whole number of pixels, 0 or more, got {overlap!r}."
    if tile is not None and overlap >= tile:
        return (
            f"overlap must be smaller than {tile_name} ({tile}), got {overlap}: 1/{OVERLAP_FRACTION} of it, "
            f"{tile // OVERLAP_FRACTION}, is a good start."
        )
    return None


def tile_count_problem(
    count: int, height: int, width: int, tile: int, overlap: int, fitting: tuple[int, int, int]
) -> str | None:
    """Why `count` tiles of side `tile` with `overlap` on a height x width image are too many, or None.

    `fitting` is (tile, overlap, count) of a setting within MAX_TILES (the defaults, usually), for the message.

    >>> print(tile_count_problem(26061, 300, 400, 182, 181, (182, 45, 6)))  # doctest: +NORMALIZE_WHITESPACE
    tile 182 with overlap 181 makes 26061 tiles for a 400x300 image, more than the 4096 allowed (each tile is a
    network pass): use tile 182 and overlap 45 (6 tiles).
    """
    if count <= MAX_TILES:
        return None
    return (
        f"tile {tile} with overlap {overlap} makes {count} tiles for a {width}x{height} image, more than the "
        f"{MAX_TILES} allowed (each tile is a network pass): use tile {fitting[0]} and overlap {fitting[1]} "
        f"({fitting[2]} tiles)."
    )


def batch_size_problem(value) -> str | None:
    if not _is_int(value) or value < 1:
        return f"batch_size must be a whole number, at least 1, got {value!r}."
    return None


def gamma_problem(value) -> str | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        return f"gamma must be a positive number (1 leaves the map unchanged), got {value!r}."
    return None


def focal_px_problem(value) -> str | None:
    """Why `value` cannot be a focal length in pixels (None = unknown), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        return f"focal_px must be a positive number of pixels (the focal length in image pixels), got {value!r}."
    return None


def check(*problems: str | None) -> None:
    """Raise the first problem found, for library calls: TypeError for a `TypeProblem`, else ValueError."""
    for problem in problems:
        if problem is not None:
            raise (TypeError if isinstance(problem, TypeProblem) else ValueError)(str(problem))
