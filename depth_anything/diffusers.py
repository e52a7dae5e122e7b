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

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .model import DepthAnything
from .postprocess import NORMALIZE_MODES, normalize as normalize_depth, to_uint8
from .transforms import PATCH, ImageInput, to_image_list

__all__ = [
    "KNOWN_DEPTH_CONTROLNETS",
    "OUTPUT_TYPES",
    "DepthAnythingDetector",
    "DepthControlNet",
    "control_image",
    "find_depth_controlnet",
]

OUTPUT_TYPES = ("pil", "np", "pt")
DEFAULT_MULTIPLE = 8  # SD1.5 / SDXL: the VAE downsamples by 8

DepthInput = Union[torch.Tensor, np.ndarray, Sequence[Union[torch.Tensor, np.ndarray]]]
Size = Union[int, tuple[int, int], None]


@dataclass(frozen=True)
class DepthControlNet:
    """What a depth-conditioned model expects of its control image.

    Attributes:
        repo_id: the Hugging Face id; local folders and files are recognised by its last part or by `files`.
        far_is_white: trained on depth (far = bright) rather than disparity (near = bright).
        multiple: output sides must be multiples of this many pixels.
        note: the base model and where the convention comes from.
        files: single-file names (without suffix) the weights are distributed under, e.g. for ComfyUI.
    """

    repo_id: str
    far_is_white: bool
    multiple: int
    note: str
    files: tuple[str, ...] = ()


KNOWN_DEPTH_CONTROLNETS: tuple[DepthControlNet, ...] = (
    DepthControlNet("lllyasviel/control_v11f1p_sd15_depth", False, 8, "SD1.5, ControlNet 1.1 depth (fixed)",
                    ("control_v11f1p_sd15_depth",)),
    DepthControlNet("lllyasviel/control_v11p_sd15_depth", False, 8, "SD1.5, ControlNet 1.1 depth",
                    ("control_v11p_sd15_depth",)),
    DepthControlNet("lllyasviel/sd-controlnet-depth", False, 8, "SD1.5, ControlNet 1.0 depth (MiDaS)",
                    ("control_sd15_depth",)),
    DepthControlNet("diffusers/controlnet-depth-sdxl-1.0", False, 8, "SDXL"),
    DepthControlNet("diffusers/controlnet-depth-sdxl-1.0-mid", False, 8, "SDXL"),
    DepthControlNet("diffusers/controlnet-depth-sdxl-1.0-small", False, 8, "SDXL"),
    DepthControlNet("diffusers/controlnet-zoe-depth-sdxl-1.0", False, 8, "SDXL (ZoeDepth disparity maps)"),
    DepthControlNet("black-forest-labs/FLUX.1-Depth-dev", False, 16,
                    "Flux: FluxControlPipeline, the control image is VAE-encoded (trained on Depth Anything maps)",
                    ("flux1-depth-dev",)),
    DepthControlNet("black-forest-labs/FLUX.1-Depth-dev-lora", False, 16, "Flux: FLUX.1-dev + the depth LoRA",
                    ("flux1-depth-dev-lora",)),
    DepthControlNet("InstantX/FLUX.1-dev-Controlnet-Union", False, 16, "Flux ControlNet, depth mode"),
    DepthControlNet("Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro", False, 16, "Flux ControlNet, depth mode"),
    DepthControlNet("Shakker-Labs/FLUX.1-dev-ControlNet-Depth", False, 16, "Flux ControlNet"),
    DepthControlNet("XLabs-AI/flux-controlnet-depth-diffusers", False, 16, "Flux ControlNet (XLabs)"),
    # ComfyUI feeds this model `1 - image` (comfy/controlnet.py, load_controlnet_sd35, control_type 2): it was
    # trained far = white. diffusers' StableDiffusion3ControlNetPipeline passes the image unchanged, so we invert.
    DepthControlNet("stabilityai/stable-diffusion-3.5-large-controlnet-depth", True, 16,
                    "SD3.5 Large ControlNet depth: trained far = white", ("sd3.5_large_controlnet_depth",)),
)


