"""ComfyUI nodes (V1 API): load a Depth Anything model, estimate depth, colorize it, save it in 16 bits.

The nodes only translate between ComfyUI and the `depth_anything` library, which does the work.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL.PngImagePlugin import PngInfo

import comfy.model_management as mm
import comfy.utils

from depth_anything import COLORMAPS, NORMALIZE_MODES, colorize, condition, resolve_checkpoint
from depth_anything.backends import BACKEND_HELP, DEFAULT_BACKEND
from depth_anything.conditioning import DepthRange, invalid_mask, quantize, value_ranges
from depth_anything.depth_files import DepthMetadata, depth_metadata, png16_bytes, write_npy
from depth_anything.files import write_atomic
from depth_anything.options import (
    BATCH_SIZE,
    RESIZE_METHODS,
    DEFAULT_INPUT_SIZE,
    HELP,
    MAX_INPUT_SIZE,
    MAX_TILE,
    PATCH,
    TILING_MODES,
    input_size_problem,
    tile_problem,
    tiling_mode,
)

from depth_anything.work import WorkWarning, check_work

from . import managed, model_files, saving

CATEGORY = "Depth Anything"
MODEL_TYPE = "DEPTH_ANYTHING_MODEL"
RAW_DEPTH_TYPE = "DEPTH_ANYTHING_RAW"


@dataclass(frozen=True)
class RawDepth:
    """What flows along DEPTH_ANYTHING_RAW links: the network's values before normalisation.

    values: float32 (B, H, W) on the CPU in the model's own quantity (`kind`): disparity (near = large,
    arbitrary scale) for relative models, depth in metres for metric ones.
    about: the model and settings depth files record (`depth_anything.depth_files`), when known.
    ranges: per map, the near-bright range the estimate's depth IMAGE was normalised over.
    """

    values: torch.Tensor
    kind: str
    model: str
    about: DepthMetadata | None = None
    ranges: tuple[DepthRange, ...] = ()

    @property
    def is_metric(self) -> bool:
        return self.kind == "metric_depth"


# ------------------------------------------------------------------------------------------- shared inputs


def _model_name_input() -> tuple:
    return (
        model_files.model_names(),
        {
            "default": model_files.DEFAULT_MODEL,
            "tooltip": "A checkpoint in ComfyUI/models/depth_anything (.pth, .safetensors or a transformers folder), "
            "a Depth Anything 3 file in ComfyUI/models/geometry_estimation (shared with ComfyUI's own DA3 nodes), "
            "or a known model name, downloaded on first use.",
        },
    )


def _input_size_input() -> tuple:
    return (
        "INT",
        {"default": DEFAULT_INPUT_SIZE, "min": PATCH, "max": MAX_INPUT_SIZE, "step": PATCH, "tooltip": HELP["input_size"]},
    )


def _normalization_input() -> tuple:
    return (list(NORMALIZE_MODES), {"default": "per_image", "tooltip": HELP["normalize"]})


def _tiling_input() -> tuple:
    return (list(TILING_MODES), {"default": "off", "tooltip": HELP["tiling"]})


def tiling_inputs() -> dict[str, tuple]:
    """The tiling widgets (tiling, tile_size, overlap) of the nodes that can tile."""
    return {
        "tiling": _tiling_input(),
        "tile_size": (
            "INT",
            {"default": 0, "min": 0, "max": MAX_TILE, "step": PATCH, "tooltip": f"{HELP['tile']} 0: the default."},
        ),
        "overlap": (
            "INT",
            {"default": 0, "min": 0, "max": 8192, "step": PATCH, "tooltip": f"{HELP['overlap']} 0: the default."},
        ),
    }


def _problem_or_true(*problems: str | None) -> bool | str:
    """What VALIDATE_INPUTS returns: the library's first message, or True. A linked input (None) passes here;
    the library checks it when the node runs."""
    return next((p for p in problems if p is not None), True)


def validate_size_and_tiles(input_size: int | None, tile_size: int | None, overlap: int | None) -> bool | str:
    """VALIDATE_INPUTS of a node with input_size and the tiling widgets."""
    return _problem_or_true(
        None if input_size is None else input_size_problem(input_size),
        None if tile_size is None or overlap is None else tile_problem(*tile_options(tile_size, overlap),
                                                                       tile_name="tile_size"),
    )


def tile_options(tile_size: int | None, overlap: int | None) -> tuple[int | None, int | None]:
    """The widgets' 0 means the library's default."""
    return tile_size or None, overlap or None


def _checkpoint_fingerprint(model_name: str) -> str:
    """Changes when the chosen checkpoint changes on disk, so ComfyUI runs the loading node again; never downloads."""
    try:
        path = model_files.find_local(model_name)
        return str(model_files.signature(path)) if path is not None else model_name
    except Exception:  # the node itself reports the problem when it runs
        return str(model_name)


def load_depth_model(
    model_name: str, family: str, precision: str, device: str, backend: str = DEFAULT_BACKEND
) -> managed.DepthAnythingModel:
    """Resolve a loader choice (downloading a known model when missing) and load it through the cache.

    The family is decided once, by the library's resolver, before the cache is looked at, so a file and its
    known name share one cached model.
    """
    path = model_files.resolve(model_name)
    checkpoint = resolve_checkpoint(path, family=managed.family_option(family))
    return managed.load(checkpoint, name=model_name, precision=precision, device=device, backend=backend)


def estimate_depth(
    model: managed.DepthAnythingModel,
    image: torch.Tensor,
    *,
    input_size: int,
    normalization: str,
    invert: bool = False,
    gamma: float = 1.0,
    batch_size: int = BATCH_SIZE,
    tiling: str = "off",
    tile_size: int | None = None,
    overlap: int | None = None,
    focal_px: float | None = None,
    resize_method: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, RawDepth, torch.Tensor]:
    """IMAGE batch -> (depth IMAGE (B,H,W,3) near = white, MASK (B,H,W), RawDepth, sky MASK (B,H,W)), with
    progress and interrupt. Sky (for models with a sky head; else an empty mask) is black in the depth map."""
    if image.ndim != 4:
        raise ValueError(f"'image' must be an IMAGE batch (B, H, W, C), got shape {tuple(image.shape)}.")
    if image.shape[0] == 0:
        raise ValueError(
            f"Depth Anything got an empty image batch (shape {tuple(image.shape)}). Check the node that feeds "
            "'image', e.g. a folder or video loader that found no frames."
        )
    tile, tile_overlap = tile_options(tile_size, overlap)
    mm.throw_exception_if_processing_interrupted()

    count, height, width = image.shape[:3]
    with warnings.catch_warnings():  # refused before other models are evicted for it; infer warns itself
        warnings.simplefilter("ignore", WorkWarning)
        check_work(model.model, [(height, width)], input_size=input_size, tiled=tiling_mode(tiling), tile=tile,
                   overlap=tile_overlap, device=model.load_device)
    rule = model.model.family.preprocessing
    rule = rule.with_method(resize_method) if rule.methods else rule  # other families have one rule
    net_size = rule.net_size(height, width, input_size)  # the whole-image pass
    net = model.ready(model.memory_required(min(batch_size, count), *net_size))
    bar = comfy.utils.ProgressBar(count)

    def progress(done: int, total: int) -> None:
        # Counts images, or network passes when tiling (one global pass plus the tiles of each image).
        bar.update_absolute(done, total)
        mm.throw_exception_if_processing_interrupted()  # raising here stops between chunks (or tiles)

    if net.family.temporal:  # a video model (Video Depth Anything) sees the batch as one clip, in its windows
        raw = net.infer_video(
            image, input_size=input_size, batch_size=batch_size, progress=progress, tiled=tiling_mode(tiling),
            tile=tile, overlap=tile_overlap,
        )
    else:
        raw = net.infer(
            image, input_size=input_size, batch_size=batch_size, progress=progress, tiled=tiling_mode(tiling),
            tile=tile, overlap=tile_overlap, focal_px=focal_px or None, return_sky=net.has_sky, preprocessing=rule,
            interrupt=mm.throw_exception_if_processing_interrupted,  # Cancel: mid-pass
        )
    raw, sky = raw if net.has_sky else (raw, torch.zeros(count, height, width))
    depth = condition(raw, kind=net.output_kind, normalize=normalization, invert=invert, gamma=gamma, far_mask=sky)
    as_image = depth[..., None].expand(-1, -1, -1, 3).contiguous()
    about = depth_metadata(
        net, normalize=normalization, invert=invert, gamma=gamma, input_size=input_size,
        tiling=tiling, tile=tile, overlap=tile_overlap,
    )
    ranges = tuple(value_ranges(raw, kind=net.output_kind, normalize=normalization, far_mask=sky))
    raw_depth = RawDepth(raw, net.output_kind, model.name, about, ranges)
    return as_image, depth.contiguous(), raw_depth, sky.contiguous()


# ------------------------------------------------------------------------------------------------- nodes


class DepthAnythingModelLoader:
    DESCRIPTION = (
        "Loads a Depth Anything v1 / v2 / v2-metric / 3 checkpoint once and keeps it cached across runs; ComfyUI's "
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
                        "tooltip": "auto reads it from the official file name. v1 and v2 weights look alike (as do "
                        "DA3 mono and metric), so set it for renamed files. Metric models give metres (indoor: up to "
                        "20 m, outdoor: 80 m; DA3 metric from the focal length).",
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
            },
            "optional": {
                # Optional, so that workflows saved before it load unchanged (they run eager, as they did).
                "backend": (
                    list(managed.BACKEND_CHOICES),
                    {"default": DEFAULT_BACKEND, "tooltip": f"{BACKEND_HELP} The first run of a new size can "
                     "take a while (export or build); later runs, and later ComfyUI sessions, reuse it."},
                ),
            },
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

    def load(self, model_name, family, precision, device, backend=DEFAULT_BACKEND):
        return (load_depth_model(model_name, family, precision, device, backend),)


class DepthAnythingEstimate:
    DESCRIPTION = (
        "Estimates depth for an image batch: a normalized depth map (near = white, the input's own size) ready for "
        "depth ControlNets, the same as a MASK, the raw values (metres for metric models) and, for Depth Anything "
        "3 mono / metric, the sky (black in the depth map)."
    )
    CATEGORY = CATEGORY
    FUNCTION = "estimate"
    RETURN_TYPES = ("IMAGE", "MASK", RAW_DEPTH_TYPE, "MASK", "MASK")
    RETURN_NAMES = ("depth", "depth_mask", "raw_depth", "invalid_mask", "sky_mask")
    OUTPUT_TOOLTIPS = (
        "Depth as an RGB image in [0, 1], near = white: plug into Apply ControlNet.",
        "The same depth as a single-channel mask.",
        "Unnormalized values (disparity; relative depth for Depth Anything 3; metres for metric models) for nodes "
        "that need real depth.",
        "1 where the model gave no finite depth (NaN / inf); those pixels are far (black) in depth. "
        "Normally all 0.",
        "1 where the model sees sky (Depth Anything 3 mono / metric, by the release's threshold); empty for models "
        "without a sky head.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL_TYPE, {"tooltip": "From Load Depth Anything Model."}),
                "image": ("IMAGE", {"tooltip": "One image or a batch (e.g. video frames)."}),
                "input_size": _input_size_input(),
                "normalization": _normalization_input(),
                "invert": ("BOOLEAN", {"default": False, "tooltip": HELP["invert"]}),
                "gamma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.05, "tooltip": HELP["gamma"]}),
                "batch_size": (
                    "INT",
                    {
                        "default": BATCH_SIZE,
                        "min": 1,
                        "max": 256,
                        "tooltip": f"{HELP['batch_size']} The run can be cancelled between chunks.",
                    },
                ),
                **tiling_inputs(),
            },
            "optional": {
                "focal_px": (
                    "FLOAT",
                    {"default": 0.0, "min": 0.0, "max": 1.0e6, "step": 0.1, "tooltip": HELP["focal_px"]},
                ),
                "resize_method": (list(RESIZE_METHODS), {"default": "upper_bound", "tooltip": HELP["resize_method"]}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, input_size, tile_size, overlap):
        return validate_size_and_tiles(input_size, tile_size, overlap)

    def estimate(
        self, model, image, input_size, normalization, invert, gamma, batch_size, tiling, tile_size, overlap,
        focal_px=0.0, resize_method="upper_bound",
    ):
        depth, mask, raw, sky = estimate_depth(
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
            focal_px=focal_px,
            resize_method=resize_method,
        )
        return depth, mask, raw, invalid_mask(raw.values, raw.kind).float(), sky


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
        return _problem_or_true(
            None if model_name is None else model_files.name_problem(model_name),
            None if input_size is None else input_size_problem(input_size),
        )

    @classmethod
    def IS_CHANGED(cls, model_name, **_):
        return _checkpoint_fingerprint(model_name)

    def run(self, image, model_name, input_size, normalization, tiling):
        model = load_depth_model(model_name, "auto", "auto", "auto")
        depth, mask, _raw, _sky = estimate_depth(
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
        "is connected). With raw_depth, each PNG records the model and the range its levels stand for, so Load "
        "Depth gives the values back."
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
                "filename_prefix": saving.filename_prefix_input(),
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
        folder, stems, subfolder = saving.output_stems(filename_prefix, depth.shape[2], depth.shape[1], len(depth))
        workflow = _png_metadata(prompt, extra_pnginfo)
        results = []
        for index, (image, stem) in enumerate(zip(depth, stems)):
            depth_map = image[..., 0]
            png = png16_bytes(quantize(depth_map, 16), saving.levels_metadata(depth_map, raw_depth, index), workflow)
            write_atomic(os.path.join(folder, stem + ".png"), lambda f: f.write(png), overwrite=False)
            if save_npy:
                if raw_depth is not None:
                    array = raw_depth.values[index].detach().cpu().float().numpy()
                    about = saving.raw_metadata(raw_depth, index)
                else:
                    array, about = depth_map.detach().cpu().float().numpy(), saving.unit_map_metadata(depth_map)
                write_npy(Path(folder, stem + ".npy"), array, about, overwrite=False)
            results.append(saving.saved(stem + ".png", subfolder))
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
