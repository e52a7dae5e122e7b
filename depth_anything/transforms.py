"""Official pre-processing rules: the size the network sees, the resize filter and the normalisation.

A model family declares its rule as a `Preprocessing`; the prepare stage applies it in torch on the model's
device. Depth Anything v1 / v2 (and Video Depth Anything) resize float RGB in [0, 1] (no uint8 rounding) with
bicubic so that the short side reaches `input_size` in multiples of 14, and normalise with the ImageNet
statistics; the prediction goes back to the image size with bilinear, align_corners=True.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from .options import DEFAULT_INPUT_SIZE, MAX_SIZE_FACTOR, PATCH, check, input_size_problem, max_size_problem

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _round_half_even(x: float) -> int:
    # The official code rounds with numpy, which rounds halves to even; Python's round() does the same.
    return int(round(x))


def processing_size(
    height: int, width: int, input_size: int = DEFAULT_INPUT_SIZE, max_size: int | None = None
) -> tuple[int, int]:
    """The (height, width) an image of this size is resized to before a v1 / v2 network.

    The official rule: scale so that the short side is at least `input_size`, round each side to a multiple of
    14 (up if rounding would fall below `input_size`). Then, unlike the official code, the longest side is capped
    at `max_size` (default 3 x `input_size`) so that thin images do not explode (600x100 would become 3108x518);
    a capped image keeps its aspect ratio as closely as multiples of 14 allow.

    >>> processing_size(200, 300)
    (518, 784)
    """
    if height < 1 or width < 1:
        raise ValueError(f"Image has an empty side ({width}x{height}); give an image at least 1x1 pixels.")
    check(input_size_problem(input_size, maximum=None), max_size_problem(max_size))
    if max_size is None:
        max_size = MAX_SIZE_FACTOR * input_size

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


def normalize_for_model(
    batch: torch.Tensor,
    size: tuple[int, int],
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> torch.Tensor:
    """float (N, 3, H, W) in [0, 1] -> resized to `size` with bicubic and normalised, in float32."""
    batch = batch.to(torch.float32)
    if tuple(batch.shape[-2:]) != tuple(size):
        batch = F.interpolate(batch, size=size, mode="bicubic", align_corners=False)
    mean_t = torch.tensor(mean, device=batch.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=batch.device).view(1, -1, 1, 1)
    return (batch - mean_t) / std_t


def resize_prediction(prediction: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) network output -> float32 (N, H, W) at the image size (bilinear, align_corners=True as v2)."""
    prediction = prediction.to(torch.float32)
    if tuple(prediction.shape[-2:]) == tuple(size):
        return prediction
    return F.interpolate(prediction[:, None], size=size, mode="bilinear", align_corners=True)[:, 0]


@dataclass(frozen=True)
class Preprocessing:
    """A family's official pre-processing; this one is v1 / v2's (short side to `input_size`, bicubic, ImageNet).

    A family with another rule subclasses it and overrides `net_size` and / or `__call__`.

    Attributes:
        input_size: the family's default `input_size`.
        mean, std: the normalisation applied after resizing.

    Example:
        >>> Preprocessing().net_size(480, 640)
        (518, 686)
    """

    input_size: int = DEFAULT_INPUT_SIZE
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    methods: ClassVar[tuple[str, ...]] = ()  # resize methods `with_method` offers (v1 / v2 have one rule)

    def with_method(self, method: str | None) -> "Preprocessing":
        """This rule with another of its resize methods (`methods`); None keeps it."""
        if method is None:
            return self
        raise ValueError(f"This family's pre-processing has no resize method {method!r}; it has one rule.")

    def net_size(
        self, height: int, width: int, input_size: int | None = None, max_size: int | None = None
    ) -> tuple[int, int]:
        """The (height, width) the network sees for an image of this size (see `processing_size`)."""
        return processing_size(height, width, self.input_size if input_size is None else input_size, max_size)

    def __call__(self, batch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """float (N, 3, H, W) in [0, 1] -> the network input (N, 3, *size), float32 on the batch's device."""
        return normalize_for_model(batch, size, self.mean, self.std)

    def from_integers(
        self, array: np.ndarray, size: tuple[int, int], device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """uint8 / uint16 pixels (H, W) or (H, W, 3) -> the network input (3, *size), as `self` gives it for the
        float image, without a float copy of the whole image: one channel at a time is made float, resized and
        normalised (the same values, bit for bit, with a third of the memory: 1.2 GB less for 100 megapixels).

        A subclass with its own `__call__` gets that rule on the float image instead.
        """
        if type(self).__call__ is not Preprocessing.__call__:
            from .images import to_tensor

            return self(to_tensor(array).to(device)[None], size)[0]
        scale = 255.0 if array.dtype == np.uint8 else 65535.0
        planes = [array] if array.ndim == 2 else [array[:, :, c] for c in range(array.shape[2])]
        resized = [
            F.interpolate(_plane(plane, device, scale), size=size, mode="bicubic", align_corners=False)
            if tuple(plane.shape) != tuple(size)
            else _plane(plane, device, scale)
            for plane in planes
        ]
        rgb = torch.cat(resized * 3 if len(resized) == 1 else resized, dim=1)
        return normalize_for_model(rgb, size, self.mean, self.std)[0]


def _plane(plane: np.ndarray, device, scale: float) -> torch.Tensor:
    """One integer channel (H, W) -> float32 (1, 1, H, W) in [0, 1] on `device` (converted there)."""
    tensor = torch.from_numpy(np.ascontiguousarray(plane))
    if tensor.dtype == torch.uint16:
        tensor = tensor.to(torch.int32)  # torch moves and converts uint16 poorly; int32 holds every value
    return tensor.to(device).to(torch.float32).div_(scale)[None, None]


def area_weights(source: int, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, weights), each (target, taps): output pixel i is the mean of the source pixels its span covers,
    each weighted by the part it covers (OpenCV's INTER_AREA when shrinking)."""
    scale = source / target
    taps = math.ceil(scale) + 1
    start = torch.arange(target, dtype=torch.float64) * scale  # output pixel i covers [start, start + scale)
    first = start.floor()
    indices = first[:, None] + torch.arange(taps, dtype=torch.float64)
    covered = (torch.minimum(indices + 1, start[:, None] + scale) - torch.maximum(indices, start[:, None])).clamp_min(0)
    return indices.clamp_max(source - 1).long(), (covered / scale).float()


def area_resize(batch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) shrunk to `size` by pixel-area averaging (exact coverage, as OpenCV's INTER_AREA), one axis at
    a time, each output pixel summing only the few source pixels it covers."""
    for axis, target in ((-1, size[1]), (-2, size[0])):
        source = batch.shape[axis]
        if source == target:
            continue
        if target > source:
            raise ValueError(f"area_resize only shrinks; got {source} -> {target} pixels.")
        indices, weights = (t.to(batch.device) for t in area_weights(source, target))
        weights = weights.to(batch.dtype)
        moved = batch.movedim(axis, -1)
        out = moved[..., indices[:, 0]] * weights[:, 0]
        for tap in range(1, indices.shape[1]):
            out += moved[..., indices[:, tap]] * weights[:, tap]
        batch = out.movedim(-1, axis)
    return batch
