"""ComfyUI nodes (V1 API) for depth that keeps its values: save float32 EXR, load depth files back into a graph.

The files and their metadata are the library's (`depth_anything.depth_files`); these nodes name, list and
check files the ComfyUI way.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import torch

import folder_paths

from depth_anything.conditioning import DepthRange
from depth_anything.depth_files import DEPTH_FORMATS, EXR_CHANNELS, exr_bytes, is_png16, load_depth
from depth_anything.files import PARTIAL_SUFFIX, write_atomic

from . import saving
from .depth_nodes import CATEGORY, RAW_DEPTH_TYPE, RawDepth

LOG = logging.getLogger("depth_anything")


class DepthAnythingSaveDepthEXR:
    DESCRIPTION = (
        "Saves raw depth as float32 OpenEXR files in ComfyUI's output folder: metres for metric models, the "
        "model's own values (disparity) for relative ones, bit-exact, for Blender displacement, Nuke or point "
        "clouds. The header records the model, the kind of values and the range the depth map was made over. "
        "Never overwrites a file."
    )
    CATEGORY = CATEGORY
    FUNCTION = "save"
    RETURN_TYPES = ()
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "raw_depth": (RAW_DEPTH_TYPE, {"tooltip": "Depth Anything Estimate's (or Load Depth's) raw_depth."}),
                "filename_prefix": saving.filename_prefix_input(),
                "channel": (
                    list(EXR_CHANNELS),
                    {
                        "default": EXR_CHANNELS[0],
                        "tooltip": "Y: the single-channel name every EXR reader (Blender, OpenCV, FFmpeg) shows "
                        "as a gray image. Z: the depth-pass name compositors such as Nuke file as depth.",
                    },
                ),
            }
        }

    def save(self, raw_depth, filename_prefix, channel):
        values = raw_depth.values
        folder, stems, subfolder = saving.output_stems(filename_prefix, values.shape[2], values.shape[1], len(values))
        results = []
        for index, stem in enumerate(stems):
            data = exr_bytes(
                values[index].detach().cpu().float().numpy(), saving.raw_metadata(raw_depth, index), channel
            )
            write_atomic(os.path.join(folder, stem + ".exr"), lambda f: f.write(data), overwrite=False)
            results.append(saving.saved(stem + ".exr", subfolder))
        return {"ui": {"files": results}}


def depth_file_names() -> list[str]:
    """Load Depth's choices: the depth files (.png, .npy, .exr) in the input folder and its subfolders, then those
    in the output folder as "name [output]" (16-bit PNGs only there: it also holds ComfyUI's 8-bit images)."""
    inputs = _depth_files(folder_paths.get_input_directory(), only_16_bit=False)
    outputs = _depth_files(folder_paths.get_output_directory(), only_16_bit=True)
    return inputs + [f"{name} [output]" for name in outputs]


def _depth_files(root: str, *, only_16_bit: bool) -> list[str]:
    names = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        for name in files:
            suffix = Path(name).suffix.lower()
            if suffix not in DEPTH_FORMATS or name.startswith(".") or name.endswith(PARTIAL_SUFFIX):
                continue
            path = os.path.join(folder, name)
            if only_16_bit and suffix == ".png" and not is_png16(path):
                continue
            names.append(os.path.relpath(path, root).replace(os.sep, "/"))
    return sorted(names)


def depth_file_path(name: str) -> tuple[Path | None, str | None]:
    """(path, None) for a choice of Load Depth, or (None, why not): a file in the input folder, or one annotated
    "[output]" / "[temp]" / "[input]" as ComfyUI's Load Image takes them, never outside that folder."""
    relative, base = folder_paths.annotated_filepath(name)
    base = os.path.realpath(base or folder_paths.get_input_directory())
    path = os.path.realpath(os.path.join(base, relative))
    if os.path.commonpath([base, path]) != base:
        return None, f"Load Depth reads files inside ComfyUI's input (or output) folder; {name!r} is outside it."
    if Path(path).suffix.lower() not in DEPTH_FORMATS:
        return None, f"{name!r} is not a depth file: Load Depth reads {', '.join(DEPTH_FORMATS)} files."
    if not os.path.isfile(path):
        return None, f"Depth file {name!r} not found in {base}. Put it into ComfyUI's input folder."
    return Path(path), None


class DepthAnythingLoadDepth:
    DESCRIPTION = (
        "Loads a depth file back into a graph: a 16-bit PNG, float EXR or .npy from the input folder (saved by "
        "these nodes, the depth-anything command or another tool). Gives the depth map (near = white, for Apply "
        "ControlNet), the same as a MASK, and the raw values, using the file's metadata; a file without it is "
        "read as 0..1 with near = white, and the info output says so."
    )
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("IMAGE", "MASK", RAW_DEPTH_TYPE, "STRING")
    RETURN_NAMES = ("depth", "depth_mask", "raw_depth", "info")
    OUTPUT_TOOLTIPS = (
        "Depth as an RGB image in [0, 1], near = white, mapped as when it was saved: plug into Apply ControlNet.",
        "The same depth as a single-channel mask.",
        "The values the file holds (disparity, or metres for metric models), for Save Depth EXR and other nodes.",
        "What the file holds: model, kind, range; or why its values were read as 0..1.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "depth_file": (
                    depth_file_names(),
                    {
                        "tooltip": "A .png (16-bit), .exr or .npy from ComfyUI's input folder, or one the save "
                        "nodes wrote (listed with [output]; refresh to see new ones). A .npy's metadata is the "
                        ".json beside it."
                    },
                ),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, depth_file):
        if depth_file is None:
            return True
        return depth_file_path(depth_file)[1] or True

    @classmethod
    def IS_CHANGED(cls, depth_file):
        path, problem = depth_file_path(depth_file)
        if path is None:
            return problem
        signature = [path.stat().st_mtime_ns, path.stat().st_size]
        sidecar = path.with_suffix(".json")
        if path.suffix.lower() == ".npy" and sidecar.is_file():
            signature += [sidecar.stat().st_mtime_ns, sidecar.stat().st_size]
        return str(signature)

    def load(self, depth_file):
        path, problem = depth_file_path(depth_file)
        if path is None:
            raise FileNotFoundError(problem)
        loaded = load_depth(path)
        if loaded.note:
            LOG.warning("Load Depth: %s", loaded.note)
        unit = torch.from_numpy(loaded.unit())[None]
        meta = loaded.metadata
        ranges = (DepthRange(*loaded.value_range),) if loaded.value_range is not None else ()
        # What the outputs are: the values as the file describes them, the map near = white with its gamma.
        about = replace(meta, near_white=True) if meta is not None and loaded.kind == meta.kind else None
        model = (meta.model if meta is not None else None) or path.name
        raw = RawDepth(torch.from_numpy(loaded.values.copy())[None], loaded.kind, model, about, ranges)
        return unit[..., None].expand(-1, -1, -1, 3).contiguous(), unit, raw, loaded.summary()


NODE_CLASS_MAPPINGS = {
    "DepthAnythingSaveDepthEXR": DepthAnythingSaveDepthEXR,
    "DepthAnythingLoadDepth": DepthAnythingLoadDepth,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "DepthAnythingSaveDepthEXR": "Save Depth EXR",
    "DepthAnythingLoadDepth": "Load Depth",
}
