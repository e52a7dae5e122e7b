"""What the save nodes share: ComfyUI's file naming, and the metadata each depth file records.

The metadata document itself is the library's (`depth_anything.depth_files`); here the nodes decide what they
know about a map: the raw depth's model and settings, and the range its map was made over, recorded only when the
map being saved really is that map (a map that was inverted, resized or edited between the nodes is saved without
a range rather than with a wrong one).
"""

from __future__ import annotations

from dataclasses import replace

import torch

import folder_paths

from depth_anything.conditioning import condition
from depth_anything.depth_files import DepthMetadata, depth_metadata, for_map

MADE_FROM_TOLERANCE = 0.25 / 65535  # a map and the one recomputed from the raw values agree far below a level


def filename_prefix_input() -> tuple:
    return (
        "STRING",
        {
            "default": "depth_anything/depth",
            "tooltip": "File name start, relative to the output folder; may hold subfolders and %width% / "
            "%height%. A counter keeps earlier files.",
        },
    )


def output_stems(filename_prefix: str, width: int, height: int, count: int) -> tuple[str, list[str], str]:
    """(folder, [a file name stem per map], subfolder) in ComfyUI's output folder, as SaveImage names files:
    prefix_00001_, prefix_00002_, ... after the files already there (%batch_num% is the map's index)."""
    folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
        filename_prefix, folder_paths.get_output_directory(), width, height
    )
    stems = [f"{filename.replace('%batch_num%', str(i))}_{counter + i:05}_" for i in range(count)]
    return folder, stems, subfolder


def saved(name: str, subfolder: str) -> dict:
    """A node's UI entry for a file it wrote into the output folder."""
    return {"filename": name, "subfolder": subfolder, "type": "output"}


def _base(raw_depth) -> DepthMetadata:
    about = getattr(raw_depth, "about", None)
    base = about if about is not None else depth_metadata(kind=raw_depth.kind, model_name=raw_depth.model)
    return replace(base, value_range=None)


def _range(raw_depth, index: int):
    ranges = getattr(raw_depth, "ranges", ())
    return ranges[index] if index < len(ranges) else None


def raw_metadata(raw_depth, index: int) -> DepthMetadata:
    """What an EXR or npy of map `index` of a RawDepth records (the range its estimate normalised it over)."""
    return for_map(_base(raw_depth), "raw", tuple(raw_depth.values.shape[1:]), _range(raw_depth, index))


def unit_map_metadata(depth_map: torch.Tensor) -> DepthMetadata:
    """What a raw file of a [0, 1] map (no raw depth connected) records: values that are their own 0..1 range."""
    return for_map(depth_metadata(kind="disparity"), "raw", tuple(depth_map.shape), (0.0, 1.0))


def levels_metadata(depth_map: torch.Tensor, raw_depth, index: int) -> DepthMetadata:
    """What a 16-bit PNG of `depth_map` (H, W) records. With the raw depth it came from, the model and settings,
    and the range when recomputing the map from the raw values gives this map; without, an unknown mapping."""
    size = tuple(depth_map.shape)
    if raw_depth is None:
        return for_map(depth_metadata(kind="disparity"), "levels", size)
    base, value_range = _base(raw_depth), _range(raw_depth, index)
    if value_range is not None and not _made_from(depth_map, raw_depth.values[index], base, value_range):
        value_range = None
    return for_map(base, "levels", size, value_range)


def _made_from(depth_map: torch.Tensor, raw: torch.Tensor, base: DepthMetadata, value_range) -> bool:
    if tuple(raw.shape) != tuple(depth_map.shape):
        return False
    expected = condition(raw, kind=base.kind, value_range=value_range, invert=not base.near_white, gamma=base.gamma)
    return bool((expected - depth_map.detach().cpu().float()).abs().max() <= MADE_FROM_TOLERANCE)
