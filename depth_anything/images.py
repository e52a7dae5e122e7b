"""Images in every form people have -> float RGB tensors in [0, 1], the first thing the prepare stage does.

Accepted: a PIL image, numpy HW / HWC (uint8, uint16, bool or float in [0, 1]), torch (H, W, C) / (C, H, W), a
batch as torch (B, H, W, C) (ComfyUI's IMAGE) / (B, C, H, W) or numpy (B, H, W, C), an image file's path, or a
list of any of these (sizes may differ). 16-bit images keep their extra bits; alpha is dropped; grayscale is
repeated into three channels. Float images must be in [0, 1]: up to FLOAT_TOLERANCE of overshoot (a bicubic
resize's) is clamped, and a float image on another scale (0..255, 0..65535, normalised) is refused with the fix,
never clamped into a white picture.

Orientation: a photo's EXIF orientation tag is applied, so depth matches the image as viewers show it. This holds
for a path, a PIL image opened from a file, the command line and ComfyUI's own Load Image alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, ImageOps

ImageInput = Union[Image.Image, np.ndarray, torch.Tensor, str, Path]
FLOAT_TOLERANCE = 0.5  # float images may overshoot [0, 1] this much (bicubic resizes do) and are clamped

EQUIVALENT_FOCAL_DIAGONAL_MM = math.hypot(36.0, 24.0)  # a 35 mm-equivalent focal length is relative to this frame
_EXIF_IFD, _FOCAL_35MM = 0x8769, 0xA405  # the Exif sub-IFD and its FocalLengthIn35mmFilm tag


class UnreadableImageError(ValueError):
    """An input file that is not a readable image."""


def read_image(path: str | Path) -> np.ndarray:
    """An image file -> numpy array, EXIF orientation applied.

    8-bit images come back as uint8 (H, W) or (H, W, 3); 16-bit ones as uint16 (H, W), so their extra bits
    reach the model; float images (e.g. 32-bit TIFF) as float32 (H, W). Alpha is dropped.

    Raises:
        UnreadableImageError: the file is missing, not an image, truncated or corrupt.
    """
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)  # as cv2.imread does in the official scripts
            image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = str(exc) or type(exc).__name__
        raise UnreadableImageError(f"cannot read image ({reason})") from exc
    if image.width == 0 or image.height == 0:
        raise UnreadableImageError(f"image has an empty side ({image.width}x{image.height})")
    return _pil_to_array(image)


def _pil_to_array(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        array = np.array(image)
        if array.dtype != np.uint16:
            if array.size and (array.min() < 0 or array.max() > 65535):
                raise UnreadableImageError(f"32-bit integer image with values outside 0..65535 ({mode})")
            array = array.astype(np.uint16)
        return array
    if mode == "F":
        return np.array(image, dtype=np.float32)
    if mode in ("L", "RGB"):
        return np.array(image)
    if mode in ("1", "LA", "La"):
        return np.array(image.convert("L"))
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return np.array(image.convert("RGB"))


def preview_rgb(array: np.ndarray) -> np.ndarray:
    """An array from `read_image` -> uint8 (H, W, 3) RGB, as shown beside the depth in side-by-side output."""
    if array.dtype == np.uint16:
        array = np.round(array / 257.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        array = np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(array)


# ------------------------------------------------------------------------------------- one image at a time


def split_images(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    """The single images in an input, without converting them: batches become per-image views.

    >>> len(split_images([torch.zeros(2, 8, 8, 3), np.zeros((8, 8), np.uint8)]))
    3
    """
    if isinstance(images, (list, tuple)):
        return [single for item in images for single in split_images(item)]
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        if images.shape[-1] in (1, 3, 4):
            return list(images)  # (B, H, W, C) frames, channels last like ComfyUI
        if images.shape[1] in (1, 3, 4):
            return list(images.permute(0, 2, 3, 1))  # views, channels last like the rest
        raise ValueError(f"Expected a batch (B, H, W, 3) or (B, 3, H, W), got shape {tuple(images.shape)}.")
    if isinstance(images, (Image.Image, np.ndarray, torch.Tensor, str, Path)):
        return [images]
    raise TypeError(
        f"Unsupported image type {type(images).__name__}; give a PIL image, a numpy array, a torch tensor, a file "
        "path or a list of them."
    )


def _channels_last(t: torch.Tensor) -> bool:
    """Whether a 3-d image tensor is (H, W, C); an ambiguous tiny image is taken as ComfyUI's channels-last."""
    if t.shape[-1] in (1, 2, 3, 4) and t.shape[0] not in (1, 2, 3, 4):
        return True
    return t.shape[-1] in (1, 3, 4) and t.shape[0] in (1, 3, 4)