def _controlnet_name(controlnet: Any) -> str:
    """A hub id, path or file name for a name, path, ControlNet model or pipeline."""
    if isinstance(controlnet, (str, Path)):
        return str(controlnet)
    inner = getattr(controlnet, "controlnet", None)  # a ControlNet pipeline: look at its ControlNet
    if inner is not None and inner is not controlnet:
        if isinstance(inner, (list, tuple)) or hasattr(inner, "nets"):
            raise ValueError("This pipeline has several ControlNets: pass the depth ControlNet itself as controlnet=.")
        return _controlnet_name(inner)
    config = getattr(controlnet, "config", None)
    name = getattr(config, "_name_or_path", None) or getattr(controlnet, "name_or_path", None)
    if not name:
        raise TypeError(
            f"Cannot tell which ControlNet {type(controlnet).__name__} is: pass its hub id or path, e.g. "
            "controlnet='diffusers/controlnet-depth-sdxl-1.0'."
        )
    return str(name)


def find_depth_controlnet(controlnet: Any) -> DepthControlNet | None:
    """The `KNOWN_DEPTH_CONTROLNETS` entry for a hub id, a local folder or file, a ControlNet model or a pipeline.

    Local copies are recognised by the repository's name as a path part (also in the Hugging Face cache's
    `models--org--name` form) or by a known single-file name.

    >>> find_depth_controlnet("stabilityai/stable-diffusion-3.5-large-controlnet-depth").far_is_white
    True
    >>> find_depth_controlnet("/models/controlnet/control_v11f1p_sd15_depth.safetensors").multiple
    8
    >>> find_depth_controlnet("my-own/controlnet") is None
    True
    """
    name = _controlnet_name(controlnet).strip().replace("\\", "/").rstrip("/").lower()
    parts = name.split("/")
    stem = parts[-1].rsplit(".", 1)[0] if parts[-1].endswith((".safetensors", ".pth", ".bin", ".ckpt")) else None
    for entry in KNOWN_DEPTH_CONTROLNETS:
        repo = entry.repo_id.lower()
        if name == repo or name.endswith("/" + repo):
            return entry
        if repo.split("/")[1] in parts or "models--" + repo.replace("/", "--") in parts:
            return entry
        if stem is not None and stem in entry.files:
            return entry
    return None


def _resolve_controlnet(controlnet: Any, invert: bool | None) -> tuple[bool, int, str]:
    """(invert, size multiple, why that multiple) for a ControlNet; an explicit `invert` wins."""
    default_why = "diffusers' VAE works in 8-pixel steps"
    if controlnet is None:
        return bool(invert), DEFAULT_MULTIPLE, default_why
    entry = find_depth_controlnet(controlnet)
    if entry is None:
        if invert is None:
            warnings.warn(
                f"ControlNet {_controlnet_name(controlnet)!r} is not in depth_anything.diffusers."
                "KNOWN_DEPTH_CONTROLNETS; assuming near = white, the convention of depth ControlNets. "
                "Pass invert=True if it was trained far = white (invert=False silences this warning).",
                UserWarning,
                stacklevel=3,
            )
        return bool(invert), DEFAULT_MULTIPLE, default_why
    why = f"{entry.repo_id} works in {entry.multiple}-pixel steps"
    return (entry.far_is_white if invert is None else bool(invert)), entry.multiple, why


# ----------------------------------------------------------------------------------------------------- sizes


def _check_output_type(output_type: str) -> None:
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"Unknown output_type {output_type!r}; use one of {', '.join(map(repr, OUTPUT_TYPES))}.")


def _check_size(size: Size, multiple: int, why: str) -> None:
    if size is None:
        return
    if isinstance(size, bool) or not isinstance(size, (int, tuple, list)):
        raise TypeError(f"size must be an int (short side) or a (width, height) pair, got {size!r}.")
    sides = [size] if isinstance(size, int) else list(size)
    pair_ok = isinstance(size, int) or len(sides) == 2
    if not pair_ok or not all(isinstance(s, int) and not isinstance(s, bool) for s in sides):
        raise TypeError(f"size must be an int (short side) or a (width, height) pair of ints, got {size!r}.")
    for side in sides:
        if side < multiple or side % multiple:
            below = side // multiple * multiple
            hint = f"use {below} or {below + multiple}" if below else f"use {multiple}"
            raise ValueError(f"Output sides must be positive multiples of {multiple} ({why}); got {side}, {hint}.")


