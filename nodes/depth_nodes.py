"""ComfyUI nodes (V1 API): load a Depth Anything model, estimate depth, colorize it, save it in 16 bits.

The nodes only translate between ComfyUI and the `depth_anything` library, which does the work.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

import comfy.model_management as mm
import comfy.utils
import folder_paths

from depth_anything import COLORMAPS, NORMALIZE_MODES, CheckpointError, colorize, normalize, processing_size
from depth_anything.loading import family_from_name
from depth_anything.postprocess import to_uint16
from depth_anything.transforms import PATCH

from . import managed, model_files

CATEGORY = "Depth Anything"
MODEL_TYPE = "DEPTH_ANYTHING_MODEL"
RAW_DEPTH_TYPE = "DEPTH_ANYTHING_RAW"
TILING_CHOICES = ("off", "auto", "on")
MAX_INPUT_SIZE = 4088  # a multiple of 14; beyond it use tiling


@dataclass(frozen=True)
class RawDepth:
    """What flows along DEPTH_ANYTHING_RAW links: the network's values before normalisation.

    values: float32 (B, H, W) on the CPU, disparity (near = large, arbitrary scale) for relative models and
    depth in metres for metric ones.
    """

    values: torch.Tensor
    is_metric: bool
    model: str


# ------------------------------------------------------------------------------------------- shared inputs


def _model_name_input() -> tuple:
    return (
        model_files.model_names(),
        {
            "default": model_files.DEFAULT_MODEL,
            "tooltip": "A checkpoint in ComfyUI/models/depth_anything (.pth, .safetensors or a transformers folder), "
            "or a known model name, downloaded into that folder on first use.",
        },
    )


def _input_size_input() -> tuple:
    return (
        "INT",
        {
            "default": 518,
            "min": PATCH,
            "max": MAX_INPUT_SIZE,
            "step": PATCH,
            "tooltip": "Short side (pixels, multiple of 14) the network sees. 518 is what the models were trained "
            "at; larger sees finer detail and costs time and memory. The output keeps the input's own size.",
        },
    )


def _normalization_input() -> tuple:
    return (
        list(NORMALIZE_MODES),
        {
            "default": "per_image",
            "tooltip": "per_image: each map spans 0-1. batch: one range for the whole batch, so video frames do "
            "not flicker. percentile: each map's 2-98 % range, robust to a few extreme pixels.",
        },
    )


def _tiling_input() -> tuple:
    return (
        list(TILING_CHOICES),
        {
            "default": "off",
            "tooltip": "Tiled high-resolution depth: the image is cut into overlapping tiles, each seen at "
            "input_size, aligned to a whole-image estimate and blended without seams. auto tiles only images "
            "much larger than input_size.",
        },
    )


def _check_input_size(input_size) -> bool | str:
    if input_size is None:  # linked from another node: checked when it runs
        return True
    if not PATCH <= input_size <= MAX_INPUT_SIZE or input_size % PATCH:
        lower = max(PATCH, input_size // PATCH * PATCH)
        return (
            f"input_size must be a multiple of {PATCH} between {PATCH} and {MAX_INPUT_SIZE}, got {input_size}: "
            f"use {lower} or {lower + PATCH}."
        )
    return True


def _check_tiles(tile_size, overlap) -> bool | str:
    if tile_size is None or overlap is None:  # linked from another node: checked when it runs
        return True
    if tile_size < 0 or overlap < 0:
        return f"tile_size and overlap cannot be negative (got {tile_size} and {overlap}); 0 means automatic."
    if tile_size % PATCH:
        lower = tile_size // PATCH * PATCH
        return (
            f"tile_size must be 0 (automatic) or a multiple of {PATCH}, got {tile_size}: "
            f"use {lower or PATCH} or {lower + PATCH}."
        )
    if tile_size and overlap >= tile_size:
        return f"overlap ({overlap}) must be smaller than tile_size ({tile_size}); a quarter of it is a good start."
    return True


def _tiling_options(tiling: str, tile_size: int | None, overlap: int | None) -> dict:
    """Keyword arguments for DepthAnything.infer; none when tiling is off. 0 means the engine's default."""
    if tiling not in TILING_CHOICES:
        raise ValueError(f"Unknown tiling {tiling!r}; use one of {', '.join(TILING_CHOICES)}.")
    if tiling == "off":
        return {}
    return {"tiled": True if tiling == "on" else "auto", "tile": tile_size or None, "overlap": overlap or None}


