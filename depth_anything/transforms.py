"""Official Depth Anything pre-processing, done in torch on the model's device.

Images of any common kind become float RGB in [0, 1] (no uint8 rounding), are resized with bicubic so that the
short side reaches `input_size` in multiples of 14, and are normalised with the ImageNet statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

try:
    from PIL import Image
except ImportError:  # pragma: no cover - pillow is a hard dependency, kept soft for import-time robustness
    Image = None

PATCH = 14
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_SIZE_FACTOR = 3  # default cap on the longest processed side, in multiples of input_size

ImageInput = Union["Image.Image", np.ndarray, torch.Tensor]


def _round_half_even(x: float) -> int:
    # The official code rounds with numpy, which rounds halves to even; Python's round() does the same.
    return int(round(x))


def processing_size(height: int, width: int, input_size: int = 518, max_size: int | None = None) -> tuple[int, int]:
    """The (height, width) an image of this size is resized to before the network.

    The official rule: scale so that the short side is at least `input_size`, round each side to a multiple of
    14 (up if rounding would fall below `input_size`). Then, unlike the official code, the longest side is capped
    at `max_size` (default 3 x `input_size`) so that thin images do not explode (600x100 would become 3108x518);
    a capped image keeps its aspect ratio as closely as multiples of 14 allow.

    >>> processing_size(200, 300)
    (518, 784)
    """
    if height < 1 or width < 1:
        raise ValueError(f"Image has an empty side ({width}x{height}); give an image at least 1x1 pixels.")
    if input_size < PATCH or input_size % PATCH:
        raise ValueError(f"input_size must be a positive multiple of {PATCH} (e.g. 518), got {input_size}.")
    if max_size is None:
        max_size = MAX_SIZE_FACTOR * input_size
    if max_size < PATCH:
        raise ValueError(f"max_size must be at least {PATCH}, got {max_size}.")

    scale = max(input_size / height, input_size / width)
    sides = []
    for side in (height, width):
        y = _round_half_even(scale * side / PATCH) * PATCH
        if y < input_size:
            y = math.ceil(scale * side / PATCH) * PATCH
        sides.append(y)
    h, w = sides
    if max(h, w) > max_size:
        cap = max_size / max(height, width)
        h, w = (max(PATCH, math.floor(cap * side / PATCH) * PATCH) for side in (height, width))
    return h, w


def _from_numpy(array: np.ndarray) -> torch.Tensor:
    """numpy HW / HWC (uint8, uint16, bool or float) -> float32 CHW in [0, 1]."""
    if array.dtype == np.uint8:
        scale = 255.0
    elif array.dtype == np.uint16:
        scale = 65535.0
    elif array.dtype == np.bool_:
        scale = 1.0
    elif array.dtype in (np.int32, np.int64) and array.size and array.min() >= 0 and array.max() <= 65535:
        scale = 65535.0  # PIL opens 16-bit PNGs as 32-bit integers
    elif np.issubdtype(array.dtype, np.floating):
        scale = 1.0
    else:
        raise ValueError(f"Unsupported image dtype {array.dtype}; use uint8, uint16 or float in [0, 1].")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"Expected an image of shape (H, W) or (H, W, C), got {tuple(array.shape)}.")
    if not array.flags.writeable:  # PIL hands out read-only buffers; torch wants to own writable memory
        array = array.copy()
    tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    return _finish(tensor.to(torch.float32) / scale if scale != 1.0 else tensor.to(torch.float32))


def _finish(chw: torch.Tensor) -> torch.Tensor:
    """Channel fix-up and checks shared by every input kind: CHW float -> 3-channel CHW in [0, 1]."""
    channels, height, width = chw.shape
    if height == 0 or width == 0:
        raise ValueError(f"Image has an empty side ({width}x{height}); give an image at least 1x1 pixels.")
    if channels in (1, 2):  # grayscale, grayscale + alpha
        chw = chw[:1].expand(3, -1, -1)
    elif channels == 4:  # RGBA: the alpha channel is not part of the scene
        chw = chw[:3]
    elif channels != 3:
        raise ValueError(f"Expected 1, 3 or 4 channels, got {channels}.")
    if not torch.isfinite(chw).all():
        raise ValueError("Image contains NaN or infinite values.")
    return chw.clamp(0.0, 1.0)


def _from_pil(image: "Image.Image") -> torch.Tensor:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return _from_numpy(np.asarray(image))
    if image.mode == "F":
        return _from_numpy(np.asarray(image, dtype=np.float32))
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return _from_numpy(np.asarray(image))


def _from_torch_single(t: torch.Tensor) -> torch.Tensor:
    if t.ndim == 2:
        t = t[None]
    elif t.ndim == 3 and t.shape[-1] in (1, 2, 3, 4) and t.shape[0] not in (1, 2, 3, 4):
        t = t.permute(2, 0, 1)
    elif t.ndim == 3 and t.shape[-1] in (1, 3, 4) and t.shape[0] in (1, 3, 4):
        t = t.permute(2, 0, 1)  # ambiguous tiny image: ComfyUI's channels-last layout wins
    if t.ndim != 3:
        raise ValueError(f"Expected an image tensor (H, W, C) or (C, H, W), got shape {tuple(t.shape)}.")
    return _finish(_tensor_to_float(t))


def _tensor_to_float(t: torch.Tensor) -> torch.Tensor:
    if t.dtype == torch.uint8:
        return t.to(torch.float32) / 255.0
    if t.dtype == torch.bool:
        return t.to(torch.float32)
    if t.is_floating_point():
        return t.to(torch.float32)
    raise ValueError(f"Unsupported tensor dtype {t.dtype}; use float in [0, 1] or uint8.")


def to_image_list(images: ImageInput | Sequence[ImageInput]) -> list[torch.Tensor]:
    """Any supported input -> a list of float32 (3, H, W) tensors in [0, 1].

    Accepts a PIL image, numpy HW / HWC, torch (H, W, C) / (C, H, W), a batch as torch (B, H, W, 3) (ComfyUI's
    IMAGE) or (B, 3, H, W) or numpy (B, H, W, C), or a list of any of these (sizes may differ).
    """
    if isinstance(images, (list, tuple)):
        out = []
        for item in images:
            out.extend(to_image_list(item))
        return out
    if Image is not None and isinstance(images, Image.Image):
        return [_from_pil(images)]
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return [_from_numpy(frame) for frame in images]
        return [_from_numpy(images)]
    if isinstance(images, torch.Tensor):
        if images.ndim == 4:
            if images.shape[-1] in (1, 3, 4):
                batch = images.permute(0, 3, 1, 2)
            elif images.shape[1] in (1, 3, 4):
                batch = images
            else:
                raise ValueError(f"Expected a batch (B, H, W, 3) or (B, 3, H, W), got shape {tuple(images.shape)}.")
            return [_finish(_tensor_to_float(frame)) for frame in batch]
        return [_from_torch_single(images)]
    raise TypeError(
        f"Unsupported image type {type(images).__name__}; give a PIL image, a numpy array, a torch tensor or a list."
    )


def normalize_for_model(batch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """float (N, 3, H, W) in [0, 1] -> resized to `size` with bicubic and ImageNet-normalised, in float32."""
    batch = batch.to(torch.float32)
    if tuple(batch.shape[-2:]) != tuple(size):
        batch = F.interpolate(batch, size=size, mode="bicubic", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=batch.device).view(1, 3, 1, 1)
    return (batch - mean) / std


def resize_prediction(prediction: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) network output -> float32 (N, H, W) at the image size (bilinear, align_corners=True as v2)."""
    prediction = prediction.to(torch.float32)
    if tuple(prediction.shape[-2:]) == tuple(size):
        return prediction
    return F.interpolate(prediction[:, None], size=size, mode="bilinear", align_corners=True)[:, 0]