def _output_size(height: int, width: int, size: Size, multiple: int) -> tuple[int, int]:
    """(height, width) of the control image for a depth map of this size.

    None keeps the map's size; an int is the short side, the long side following the aspect ratio rounded to the
    nearest multiple; a (width, height) pair is used as given.

    >>> _output_size(750, 1000, 512, 8)
    (512, 680)
    """
    if size is None:
        return height, width
    if isinstance(size, int):
        scale = size / min(height, width)
        long_side = max(multiple, round(max(height, width) * scale / multiple) * multiple)
        return (size, long_side) if height <= width else (long_side, size)
    return int(size[1]), int(size[0])


def _crop_to_aspect(depth: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Centre crop of (H, W) with the aspect ratio height:width, so resizing does not distort the scene."""
    src_h, src_w = depth.shape
    if src_w * height > width * src_h:  # too wide
        keep = max(1, min(src_w, round(src_h * width / height)))
        left = (src_w - keep) // 2
        return depth[:, left : left + keep]
    keep = max(1, min(src_h, round(src_w * height / width)))
    top = (src_h - keep) // 2
    return depth[top : top + keep, :]


def _resize(depth01: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if tuple(depth01.shape) == (height, width):
        return depth01
    # Antialiased bilinear: no aliasing when shrinking, and its weights are non-negative, so no overshoot.
    out = F.interpolate(depth01[None, None], size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return out[0, 0].clamp(0.0, 1.0)


# ---------------------------------------------------------------------------------------------- conditioning


def _as_maps(depth: DepthInput) -> tuple[list[torch.Tensor], str]:
    """Depth in any accepted form -> list of float32 (H, W) CPU tensors, and the input's kind."""
    if isinstance(depth, (list, tuple)):
        maps = []
        for index, item in enumerate(depth):
            item = torch.as_tensor(np.asarray(item) if not isinstance(item, torch.Tensor) else item)
            if item.ndim == 3 and item.shape[0] == 1:
                item = item[0]
            if item.ndim != 2:
                raise ValueError(f"Depth map {index} has shape {tuple(item.shape)}; each must be (H, W).")
            maps.append(item)
        kind = "list"
    elif isinstance(depth, (torch.Tensor, np.ndarray)):
        tensor = torch.as_tensor(depth) if isinstance(depth, np.ndarray) else depth
        if tensor.ndim == 2:
            maps, kind = [tensor], "single"
        elif tensor.ndim == 3:
            maps, kind = list(tensor), "batch"
        else:
            raise ValueError(f"Expected depth of shape (H, W) or (B, H, W), got {tuple(tensor.shape)}.")
    else:
        raise TypeError(
            f"Expected depth as a torch tensor, a numpy array or a list of them, got {type(depth).__name__} "
            "(to make a control image from a photo, use DepthAnythingDetector)."
        )
    if not maps:
        raise ValueError("No depth maps given.")
    for index, item in enumerate(maps):
        if item.numel() == 0:
            raise ValueError(f"Depth map {index} is empty ({tuple(item.shape)}).")
        if not (item.is_floating_point() or item.dtype in (torch.uint8, torch.int16, torch.int32, torch.int64)):
            raise TypeError(f"Depth map {index} has dtype {item.dtype}; give float or integer depth.")
    return [m.detach().to("cpu", torch.float32) for m in maps], kind


def _normalize_maps(maps: list[torch.Tensor], mode: str, invert: bool, metric: bool) -> list[torch.Tensor]:
    """`normalize` over a list of maps whose sizes may differ; "batch" shares one range across all of them."""
    if len({tuple(m.shape) for m in maps}) == 1:
        return list(normalize_depth(torch.stack(maps), mode, invert=invert, metric=metric))
    if mode != "batch":
        return [normalize_depth(m, mode, invert=invert, metric=metric) for m in maps]
    # One range across maps of different sizes: normalise them as one long map, then cut it back apart.
    joint = torch.cat([m.flatten() for m in maps])[None, None]
    joint = normalize_depth(joint, "per_image", invert=invert, metric=metric)
    pieces = torch.split(joint.flatten(), [m.numel() for m in maps])
    return [piece.view(m.shape) for piece, m in zip(pieces, maps)]


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


def _conditioning(
    maps: list[torch.Tensor],
    *,
    size: Size,
    normalize: str,
    invert: bool | None,
    metric: bool,
    controlnet: Any,
) -> list[torch.Tensor]:
    """Raw depth maps -> near-white [0, 1] maps at the requested size (crop to aspect, normalise, resize)."""
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"Unknown normalize {normalize!r}; use one of {', '.join(map(repr, NORMALIZE_MODES))}.")
    invert, multiple, why = _resolve_controlnet(controlnet, invert)
    _check_size(size, multiple, why)
    sizes = [_output_size(*m.shape, size, multiple) for m in maps]
    cropped = [_crop_to_aspect(m, h, w) if size is not None else m for m, (h, w) in zip(maps, sizes)]
    maps01 = _normalize_maps(cropped, normalize, invert, metric)
    return [_resize(m, h, w) for m, (h, w) in zip(maps01, sizes)]