def _checkpoint_fingerprint(model_name: str) -> str:
    """Changes when the chosen checkpoint changes on disk, so ComfyUI runs the loading node again; never downloads."""
    try:
        path, _family = model_files.find_local(model_name)
        return str(model_files.signature(path)) if path is not None else model_name
    except Exception:  # the node itself reports the problem when it runs
        return str(model_name)


def load_depth_model(model_name: str, family: str, precision: str, device: str) -> managed.DepthAnythingModel:
    """Resolve a loader choice (downloading a known model when missing) and load it through the cache."""
    path, known_family = model_files.resolve(model_name)
    chosen = managed.family_option(family) or known_family
    if chosen is None and path.is_file():  # a transformers folder's config.json tells the family itself
        chosen = family_from_name(path.name)  # decided here, so a file and its known name share one cached model
        if chosen is None:
            raise CheckpointError(
                f"{path.name}: the file name does not tell whether this is a Depth Anything v1, v2 or v2-metric "
                "checkpoint, and their weights look alike (the wrong choice silently gives wrong depth). Set "
                "'family' on the Load Depth Anything Model node, or keep the official file name (e.g. "
                "depth_anything_v2_vits.pth)."
            )
    return managed.load(path, name=model_name, family=chosen, precision=precision, device=device)


def estimate_depth(
    model: managed.DepthAnythingModel,
    image: torch.Tensor,
    *,
    input_size: int,
    normalization: str,
    invert: bool = False,
    gamma: float = 1.0,
    batch_size: int = 4,
    tiling: str = "off",
    tile_size: int | None = None,
    overlap: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, RawDepth]:
    """IMAGE batch -> (depth IMAGE (B,H,W,3) near = white, MASK (B,H,W), RawDepth), with progress and interrupt."""
    if image.ndim != 4:
        raise ValueError(f"'image' must be an IMAGE batch (B, H, W, C), got shape {tuple(image.shape)}.")
    if image.shape[0] == 0:
        raise ValueError(
            f"Depth Anything got an empty image batch (shape {tuple(image.shape)}). Check the node that feeds "
            "'image', e.g. a folder or video loader that found no frames."
        )
    for valid in (_check_input_size(input_size), _check_tiles(tile_size or 0, overlap or 0)):
        if valid is not True:
            raise ValueError(valid)
    options = _tiling_options(tiling, tile_size, overlap)
    mm.throw_exception_if_processing_interrupted()

    count, height, width = image.shape[:3]
    net_size = processing_size(height, width, input_size)  # the whole-image pass; tiles are no larger
    net = model.ready(model.memory_required(min(batch_size, count), *net_size))
    bar = comfy.utils.ProgressBar(count)

    def progress(done: int, total: int) -> None:
        # Counts images, or network passes when tiling (one global pass plus the tiles of each image).
        bar.update_absolute(done, total)
        mm.throw_exception_if_processing_interrupted()  # raising here stops between chunks (or tiles)

    raw = net.infer(image, input_size=input_size, batch_size=batch_size, progress=progress, **options)
    depth = normalize(raw, normalization, invert=invert, gamma=gamma, metric=net.is_metric)
    as_image = depth[..., None].expand(-1, -1, -1, 3).contiguous()
    return as_image, depth.contiguous(), RawDepth(raw, net.is_metric, model.name)


# ------------------------------------------------------------------------------------------------- nodes


class DepthAnythingModelLoader:
    DESCRIPTION = (
        "Loads a Depth Anything v1 / v2 / v2-metric checkpoint once and keeps it cached across runs; ComfyUI's "
        "memory manager moves it to the GPU when needed and evicts it when other models need the VRAM."
    )
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The loaded model, for Depth Anything Estimate.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": _model_name_input(),
                "family": (
                    list(managed.FAMILY_CHOICES),
                    {
                        "default": "auto",
                        "tooltip": "auto reads it from the official file name. v1 and v2 weights look alike, so "
                        "set it for renamed files. Metric models give metres (indoor: up to 20 m, outdoor: 80 m).",
                    },
                ),
                "precision": (
                    list(managed.PRECISION_CHOICES),
                    {
                        "default": "auto",
                        "tooltip": "auto: fp16 on GPUs that run it fast, else fp32 (fp16 overflow is recomputed "
                        "in fp32). bf16 never overflows but is a little less exact.",
                    },
                ),
                "device": (
                    list(managed.DEVICE_CHOICES),
                    {
                        "default": "auto",
                        "tooltip": "auto: ComfyUI's device (GPU when there is one). cpu: keep this model off the "
                        "GPU, e.g. to leave all VRAM to the diffusion model.",
                    },
                ),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, model_name):
        # Replaces ComfyUI's "value not in list" with a message that says where the file should be.
        if model_name is None:
            return True
        return model_files.name_problem(model_name) or True

    @classmethod
    def IS_CHANGED(cls, model_name, **_):
        return _checkpoint_fingerprint(model_name)

    def load(self, model_name, family, precision, device):
        return (load_depth_model(model_name, family, precision, device),)


