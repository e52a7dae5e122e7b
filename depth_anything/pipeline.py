"""The stages every image walks through, on every surface: prepare -> predict -> restore -> condition.

    images ──prepare──> NetworkBatch ──predict──> raw prediction ──restore──> depth ──condition──> [0, 1] map
    (any kind)          (network size,            (the family's      (each image's own     (near = white,
                         grouped, normalised)      output, on the     size, or straight     8 / 16 bit)
                                                   model's backend)   at an output crop)

- `prepare` turns inputs into network batches with the family's own resize rule, grouped by the size the
  network sees (photos of one aspect ratio share a batch whatever their resolution).
- `predict` runs a batch on the model's backend (`DepthModel.predict`; float16 overflow is recomputed in
  float32, never returned as inf / NaN).
- `restore` brings each prediction to its image's size, or straight to a requested output crop, so that a 12 MP
  photo conditioned at 1024 px never has a 12 MP depth map built for it.
- `condition` (in `depth_anything.conditioning`) makes the map a ControlNet takes.

`DepthModel.infer` is these stages in a loop; the command line runs prepare in its reading threads, predict in
its main thread and restore / condition in its writing threads; the diffusers detector restores straight at the
control image's size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .conditioning import Size, crop_box, output_size
from .images import ImageInput, decoded, exif_focal_px, image_size, integer_pixels, split_images, to_tensor
from .options import batch_size_problem, check, focal_px_problem, max_size_problem
from .transforms import Preprocessing, resize_prediction


@dataclass(frozen=True)
class PreparedImage:
    """One image ready for the network: its pixels at the network size, and the size to restore to."""

    pixels: torch.Tensor  # (3, h, w) normalised network input, float32
    size: tuple[int, int]  # the image's own (H, W)
    focal_px: float | None = None  # the camera's focal length in the image's pixels, when known

    @property
    def net_size(self) -> tuple[int, int]:
        return tuple(self.pixels.shape[-2:])


@dataclass(frozen=True)
class NetworkBatch:
    """Images that go through the network together: they share the network size.

    Attributes:
        pixels: (N, 3, h, w) normalised network input, float32, on the model's device.
        sizes: each image's own (H, W), what `restore` brings the depth back to.
        indices: where each image was in the caller's input (`prepare` keeps the caller's order this way).
        focal_px: each image's focal length in its own pixels, None where unknown (or empty: none known), for
            networks whose output depends on the camera (Depth Anything 3 metric).
    """

    pixels: torch.Tensor
    sizes: tuple[tuple[int, int], ...]
    indices: tuple[int, ...]
    focal_px: tuple[float | None, ...] = ()

    def __len__(self) -> int:
        return len(self.sizes)

    @property
    def net_size(self) -> tuple[int, int]:
        return tuple(self.pixels.shape[-2:])

    @classmethod
    def collate(cls, images: Sequence[PreparedImage], indices: Sequence[int] | None = None) -> "NetworkBatch":
        """Prepared images of one network size -> one batch (indices default to 0..N-1)."""
        sizes = {image.net_size for image in images}
        if len(sizes) != 1:
            raise ValueError(f"A network batch needs one network size, got {sorted(sizes)}.")
        indices = tuple(range(len(images))) if indices is None else tuple(indices)
        focals = tuple(image.focal_px for image in images)
        return cls(
            torch.stack([image.pixels for image in images]), tuple(i.size for i in images), indices,
            focals if any(f is not None for f in focals) else (),
        )


@dataclass(frozen=True)
class OutputWindow:
    """A part of an image restored at a size of its own: the crop `box` (top, left, height, width) in image
    pixels, produced at `size` (height, width). The whole image at its own size is the identity window."""

    box: tuple[int, int, int, int]
    size: tuple[int, int]


def output_window(height: int, width: int, size: Size, multiple: int = 8) -> OutputWindow:
    """The window that restores an image of this size straight at a conditioning `size` (see
    `depth_anything.conditioning.output_size`): the whole image, or its centred crop of the target's aspect."""
    target = output_size(height, width, size, multiple)
    box = (0, 0, height, width) if size is None else crop_box(height, width, *target)
    return OutputWindow(box, target)


def prepare_image(
    image: ImageInput,
    preprocessing: Preprocessing,
    *,
    input_size: int | None = None,
    max_size: int | None = None,
    device: torch.device | str = "cpu",
    focal_px: float | None = None,
) -> PreparedImage:
    """One image -> its network input at the family's network size (for callers that batch themselves).

    `focal_px` is the camera's focal length in the image's pixels; when None, a photo's EXIF gives it if it can
    (files and PIL images; see `depth_anything.images.exif_focal_px`).

    Example:
        >>> prepared = prepare_image(np.zeros((480, 640, 3), np.uint8), Preprocessing())  # doctest: +SKIP
        >>> prepared.net_size, prepared.size  # doctest: +SKIP
        ((518, 686), (480, 640))
    """
    focal = exif_focal_px(image) if focal_px is None else float(focal_px)  # from the file, before decoding
    image = decoded(image)
    array = integer_pixels(image)
    if array is not None:  # 8 / 16-bit pixels: never a float copy of the whole photo (see from_integers)
        size = tuple(array.shape[:2])
        net_size = preprocessing.net_size(*size, input_size, max_size)
        return PreparedImage(preprocessing.from_integers(array, net_size, device), size, focal)
    pixels = to_tensor(image)
    size = tuple(pixels.shape[-2:])
    net_size = preprocessing.net_size(*size, input_size, max_size)
    return PreparedImage(preprocessing(pixels.to(device)[None], net_size)[0], size, focal)