def image_size(image: ImageInput) -> tuple[int, int]:
    """(height, width) of one image, read without converting it (a file's header only)."""
    if isinstance(image, Image.Image):
        width, height = _oriented_size(image)
        return height, width
    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as opened:
                width, height = _oriented_size(opened)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise UnreadableImageError(f"cannot read image {image} ({exc or type(exc).__name__})") from exc
        return height, width
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3):
            raise ValueError(f"Expected an image of shape (H, W) or (H, W, C), got {tuple(image.shape)}.")
        return int(image.shape[0]), int(image.shape[1])
    if isinstance(image, torch.Tensor):
        if image.ndim == 2:
            return int(image.shape[0]), int(image.shape[1])
        if image.ndim != 3:
            raise ValueError(f"Expected an image tensor (H, W, C) or (C, H, W), got shape {tuple(image.shape)}.")
        return (int(image.shape[0]), int(image.shape[1])) if _channels_last(image) else tuple(image.shape[1:])
    raise TypeError(f"Unsupported image type {type(image).__name__}.")


def exif_focal_px(image: ImageInput) -> float | None:
    """A photo's focal length in pixels (of the image as shown) from its EXIF 35 mm-equivalent focal length, or None.

    Only files and PIL images carry EXIF; arrays and tensors give None, as do photos without the tag. The
    equivalent focal length relates to a 36 x 24 mm frame, so it scales with the diagonals (see
    `equivalent_focal_px`).
    """
    try:
        if isinstance(image, (str, Path)):
            with Image.open(image) as opened:
                return _focal_px(opened)
        if isinstance(image, Image.Image):
            return _focal_px(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None  # an unreadable file is reported where it is read, not here
    return None


def _focal_px(image: Image.Image) -> float | None:
    exif = image.getexif()
    focal = exif.get_ifd(_EXIF_IFD).get(_FOCAL_35MM) or exif.get(_FOCAL_35MM)
    try:
        focal = float(focal)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(focal) or focal <= 0:
        return None
    width, height = _oriented_size(image)
    return equivalent_focal_px(focal, height, width)


def equivalent_focal_px(focal_35mm: float, height: int, width: int) -> float:
    """A 35 mm-equivalent focal length (mm) -> pixels of an image this size, by the diagonals.

    >>> round(equivalent_focal_px(26.0, 3000, 4000))
    3004
    """
    return focal_35mm * math.hypot(height, width) / EQUIVALENT_FOCAL_DIAGONAL_MM


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as shown: EXIF orientations 5-8 swap the sides."""
    orientation = image.getexif().get(0x0112, 1)
    return (image.height, image.width) if orientation in (5, 6, 7, 8) else (image.width, image.height)


def to_tensor(image: ImageInput) -> torch.Tensor:
    """One image -> float32 (3, H, W) in [0, 1] on its own device (a CPU copy for PIL, numpy and files)."""
    if isinstance(image, (str, Path)):
        return _from_numpy(read_image(image))
    if isinstance(image, Image.Image):
        return _from_numpy(_pil_to_array(ImageOps.exif_transpose(image)))
    if isinstance(image, np.ndarray):
        return _from_numpy(image)
    if isinstance(image, torch.Tensor):
        t = image
        if t.ndim == 2:
            t = t[None]
        elif t.ndim == 3 and _channels_last(t):
            t = t.permute(2, 0, 1)
        if t.ndim != 3:
            raise ValueError(f"Expected an image tensor (H, W, C) or (C, H, W), got shape {tuple(image.shape)}.")
        return _finish(_tensor_to_float(t))
    raise TypeError(f"Unsupported image type {type(image).__name__}.")


def decoded(image: ImageInput) -> ImageInput:
    """A path or PIL image decoded to its numpy pixels (EXIF orientation applied); other inputs as they are."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return _pil_to_array(ImageOps.exif_transpose(image))
    return image


def crop_image(image: ImageInput, top: int, left: int, height: int, width: int) -> ImageInput:
    """The (height, width) region of one image at (top, left), in the image's own form where it can be a view:
    numpy pixels stay numpy (integers keep the fast integer path), tensors stay tensors in their layout; paths
    and PIL images are decoded first."""
    image = decoded(image)
    if isinstance(image, torch.Tensor) and image.ndim == 3 and not _channels_last(image):
        return image[:, top : top + height, left : left + width]
    if isinstance(image, (np.ndarray, torch.Tensor)) and image.ndim in (2, 3):
        return image[top : top + height, left : left + width]
    shape = tuple(image.shape) if hasattr(image, "shape") else type(image).__name__
    raise ValueError(f"Expected one image (H, W), (H, W, C) or (C, H, W), got {shape}.")


def integer_pixels(image: ImageInput) -> np.ndarray | None:
    """uint8 / uint16 pixels (H, W) or (H, W, 3) of a numpy image (alpha dropped), or None for any other input
    (float, bool, torch): what `Preprocessing.from_integers` takes."""
    if not isinstance(image, np.ndarray) or image.dtype not in (np.uint8, np.uint16):
        return None
    if image.ndim == 3 and image.shape[2] in (1, 2):
        image = image[:, :, 0]  # grayscale (+ alpha)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3):
        if image.shape[0] == 0 or image.shape[1] == 0:
            side = f"{image.shape[1]}x{image.shape[0]}"
            raise ValueError(f"Image has an empty side ({side}); give an image at least 1x1 pixels.")
        return image
    return None


def to_image_list(images: ImageInput | Sequence[ImageInput]) -> list[torch.Tensor]:
    """Any supported input -> a list of float32 (3, H, W) tensors in [0, 1]."""
    return [to_tensor(image) for image in split_images(images)]


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
        scale = None
    else:
        raise ValueError(f"Unsupported image dtype {array.dtype}; use uint8, uint16 or float in [0, 1].")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"Expected an image of shape (H, W) or (H, W, C), got {tuple(array.shape)}.")
    if not array.flags.writeable:  # PIL hands out read-only buffers; torch wants to own writable memory
        array = array.copy()
    tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    if scale is None:
        return _finish(tensor.to(torch.float32))
    # Integers are in range by construction: one float copy, divided in place, no checks of the image's size.
    return _channels(tensor.to(torch.float32).div_(scale))