class DepthAnythingEstimate:
    DESCRIPTION = (
        "Estimates depth for an image batch: a normalized depth map (near = white, the input's own size) ready for "
        "depth ControlNets, the same as a MASK, and the raw values (metres for metric models)."
    )
    CATEGORY = CATEGORY
    FUNCTION = "estimate"
    RETURN_TYPES = ("IMAGE", "MASK", RAW_DEPTH_TYPE)
    RETURN_NAMES = ("depth", "depth_mask", "raw_depth")
    OUTPUT_TOOLTIPS = (
        "Depth as an RGB image in [0, 1], near = white: plug into Apply ControlNet.",
        "The same depth as a single-channel mask.",
        "Unnormalized values (disparity, or metres for metric models) for nodes that need real depth.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL_TYPE, {"tooltip": "From Load Depth Anything Model."}),
                "image": ("IMAGE", {"tooltip": "One image or a batch (e.g. video frames)."}),
                "input_size": _input_size_input(),
                "normalization": _normalization_input(),
                "invert": (
                    "BOOLEAN",
                    {"default": False, "tooltip": "Near = black instead, for ControlNets trained far-is-white."},
                ),
                "gamma": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.1,
                        "max": 10.0,
                        "step": 0.05,
                        "tooltip": "Applied after normalization: above 1 darkens the far range, below 1 lifts it.",
                    },
                ),
                "batch_size": (
                    "INT",
                    {
                        "default": 4,
                        "min": 1,
                        "max": 256,
                        "tooltip": "Images sent through the network at once. Lower it if you run out of VRAM; "
                        "the run can be cancelled between chunks.",
                    },
                ),
                "tiling": _tiling_input(),
                "tile_size": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 16384,
                        "step": PATCH,
                        "tooltip": "Tile side in image pixels (multiple of 14) when tiling. 0: automatic, "
                        "input_size or a quarter of the image's short side, whichever is larger.",
                    },
                ),
                "overlap": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 8192,
                        "step": PATCH,
                        "tooltip": "Pixels neighbouring tiles share, blended across so no seam shows. 0: automatic, "
                        "a quarter of the tile.",
                    },
                ),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, input_size, tile_size, overlap):
        valid = _check_input_size(input_size)
        return _check_tiles(tile_size, overlap) if valid is True else valid

    def estimate(self, model, image, input_size, normalization, invert, gamma, batch_size, tiling, tile_size, overlap):
        return estimate_depth(
            model,
            image,
            input_size=input_size,
            normalization=normalization,
            invert=invert,
            gamma=gamma,
            batch_size=batch_size,
            tiling=tiling,
            tile_size=tile_size,
            overlap=overlap,
        )


class DepthAnythingAllInOne:
    DESCRIPTION = (
        "Loader and estimate in one node for quick use: image in, depth map out (near = white). The model is "
        "cached across runs like the loader's. Use the separate nodes for precision, device and more options."
    )
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("depth", "depth_mask")
    OUTPUT_TOOLTIPS = ("Depth as an RGB image in [0, 1], near = white.", "The same depth as a mask.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "One image or a batch."}),
                "model_name": _model_name_input(),
                "input_size": _input_size_input(),
                "normalization": _normalization_input(),
                "tiling": _tiling_input(),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, model_name, input_size):
        if model_name is not None and (problem := model_files.name_problem(model_name)):
            return problem
        return _check_input_size(input_size)

    @classmethod
    def IS_CHANGED(cls, model_name, **_):
        return _checkpoint_fingerprint(model_name)

    def run(self, image, model_name, input_size, normalization, tiling):
        model = load_depth_model(model_name, "auto", "auto", "auto")
        depth, mask, _raw = estimate_depth(
            model, image, input_size=input_size, normalization=normalization, tiling=tiling
        )
        return depth, mask