def prepare(
    images: ImageInput | Sequence[ImageInput],
    preprocessing: Preprocessing,
    *,
    input_size: int | None = None,
    max_size: int | None = None,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    focal_px: float | Sequence[float | None] | None = None,
) -> Iterator[NetworkBatch]:
    """Inputs -> network batches of at most `batch_size` images, grouped by the size the network sees.

    Images are converted one batch at a time, so a long list is never held as float tensors all at once.

    Args:
        images: anything `depth_anything.images` accepts: PIL, numpy, torch, paths, batches, lists.
        preprocessing: the family's rule (`model.family.preprocessing`).
        input_size: the network size parameter (default: the family's own, 518 for v1 / v2).
        max_size: cap on the longest side the network sees (default 3 x input_size).
        batch_size: images per batch.
        device: where the network input is made (the model's device).
        focal_px: the camera's focal length in image pixels, one for all images or one per image (None: from
            each photo's EXIF where it has one); only networks whose output depends on it use it.

    Example:
        >>> for batch in prepare([photo_a, photo_b], model.family.preprocessing):  # doctest: +SKIP
        ...     depths = restore(model.predict(batch), batch)
    """
    check(batch_size_problem(batch_size), max_size_problem(max_size))
    items = split_images(images)
    if not items:
        raise ValueError("No images given: pass at least one image.")
    focals = per_image(focal_px, len(items))
    groups: dict[tuple[int, int], list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(preprocessing.net_size(*image_size(item), input_size, max_size), []).append(index)
    for indices in groups.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            prepared = [
                prepare_image(
                    items[i], preprocessing, input_size=input_size, max_size=max_size, device=device,
                    focal_px=focals[i],
                )
                for i in chunk
            ]
            yield NetworkBatch.collate(prepared, chunk)


def per_image(focal_px: float | Sequence[float | None] | None, count: int) -> list[float | None]:
    """A focal length for all images, or one per image, as a list of `count` (None: unknown)."""
    focals = [focal_px] * count if focal_px is None or isinstance(focal_px, (int, float)) else list(focal_px)
    if len(focals) != count:
        raise ValueError(f"focal_px gives {len(focals)} focal lengths for {count} images; give one, or one per image.")
    check(*(focal_px_problem(focal) for focal in focals))
    return focals


def restore(
    prediction: torch.Tensor,
    sizes: NetworkBatch | Sequence[tuple[int, int]],
    windows: Sequence[OutputWindow | None] | None = None,
) -> list[torch.Tensor]:
    """Raw prediction (N, h, w) -> float32 (H, W) CPU maps, one per image.

    Args:
        prediction: the predict stage's output for a batch.
        sizes: the batch itself, or each image's own (H, W).
        windows: None restores each map at its image's size (bilinear, align_corners=True, as the official
            code). A window restores a crop of the image straight at its output size: the map is resized once to
            about the output's scale, then cropped and resized (antialiased) to the exact size, so no map of the
            photo's full size is made for a small control image.
    """
    sizes = sizes.sizes if isinstance(sizes, NetworkBatch) else tuple(tuple(s) for s in sizes)
    if prediction.shape[0] != len(sizes):
        raise ValueError(f"prediction has {prediction.shape[0]} maps for {len(sizes)} images.")
    windows = [None] * len(sizes) if windows is None else list(windows)
    out = []
    for i, (size, window) in enumerate(zip(sizes, windows)):
        if window is None or (window.box == (0, 0, *size) and window.size == size):
            out.append(resize_prediction(prediction[i : i + 1], size)[0].cpu())
        else:
            out.append(_restore_window(prediction[i], size, window).cpu())
    return out


def _restore_window(prediction: torch.Tensor, size: tuple[int, int], window: OutputWindow) -> torch.Tensor:
    top, left, height, width = window.box
    scale = max(window.size[0] / height, window.size[1] / width)  # output pixels per image pixel
    scaled = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
    depth = resize_prediction(prediction[None], scaled)[0]
    y0, x0 = round(top * scale), round(left * scale)
    y1 = min(scaled[0], max(y0 + 1, round((top + height) * scale)))
    x1 = min(scaled[1], max(x0 + 1, round((left + width) * scale)))
    crop = depth[y0:y1, x0:x1]
    if tuple(crop.shape) == tuple(window.size):
        return crop.contiguous()
    return F.interpolate(crop[None, None], size=window.size, mode="bilinear", align_corners=False, antialias=True)[0, 0]


def stack_if_same_size(depths: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
    """(B, H, W) when every map has one size, else the list: `infer`'s return convention."""
    if all(d.shape == depths[0].shape for d in depths):
        return torch.stack(depths)
    return depths
