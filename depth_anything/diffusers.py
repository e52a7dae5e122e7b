"""Depth Anything as ControlNet conditioning for diffusers: a controlnet_aux-style detector and `control_image`.

Nothing here imports diffusers (the `diffusers` extra is only needed to run pipelines), and `import depth_anything`
does not import this module.

Conventions (what depth ControlNets were trained on): 3 identical channels, near = white, values in [0, 1].
A few ControlNets want far = white; `control_image` and the detector look the ControlNet up by name in
`KNOWN_DEPTH_CONTROLNETS` and invert for those, so the user does not have to know. Sizes: SD1.5 / SDXL work in
multiples of 8 pixels (the VAE downsamples by 8), Flux and SD3 in multiples of 16 (8 x 2 x 2 latent patches);
requested sizes are checked against the rule of the named ControlNet (8 when none is named).

Example:
    >>> from depth_anything.diffusers import DepthAnythingDetector  # doctest: +SKIP
    >>> detector = DepthAnythingDetector.from_pretrained("depth_anything_v2_vitl")  # doctest: +SKIP
    >>> sdxl_depth = "diffusers/controlnet-depth-sdxl-1.0"
    >>> control = detector(photo, image_resolution=768, controlnet=sdxl_depth)  # doctest: +SKIP
    >>> pipe(prompt, image=control).images[0]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .conditioning import DepthInput, Size, condition, depth_maps, size_problem
from .controlnets import KNOWN_DEPTH_CONTROLNETS, DepthControlNet, control_rules, find_depth_controlnet
from .images import ImageInput, split_images, to_tensor
from .model import DepthModel
from .options import check, input_size_problem
from .pipeline import output_window
from .postprocess import to_uint8

__all__ = [
    "KNOWN_DEPTH_CONTROLNETS",
    "OUTPUT_TYPES",
    "DepthAnythingDetector",
    "DepthControlNet",
    "control_image",
    "find_depth_controlnet",
]

OUTPUT_TYPES = ("pil", "np", "pt")


def _check_output_type(output_type: str) -> None:
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"Unknown output_type {output_type!r}; use one of {', '.join(map(repr, OUTPUT_TYPES))}.")


def _to_output(map01: torch.Tensor, output_type: str) -> Image.Image | np.ndarray | torch.Tensor:
    if output_type == "pil":
        gray = to_uint8(map01)
        return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2), mode="RGB")
    if output_type == "np":
        return map01[:, :, None].expand(-1, -1, 3).numpy().copy()
    return map01[None].expand(3, -1, -1).contiguous()


def _package(maps01: list[torch.Tensor], kind: str, output_type: str):
    """Outputs in the layout diffusers reads: one PIL image, or arrays with a batch dimension.

    diffusers counts a tensor's or array's first dimension as the batch, so one image goes out as (1, 3, H, W) /
    (1, H, W, 3), a batch as (B, ...), and a list as a list of (3, H, W) / (H, W, 3), which diffusers stacks.
    """
    outputs = [_to_output(m, output_type) for m in maps01]
    if kind == "list" or output_type == "pil":
        return outputs[0] if kind == "single" else outputs
    return torch.stack(outputs) if output_type == "pt" else np.stack(outputs)


def control_image(
    depth: DepthInput,
    size: Size = None,
    normalize: str = "per_image",
    invert: bool | None = None,
    metric: bool = False,
    controlnet: Any = None,
    output_type: str = "pil",
    *,
    gamma: float = 1.0,
    kind: str | None = None,
):
    """Depth from `DepthModel.infer` -> the control image a depth ControlNet (or FLUX.1-Depth-dev) expects.

    The arguments are those of `depth_anything.condition` (the one conditioning stage), laid out as diffusers
    reads images.

    Args:
        depth: (H, W) -> one image; (B, H, W) -> a batch; a list of (H, W) maps (sizes may differ) -> a list.
        size: None keeps each map's size; an int sets the short side (the long side follows the aspect ratio,
            rounded to the size multiple); (width, height) gives that size exactly, centre-cropping to its aspect
            ratio instead of stretching. Sides must be multiples of 8 (16 for Flux / SD3 ControlNets).
        normalize: "per_image" (each map's own min-max), "batch" (one range across all maps: no flicker between
            video frames) or "percentile" (each map's 2-98 % range, robust to outliers).
        invert: None picks from `controlnet` (far = white for the ControlNets marked so in
            `KNOWN_DEPTH_CONTROLNETS`, near = white otherwise); True / False forces it.
        metric: the depth is in metres (a metric model, `model.is_metric`); it is turned into inverse depth so
            that near is white, like the relative models' disparity. Same as kind="metric_depth".
        controlnet: the hub id, local path, ControlNet model or pipeline the image is for; sets `invert` and the
            size multiple. An unknown name assumes near = white and warns.
        output_type: "pil" (RGB, 8-bit), "pt" (float32 (B, 3, H, W) in [0, 1]) or "np" (float32 (B, H, W, 3) in
            [0, 1]: diffusers reads numpy images as floats in [0, 1], not uint8).
        gamma: applied after normalisation: above 1 darkens the far range.
        kind: what the values are (`model.output_kind`: "disparity", "relative_depth", "metric_depth");
            overrides `metric`.

    Returns:
        3 identical channels, laid out as diffusers reads them: for (H, W) depth one PIL image or a batch of one
        ((1, 3, H, W) / (1, H, W, 3)); for (B, H, W) a list of PIL images or a batch of B; for a list, a list of
        PIL images, (3, H, W) tensors or (H, W, 3) arrays.

    Example:
        >>> control_image(torch.tensor([[0.0, 2.0], [1.0, 4.0]]), output_type="pt")[0, 0].tolist()
        [[0.0, 0.5], [0.25, 1.0]]
    """
    _check_output_type(output_type)
    maps, layout = depth_maps(depth)
    kind = kind or ("metric_depth" if metric else "disparity")
    maps01 = condition(
        maps, kind=kind, normalize=normalize, invert=invert, gamma=gamma, controlnet=controlnet, size=size
    )
    return _package(maps01, layout, output_type)


# ---------------------------------------------------------------------------------------------------- detector


def _input_kind(images: Any) -> str:
    if isinstance(images, (list, tuple)):
        return "list"
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        return "batch"
    return "single"


def _name_bad_image(images: Sequence[Any], error: Exception) -> Exception:
    """The same error, saying which image of a list it came from."""
    for index, item in enumerate(images):
        try:
            to_tensor(item) if not isinstance(item, (list, tuple)) else split_images(item)
        except (TypeError, ValueError) as item_error:
            return type(item_error)(f"Image {index} of {len(images)}: {item_error}")
    return error


class DepthAnythingDetector:
    """Depth Anything with the call shape of controlnet_aux's detectors, for diffusers depth ControlNets.

    Differences from controlnet_aux: the output keeps the input's aspect ratio (no rounding of both sides to 64),
    can be given an exact (width, height), a list in gives a list out (batched: one network call per group of
    images the network sees at one size), and `controlnet=` sets the polarity and size rule of the model it is
    for. The depth is restored straight at the control image's size: a 12 MP photo never gets a 12 MP map.

    With a temporal model (Video Depth Anything) a list or batch is the frames of one clip: they go through
    `infer_video` together and come out with one range across the clip, so the control video does not flicker.

    Example:
        >>> detector = DepthAnythingDetector.from_pretrained("depth_anything_v2_vitl")  # doctest: +SKIP
        >>> control = detector(photo, image_resolution=512)  # PIL, short side 512  # doctest: +SKIP
        >>> frames = detector(video_frames, normalize="batch", output_type="pt")  # doctest: +SKIP
        >>> video = DepthAnythingDetector.from_pretrained("video_depth_anything_vits")  # doctest: +SKIP
        >>> controls = video(video_frames, image_resolution=512)  # one clip, temporally consistent  # doctest: +SKIP
    """

    def __init__(self, model: DepthModel):
        if not isinstance(model, DepthModel):
            raise TypeError(f"Expected a DepthAnything model (a DepthModel), got {type(model).__name__}.")
        self.model = model.eval()

    @classmethod
    def from_pretrained(cls, source: str | Path, **options) -> "DepthAnythingDetector":
        """Load a checkpoint or known model name; `options` are those of `DepthModel.from_pretrained`
        (family, device, dtype, cache_dir, backend).

        `backend` ("eager", "compile", "onnx", "tensorrt" or "auto") changes only where the network runs: the
        control image is the same to float rounding.

        Example:
            >>> detector = DepthAnythingDetector.from_pretrained(  # doctest: +SKIP
            ...     "depth_anything_v2_vits", device="cuda", backend="tensorrt")
            >>> control = detector(photo, image_resolution=1024)  # doctest: +SKIP
        """
        return cls(DepthModel.from_pretrained(source, **options))

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "DepthAnythingDetector":
        """Move the model, like controlnet_aux's `detector.to("cuda")`; returns self."""
        self.model.to(device=device, dtype=dtype)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model.extra_repr()})"

    def __call__(
        self,
        image: ImageInput | Sequence[ImageInput],
        detect_resolution: int | None = None,
        image_resolution: int | None = None,
        output_type: str = "pil",
        *,
        size: tuple[int, int] | None = None,
        normalize: str | None = None,
        invert: bool | None = None,
        gamma: float = 1.0,
        controlnet: Any = None,
        tiled: bool | str = False,
        tile: int | None = None,
        overlap: int | None = None,
        max_size: int | None = None,
        batch_size: int = 8,
        focal_px: float | Sequence[float | None] | None = None,
    ):
        """Control image(s) for one image, a batch or a list.

        Args:
            image: a PIL image, numpy HWC, torch (H, W, 3) / (3, H, W), a batch (B, H, W, 3) / (B, 3, H, W), an
                image file's path, or a list of these (sizes may differ). For a temporal model, the frames of
                one clip in order (one size).
            detect_resolution: the side the network sees, a multiple of 14 (None: the family's own, 518 for v1 /
                v2's short side, 504 for Depth Anything 3's longest); larger sees finer detail. Not the output size.
            image_resolution: short side of the output, a multiple of 8 (16 for Flux / SD3); the long side
                follows the input's aspect ratio. None (and no `size`) keeps the input's size.
            output_type: "pil" (RGB 8-bit), "np" (float32 (B, H, W, 3) in [0, 1]) or "pt" (float32 (B, 3, H, W) in
                [0, 1]); one image is a batch of one, as diffusers expects.
            size: an exact output (width, height) instead of `image_resolution`; the depth is centre-cropped to
                its aspect ratio, never stretched.
            normalize: "per_image", "batch" (one range across all images: no flicker in video) or "percentile".
                None (the default): "per_image", or "batch" for a temporal model's clip.
            invert: force far = white (True) or near = white (False); None picks from `controlnet`.
            gamma: applied after normalisation: above 1 darkens the far range, below 1 lifts it.
            controlnet: hub id, path, ControlNet model or pipeline the image is for (see `control_image`).
            tiled: True for high-resolution depth from overlapping native-resolution tiles (finer detail on large
                photos, no seams), "auto" to tile only images large enough to gain; see `DepthModel.infer`. A
                temporal model's clip is tiled in time too (`VideoDepthAnything.infer_video`).
            tile, overlap: tile side (a multiple of 14) and overlap in pixels, for `tiled`.
            max_size: cap on the longest side the network sees (default 3 x detect_resolution).
            batch_size: images per network call.
            focal_px: the camera's focal length in image pixels, for Depth Anything 3 metric (None: from each
                photo's EXIF where it has one). The sky of models with a sky head is black (far) in every map.

        Returns:
            "pil": one image, or a list for a list or batch. "pt" / "np": a batch ((1, ...) for one image), or for
            a list a list of (3, H, W) / (H, W, 3). Every form can be passed to a diffusers pipeline as `image=`.
        """
        _check_output_type(output_type)
        if detect_resolution is not None:
            check(input_size_problem(detect_resolution, "detect_resolution", maximum=None))
        if image_resolution is not None and size is not None:
            raise ValueError("Give image_resolution (short side) or size (width, height), not both.")
        target = image_resolution if size is None else size
        rules = control_rules(controlnet, invert)
        check(size_problem(target, rules.multiple, rules.why))
        temporal = self.model.family.temporal
        if normalize is None:
            normalize = "batch" if temporal else "per_image"
        options = dict(kind=self.model.output_kind, normalize=normalize, invert=rules.invert, gamma=gamma)
        try:
            if temporal:
                depth = self.model.infer_video(
                    split_images(image), input_size=detect_resolution, max_size=max_size, batch_size=batch_size,
                    tiled=tiled, tile=tile, overlap=overlap,
                )
                maps = condition(list(depth), size=target, **options)
            elif tiled:
                depth = self.model.infer(
                    image, input_size=detect_resolution, max_size=max_size, batch_size=batch_size, tiled=tiled,
                    tile=tile, overlap=overlap, focal_px=focal_px, return_sky=self.model.has_sky,
                )
                depth, sky = depth if self.model.has_sky else (depth, None)
                maps = condition(list(depth), size=target, far_mask=None if sky is None else list(sky), **options)
            else:
                depth, sky = self._restored(image, detect_resolution, max_size, batch_size, target, rules, focal_px)
                maps = condition(depth, far_mask=sky, **options)
        except (TypeError, ValueError) as error:
            if isinstance(image, (list, tuple)):
                raise _name_bad_image(image, error) from error
            raise
        return _package(maps, _input_kind(image), output_type)

    def _restored(self, image, detect_resolution, max_size, batch_size, target, rules, focal_px):
        """prepare -> predict -> restore, each map straight at its control image's size: (depth maps, sky masks
        or None)."""
        items = split_images(image)
        maps: list[torch.Tensor | None] = [None] * len(items)
        skies: list[torch.Tensor | None] = [None] * len(items)
        model = self.model
        batches = model.prepare(
            items, input_size=detect_resolution, max_size=max_size, batch_size=batch_size, focal_px=focal_px
        )
        for batch in batches:
            windows = [output_window(*hw, target, rules.multiple) for hw in batch.sizes]
            depth, sky = model.predict_maps(batch)
            for index, restored in zip(batch.indices, model.restore(depth, batch, windows)):
                maps[index] = restored
            if sky is not None:
                for index, restored in zip(batch.indices, model.restore(sky, batch, windows)):
                    skies[index] = model.sky_mask(restored)
        return maps, (skies if model.has_sky else None)
