"""ComfyUI node (V1 API) for video: temporally consistent depth for a batch of frames with Video Depth Anything.

The node hands the frames to `DepthModel.infer_video` one at a time, so the network only ever holds the window
it is working on (32 frames for Video Depth Anything), and writes each frame's depth straight into the outputs.
"""

from __future__ import annotations

import torch

import comfy.model_management as mm
import comfy.utils

from depth_anything import NORMALIZE_MODES, condition
from depth_anything.conditioning import DepthRange, value_ranges
from depth_anything.depth_files import depth_metadata
from depth_anything.options import DEFAULT_INPUT_SIZE, HELP, MAX_INPUT_SIZE, PATCH, tiling_mode

from .depth_nodes import (
    CATEGORY,
    MODEL_TYPE,
    RAW_DEPTH_TYPE,
    RawDepth,
    tile_options,
    tiling_inputs,
    validate_size_and_tiles,
)
from .managed import DepthAnythingModel

VIDEO_BATCH_SIZE = 8  # frames the encoder and the full-resolution head see at once; memory, not results


def estimate_video_depth(
    model: DepthAnythingModel,
    images: torch.Tensor,
    *,
    input_size: int,
    normalization: str = "batch",
    invert: bool = False,
    gamma: float = 1.0,
    batch_size: int = VIDEO_BATCH_SIZE,
    tiling: str = "off",
    tile_size: int = 0,
    overlap: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, RawDepth]:
    """IMAGE frames (T, H, W, 3) -> (depth IMAGE (T, H, W, 3) near = white, MASK (T, H, W), RawDepth).

    Progress counts frames; an interrupt stops the run between windows. Nothing larger than the outputs is
    built: the raw depth, the mask and the image are filled frame by frame. With `tiling`, Video Depth Anything
    tiles in time (each tile position a clip through its windows); other models tile each frame.
    """
    tile, tile_overlap = tile_options(tile_size, overlap)
    if images.ndim != 4:
        raise ValueError(f"'images' must be an IMAGE batch of frames (T, H, W, C), got shape {tuple(images.shape)}.")
    count, height, width = images.shape[:3]
    if count == 0:
        raise ValueError(
            f"Video Depth Anything got no frames (shape {tuple(images.shape)}). Check the node that feeds 'images', "
            "e.g. a video loader that found no frames."
        )
    mm.throw_exception_if_processing_interrupted()
    family = model.model.family
    net_size = family.preprocessing.net_size(height, width, input_size)
    frames_at_once = count if family.temporal else min(batch_size, count)  # a temporal model sees its window
    net = model.ready(model.memory_required(frames_at_once, *net_size))
    bar = comfy.utils.ProgressBar(count)

    def between_windows(_done: int, _total: int | None) -> None:
        mm.throw_exception_if_processing_interrupted()  # raising here stops the model between windows

    raw = torch.empty(count, height, width, dtype=torch.float32)
    frames = (images[index] for index in range(count))  # one at a time: the model keeps only its window
    done = 0
    depths = net.infer_video(
        frames, input_size=input_size, batch_size=batch_size, progress=between_windows, tiled=tiling_mode(tiling),
        tile=tile, overlap=tile_overlap,
    )
    for depth in depths:
        raw[done] = depth
        done += 1
        bar.update_absolute(done, count)
        mm.throw_exception_if_processing_interrupted()
    if done != count:
        raise RuntimeError(f"Video Depth Anything returned depth for {done} of {count} frames.")

    if normalization == "batch":  # one range over the clip, gathered a frame at a time
        clip_range = DepthRange()
        for depth in raw:
            clip_range.update(depth, net.output_kind)
        ranges = (clip_range,) * count
    else:
        ranges = tuple(value_ranges(depth, kind=net.output_kind, normalize=normalization)[0] for depth in raw)
    mask = torch.empty_like(raw)
    for index, (depth, depth_range) in enumerate(zip(raw, ranges)):
        mask[index] = condition(depth, kind=net.output_kind, invert=invert, gamma=gamma, value_range=depth_range)
    image = torch.empty(count, height, width, 3, dtype=torch.float32)
    image.copy_(mask[..., None].expand(-1, -1, -1, 3))
    about = depth_metadata(
        net, normalize=normalization, invert=invert, gamma=gamma, input_size=input_size, tiling=tiling, tile=tile,
        overlap=tile_overlap,
    )
    return image, mask, RawDepth(raw, net.output_kind, model.name, about, ranges)


class VideoDepthAnythingEstimate:
    DESCRIPTION = (
        "Depth for the frames of a video that does not flicker: Video Depth Anything sees 32 frames at a time and "
        "stitches its windows as the official release does (other Depth Anything models run frame by frame). "
        "Memory stays at one window, however long the clip. Near = white, for depth ControlNets."
    )
    CATEGORY = CATEGORY
    FUNCTION = "estimate"
    RETURN_TYPES = ("IMAGE", "MASK", RAW_DEPTH_TYPE)
    RETURN_NAMES = ("depth", "depth_mask", "raw_depth")
    OUTPUT_TOOLTIPS = (
        "Depth frames as an RGB image batch in [0, 1], near = white: plug into Apply ControlNet.",
        "The same depth as a mask batch.",
        "Unnormalized values (disparity, or metres for metric models) for nodes that need real depth.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (
                    MODEL_TYPE,
                    {"tooltip": "From Load Depth Anything Model: a video_depth_anything_* checkpoint for temporally "
                     "consistent depth."},
                ),
                "images": ("IMAGE", {"tooltip": "The frames of a video, in order (e.g. from Load Video + Get Video "
                                     "Components, or an animated image)."}),
                "input_size": (
                    "INT",
                    {"default": DEFAULT_INPUT_SIZE, "min": PATCH, "max": MAX_INPUT_SIZE, "step": PATCH,
                     "tooltip": f"{HELP['input_size']} Video Depth Anything gives frames wider than 16:9 a "
                     "smaller one, as its release does."},
                ),
                "normalization": (
                    list(NORMALIZE_MODES),
                    {"default": "batch", "tooltip": f"{HELP['normalize']} Default batch: one range for the clip."},
                ),
                "invert": ("BOOLEAN", {"default": False, "tooltip": HELP["invert"]}),
                "gamma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.05, "tooltip": HELP["gamma"]}),
                "batch_size": (
                    "INT",
                    {
                        "default": VIDEO_BATCH_SIZE,
                        "min": 1,
                        "max": 32,
                        "tooltip": "Frames the network runs at once inside a window; lower it when memory runs out "
                        "(the depth is the same).",
                    },
                ),
            },
            # tiles in time: every tile position a clip through the windows, fitted to the whole-frame clip
            "optional": tiling_inputs(),
        }

    @classmethod
    def VALIDATE_INPUTS(cls, input_size, tile_size=0, overlap=0):
        return validate_size_and_tiles(input_size, tile_size, overlap)

    def estimate(self, model, images, input_size, normalization, invert, gamma, batch_size, tiling="off",
                 tile_size=0, overlap=0):
        return estimate_video_depth(
            model, images, input_size=input_size, normalization=normalization, invert=invert, gamma=gamma,
            batch_size=batch_size, tiling=tiling, tile_size=tile_size, overlap=overlap,
        )


NODE_CLASS_MAPPINGS = {"VideoDepthAnythingEstimate": VideoDepthAnythingEstimate}
NODE_DISPLAY_NAME_MAPPINGS = {"VideoDepthAnythingEstimate": "Video Depth Anything"}