class DepthAnythingColorize:
    DESCRIPTION = "Turns a depth map into a colour preview (Spectral_r as in Depth Anything v2, inferno as v1)."
    CATEGORY = CATEGORY
    FUNCTION = "colorize"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The coloured depth, for previews; feed ControlNets the grey depth instead.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "depth": ("IMAGE", {"tooltip": "A normalized depth map (its first channel is used)."}),
                "colormap": (
                    list(COLORMAPS),
                    {"default": "Spectral_r", "tooltip": "Colour table; grayscale repeats the depth value."},
                ),
            }
        }

    def colorize(self, depth, colormap):
        return (colorize(depth[..., 0], colormap),)


class DepthAnythingSaveDepth16:
    DESCRIPTION = (
        "Saves depth maps as 16-bit grayscale PNGs (65536 levels instead of 256) in ComfyUI's output folder, "
        "with a .npy of the float values beside each (the raw values, metres for metric models, when raw_depth "
        "is connected)."
    )
    CATEGORY = CATEGORY
    FUNCTION = "save"
    RETURN_TYPES = ()
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "depth": ("IMAGE", {"tooltip": "A normalized depth map in [0, 1] (its first channel is saved)."}),
                "filename_prefix": (
                    "STRING",
                    {
                        "default": "depth_anything/depth",
                        "tooltip": "File name start, relative to the output folder; may hold subfolders and "
                        "%width% / %height%. A counter keeps earlier files.",
                    },
                ),
                "save_npy": (
                    "BOOLEAN",
                    {"default": True, "tooltip": "Also write a float32 .npy beside each PNG."},
                ),
            },
            "optional": {
                "raw_depth": (
                    RAW_DEPTH_TYPE,
                    {"tooltip": "Connect Estimate's raw_depth to store the unnormalized values in the .npy."},
                ),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def save(self, depth, filename_prefix, save_npy, raw_depth=None, prompt=None, extra_pnginfo=None):
        if raw_depth is not None and raw_depth.values.shape[0] != depth.shape[0]:
            raise ValueError(
                f"raw_depth holds {raw_depth.values.shape[0]} maps but depth holds {depth.shape[0]}; connect both "
                "from the same Depth Anything Estimate node."
            )
        output_dir = folder_paths.get_output_directory()
        folder, filename, counter, subfolder, _prefix = folder_paths.get_save_image_path(
            filename_prefix, output_dir, depth.shape[2], depth.shape[1]
        )
        metadata = _png_metadata(prompt, extra_pnginfo)
        results = []
        for index, image in enumerate(depth):
            stem = f"{filename.replace('%batch_num%', str(index))}_{counter:05}_"
            png = Image.fromarray(to_uint16(image[..., 0]))
            _write_atomically(os.path.join(folder, stem + ".png"), lambda f: png.save(f, "PNG", pnginfo=metadata))
            if save_npy:
                values = raw_depth.values[index] if raw_depth is not None else image[..., 0]
                array = values.detach().cpu().float().numpy()
                _write_atomically(os.path.join(folder, stem + ".npy"), lambda f: np.save(f, array))
            results.append({"filename": stem + ".png", "subfolder": subfolder, "type": "output"})
            counter += 1
        return {"ui": {"images": results}}


def _png_metadata(prompt, extra_pnginfo) -> PngInfo | None:
    """The workflow embedded as ComfyUI's SaveImage does, unless the server runs with --disable-metadata."""
    try:
        from comfy.cli_args import args

        if args.disable_metadata:
            return None
    except ImportError:  # pragma: no cover - every ComfyUI has it; stay usable if that changes
        pass
    metadata = PngInfo()
    if prompt is not None:
        metadata.add_text("prompt", json.dumps(prompt))
    for key, value in (extra_pnginfo or {}).items():
        metadata.add_text(key, json.dumps(value))
    return metadata


def _write_atomically(path: str, write) -> None:
    """Write through a temporary file and rename, so a failure never leaves a half-written file under `path`."""
    partial = path + ".partial"
    try:
        with open(partial, "wb") as f:
            write(f)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


NODE_CLASS_MAPPINGS = {
    "DepthAnythingModelLoader": DepthAnythingModelLoader,
    "DepthAnythingEstimate": DepthAnythingEstimate,
    "DepthAnythingAllInOne": DepthAnythingAllInOne,
    "DepthAnythingColorize": DepthAnythingColorize,
    "DepthAnythingSaveDepth16": DepthAnythingSaveDepth16,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "DepthAnythingModelLoader": "Load Depth Anything Model",
    "DepthAnythingEstimate": "Depth Anything Estimate",
    "DepthAnythingAllInOne": "Depth Anything",
    "DepthAnythingColorize": "Colorize Depth",
    "DepthAnythingSaveDepth16": "Save Depth 16-bit",
}