def control_image(
    depth: DepthInput,
    size: Size = None,
    normalize: str = "per_image",
    invert: bool | None = None,
    metric: bool = False,
    controlnet: Any = None,
    output_type: str = "pil",
):
    """Depth from `DepthAnything.infer` -> the control image a depth ControlNet (or FLUX.1-Depth-dev) expects.

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
            that near is white, like the relative models' disparity.
        controlnet: the hub id, local path, ControlNet model or pipeline the image is for; sets `invert` and the
            size multiple. An unknown name assumes near = white and warns.
        output_type: "pil" (RGB, 8-bit), "pt" (float32 (B, 3, H, W) in [0, 1]) or "np" (float32 (B, H, W, 3) in
            [0, 1]: diffusers reads numpy images as floats in [0, 1], not uint8).

    Returns:
        3 identical channels, laid out as diffusers reads them: for (H, W) depth one PIL image or a batch of one
        ((1, 3, H, W) / (1, H, W, 3)); for (B, H, W) a list of PIL images or a batch of B; for a list, a list of
        PIL images, (3, H, W) tensors or (H, W, 3) arrays.

    Example:
        >>> control_image(torch.tensor([[0.0, 2.0], [1.0, 4.0]]), output_type="pt")[0, 0].tolist()
        [[0.0, 0.5], [0.25, 1.0]]
    """
    _check_output_type(output_type)
    maps, kind = _as_maps(depth)
    maps01 = _conditioning(maps, size=size, normalize=normalize, invert=invert, metric=metric, controlnet=controlnet)
    return _package(maps01, kind, output_type)


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
            to_image_list(item)
        except (TypeError, ValueError) as item_error:
            return type(item_error)(f"Image {index} of {len(images)}: {item_error}")
    return error