def _tensor_to_float(t: torch.Tensor) -> torch.Tensor:
    if t.dtype == torch.uint8:
        return t.to(torch.float32).div_(255.0)
    if t.dtype == torch.bool:
        return t.to(torch.float32)
    if t.is_floating_point():
        return t.to(torch.float32)
    raise ValueError(f"Unsupported tensor dtype {t.dtype}; use float in [0, 1] or uint8.")


def _channels(chw: torch.Tensor) -> torch.Tensor:
    """CHW -> 3-channel CHW: grayscale repeated (a view), alpha dropped."""
    channels, height, width = chw.shape
    if height == 0 or width == 0:
        raise ValueError(f"Image has an empty side ({width}x{height}); give an image at least 1x1 pixels.")
    if channels in (1, 2):  # grayscale, grayscale + alpha
        return chw[:1].expand(3, -1, -1)
    if channels == 4:  # RGBA: the alpha channel is not part of the scene
        return chw[:3]
    if channels != 3:
        raise ValueError(f"Expected 1, 3 or 4 channels, got {channels}.")
    return chw


def _finish(chw: torch.Tensor) -> torch.Tensor:
    """Float CHW of unknown range -> 3-channel CHW in [0, 1]; copied only when it must be clamped.

    Values a little outside [0, 1] (a resize's overshoot) are clamped; a float image on another scale (0..255,
    0..65535, or ImageNet-normalised) is refused rather than clamped to a white or black picture.
    """
    chw = _channels(chw)
    low, high = (float(v) for v in torch.aminmax(chw))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("Image contains NaN or infinite values; replace them (e.g. torch.nan_to_num) first.")
    if (problem := float_range_problem(low, high)) is not None:
        raise ValueError(problem)
    return chw if low >= 0 and high <= 1 else chw.clamp(0.0, 1.0)


def float_range_problem(low: float, high: float) -> str | None:
    """Why a float image with values in [low, high] is not an image in [0, 1], or None (values within
    FLOAT_TOLERANCE of the range are a resize's overshoot, clamped).

    >>> float_range_problem(0.0, 255.0)
    'Float image values span 0..255: float images must be in [0, 1]. Divide by 255 (or pass the uint8 array).'
    """
    if low >= -FLOAT_TOLERANCE and high <= 1 + FLOAT_TOLERANCE:
        return None
    span = f"Float image values span {low:g}..{high:g}: float images must be in [0, 1]."
    if low >= 0 and high <= 255:
        return f"{span} Divide by 255 (or pass the uint8 array)."
    if low >= 0 and high <= 65535:
        return f"{span} Divide by 65535 for 16-bit values (or pass the uint16 array)."
    return f"{span} Undo the normalisation, or rescale it to [0, 1] yourself (e.g. clamp an HDR image)."