class DepthAnythingDetector:
    """Depth Anything with the call shape of controlnet_aux's detectors, for diffusers depth ControlNets.

    Differences from controlnet_aux: the output keeps the input's aspect ratio (no rounding of both sides to 64),
    can be given an exact (width, height), a list in gives a list out (batched: one network call per group of
    same-size images), and `controlnet=` sets the polarity and size rule of the model it is for.

    Example:
        >>> detector = DepthAnythingDetector.from_pretrained("depth_anything_v2_vitl")  # doctest: +SKIP
        >>> control = detector(photo, image_resolution=512)  # PIL, short side 512  # doctest: +SKIP
        >>> frames = detector(video_frames, normalize="batch", output_type="pt")  # doctest: +SKIP
    """

    def __init__(self, model: DepthAnything):
        if not isinstance(model, DepthAnything):
            raise TypeError(f"Expected a DepthAnything model, got {type(model).__name__}.")
        self.model = model.eval()

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        *,
        family: str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        cache_dir: str | Path | None = None,
    ) -> "DepthAnythingDetector":
        """Load a checkpoint or known model name; the arguments are those of `DepthAnything.from_pretrained`."""
        model = DepthAnything.from_pretrained(source, family=family, device=device, dtype=dtype, cache_dir=cache_dir)
        return cls(model)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "DepthAnythingDetector":
        """Move the model, like controlnet_aux's `detector.to("cuda")`; returns self."""
        self.model.to(device=device, dtype=dtype)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model.extra_repr()})"

    def __call__(
        self,
        image: ImageInput | Sequence[ImageInput],
        detect_resolution: int = 518,
        image_resolution: int | None = None,
        output_type: str = "pil",
        *,
        size: tuple[int, int] | None = None,
        normalize: str = "per_image",
        invert: bool | None = None,
        controlnet: Any = None,
        tiled: bool | str = False,
        tile: int | None = None,
        overlap: int | None = None,
        max_size: int | None = None,
        batch_size: int = 8,
    ):
        """Control image(s) for one image, a batch or a list.

        Args:
            image: a PIL image, numpy HWC, torch (H, W, 3) / (3, H, W), a batch (B, H, W, 3) / (B, 3, H, W) or a
                list of these (sizes may differ).
            detect_resolution: the short side the network sees, a multiple of 14 (518 is the official size;
                larger sees finer detail). Not the output size.
            image_resolution: short side of the output, a multiple of 8 (16 for Flux / SD3); the long side
                follows the input's aspect ratio. None (and no `size`) keeps the input's size.
            output_type: "pil" (RGB 8-bit), "np" (float32 (B, H, W, 3) in [0, 1]) or "pt" (float32 (B, 3, H, W) in
                [0, 1]); one image is a batch of one, as diffusers expects.
            size: an exact output (width, height) instead of `image_resolution`; the depth is centre-cropped to
                its aspect ratio, never stretched.
            normalize: "per_image", "batch" (one range across all images: no flicker in video) or "percentile".
            invert: force far = white (True) or near = white (False); None picks from `controlnet`.
            controlnet: hub id, path, ControlNet model or pipeline the image is for (see `control_image`).
            tiled: True for high-resolution depth from overlapping native-resolution tiles (finer detail on large
                photos, no seams), "auto" to tile only images large enough to gain; see `DepthAnything.infer`.
            tile, overlap: tile side (a multiple of 14) and overlap in pixels, for `tiled`.
            max_size: cap on the longest side the network sees (default 3 x detect_resolution).
            batch_size: same-size images per network call.

        Returns:
            "pil": one image, or a list for a list or batch. "pt" / "np": a batch ((1, ...) for one image), or for
            a list a list of (3, H, W) / (H, W, 3). Every form can be passed to a diffusers pipeline as `image=`.
        """
        _check_output_type(output_type)
        if isinstance(detect_resolution, bool) or not isinstance(detect_resolution, int):
            raise TypeError(f"detect_resolution must be an int, got {detect_resolution!r}.")
        if detect_resolution < PATCH or detect_resolution % PATCH:
            below = max(PATCH, detect_resolution // PATCH * PATCH)
            raise ValueError(
                f"detect_resolution must be a multiple of {PATCH} (Depth Anything's patch size), got "
                f"{detect_resolution}; use {below} or {below + PATCH} (518 is the official size)."
            )
        if image_resolution is not None and size is not None:
            raise ValueError("Give image_resolution (short side) or size (width, height), not both.")
        if isinstance(image, (str, Path)):
            raise TypeError(
                f"Expected an image, got the path {str(image)!r}: open it first, e.g. PIL.Image.open(path) or "
                "diffusers.utils.load_image(path)."
            )

        try:
            depth = self.model.infer(
                image, input_size=detect_resolution, max_size=max_size, batch_size=batch_size, tiled=tiled, tile=tile,
                overlap=overlap,
            )
        except (TypeError, ValueError) as error:
            if isinstance(image, (list, tuple)):
                raise _name_bad_image(image, error) from error
            raise
        maps = _conditioning(
            list(depth),
            size=image_resolution if size is None else size,
            normalize=normalize,
            invert=invert,
            metric=self.model.is_metric,
            controlnet=controlnet,
        )
        return _package(maps, _input_kind(image), output_type)
