"""Depth Anything 3 on one image: DA3 mono (relative depth), DA3 metric (metres) and the any-view DA3-Small / Base.

    DA3MONO-LARGE, DA3METRIC-LARGE   plain DINOv2 ViT-L/14 (taps 4, 11, 17, 23) -> DPT head -> exp(depth), sky map
    DA3-SMALL, DA3-BASE              DINOv2 ViT-S / ViT-B with qk-norm and 2D rotary positions from block 4, a
                                     camera token, alternating view attention and doubled tokens -> DPT head with
                                     UV position encodings -> exp(depth) (+ confidence and rays, unused here)

Used on one view, the any-view models' "global" (cross-view) blocks see the same tokens as their "local" ones;
what differs is the positions: every patch sits at one position in a global block. Their camera encoder and
decoder and their ray branch serve poses only and are not loaded.

Outputs, as the release gives them: relative depth (far = large), or for the metric model metres =
focal length in pixels (at the network's resolution) x output / 300. The focal length comes from `focal_px`, else
the photo's EXIF, else a 26 mm-equivalent lens (a phone's main camera), with a warning that the metres are then
approximate. Sky pixels (the sky head's probability >= 0.3) are set to the 99th percentile of the other pixels'
depth, as the release does; `infer(..., return_sky=True)` also returns the sky mask, which the condition stage
turns black (far).

Checkpoints: the official state dicts (`backbone.pretrained.*`, `head.*`, optionally under `model.` as in the
Hugging Face `model.safetensors`), HF folders with the release's config.json, and the Comfy-Org repacks that
ComfyUI core loads from `models/geometry_estimation` (backbone in ComfyUI's DINOv2 names). DA3-Large, DA3-Giant
(any-view, CC-BY-NC-4.0) and the nested model are recognised and refused as not supported yet.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .. import hf_format
from ..configs import ENCODER_BY_DIM, ENCODERS, EncoderConfig, KnownModel
from ..dinov2 import DinoV2Encoder, RopeBlock, RotaryEmbedding2D
from ..dpt import DPTHead, FeatureFusionBlock, output_branch
from ..images import equivalent_focal_px
from ..model import DepthModel
from ..options import MAX_SIZE_FACTOR, PATCH, RESIZE_METHODS
from ..pipeline import NetworkBatch
from ..transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, area_resize
from . import ModelFamily, get_family, register_family

PROCESS_RES = 504  # the release's process_res: the longest side the network sees
SKY_THRESHOLD = 0.3  # the release's rule: a pixel is sky where the sky head says at least this
SKY_QUANTILE = 0.99  # sky depth := this quantile of the other pixels' depth
METRIC_FOCAL = 300.0  # DA3 metric predicts depth x 300 / focal length (pixels at the network's resolution)
DEFAULT_FOCAL_35MM = 26.0  # without a focal length: a phone's main camera (about 67 deg across a 4:3 photo)
REPACK = "Comfy-Org/Depth-Anything-3"  # Apache-2.0 weights as safetensors, the files ComfyUI core loads


# ----------------------------------------------------------------------------------------- pre-processing


def nearest_multiple(side: int, multiple: int = PATCH) -> int:
    """The release's rounding to a multiple of 14: the nearest, halves up; never below one patch.

    >>> nearest_multiple(284), nearest_multiple(7), nearest_multiple(3)
    (280, 14, 14)
    """
    down = side // multiple * multiple
    up = down + multiple
    # The release also rounds 1-6 pixels down to 0 (and then crashes); one patch is the least that works.
    return max(multiple, up if up - side <= side - down else down)


@dataclass(frozen=True)
class DA3Preprocessing(Preprocessing):
    """The release's input processor: one side to `input_size`, then each side to its nearest multiple of 14.

    upper_bound (the release's default) scales the longest side to `input_size`, lower_bound the shortest. Both
    steps resize the 8-bit image with OpenCV's filters (bicubic when a side grows, pixel-area averaging when it
    shrinks), so this rule resizes with the same filters and rounds to 8-bit levels after each step; then ImageNet
    normalisation. When the longest side would pass `max_size` (default 3 x `input_size`; only lower_bound on
    thin images gets there), it is scaled to `max_size` (in multiples of 14) instead.

    Example:
        >>> DA3Preprocessing().net_size(1080, 1920)
        (280, 504)
        >>> DA3Preprocessing(method="lower_bound").net_size(1080, 1920)
        (504, 896)
    """

    input_size: int = PROCESS_RES
    method: str = "upper_bound"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    methods: ClassVar[tuple[str, ...]] = RESIZE_METHODS

    def __post_init__(self):
        if self.method not in RESIZE_METHODS:
            raise ValueError(f"Unknown resize method {self.method!r}; use one of {', '.join(RESIZE_METHODS)}.")

    def with_method(self, method: str | None) -> "DA3Preprocessing":
        """The same rule with another resize method (None keeps this one)."""
        return self if method in (None, self.method) else DA3Preprocessing(input_size=self.input_size, method=method)

    def steps(self, height: int, width: int, input_size: int | None = None, max_size: int | None = None):
        """[(h, w) after the bound resize, (h, w) the network sees]."""
        target = self.input_size if input_size is None else input_size
        steps = _bound_steps(height, width, target, self.method)
        cap = MAX_SIZE_FACTOR * target if max_size is None else max(PATCH, max_size // PATCH * PATCH)
        if max(steps[-1]) > cap:
            steps = _bound_steps(height, width, cap, "upper_bound")
        return steps

    def net_size(self, height: int, width: int, input_size: int | None = None, max_size: int | None = None):
        if height < 1 or width < 1:
            raise ValueError(f"Image has an empty side ({width}x{height}); give an image at least 1x1 pixels.")
        return self.steps(height, width, input_size, max_size)[-1]

    def __call__(self, batch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """float (N, 3, H, W) in [0, 1] -> the network input (N, 3, *size), float32."""
        batch = batch.to(torch.float32)
        for step in self._steps_to(tuple(batch.shape[-2:]), tuple(size)):
            batch = _resize_8bit(batch, step)
        mean = torch.tensor(self.mean, device=batch.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=batch.device).view(1, 3, 1, 1)
        return (batch - mean) / std

    def _steps_to(self, image: tuple[int, int], size: tuple[int, int]) -> list[tuple[int, int]]:
        """The resize steps from an image's size to `size` (the network size `net_size` chose for it).

        The bound side's target is the network size's bound side (input sizes are multiples of 14, which the
        rounding keeps), or, when `max_size` capped a lower-bound image, its longest side.
        """
        for method in (self.method, "upper_bound"):
            target = (max if method == "upper_bound" else min)(size)
            steps = _bound_steps(*image, target, method)
            if steps[-1] == size:
                return [s for i, s in enumerate(steps) if s != (steps[i - 1] if i else image)]
        return [size]  # a size no rule of this family gives (a caller's own): one resize straight to it


def _bound_steps(height: int, width: int, target: int, method: str) -> list[tuple[int, int]]:
    """The release's two sizes: the bound side scaled to `target` (skipped when it is there), then each side
    rounded to its nearest multiple of 14."""
    bound = max(height, width) if method == "upper_bound" else min(height, width)
    if bound == target:
        first = (height, width)
    else:
        scale = target / bound
        first = (max(1, round(height * scale)), max(1, round(width * scale)))
    return [first, (nearest_multiple(first[0]), nearest_multiple(first[1]))]


def _resize_8bit(batch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """One OpenCV-style resize of 8-bit pixels: bicubic when a side grows, pixel-area averaging when both shrink."""
    if any(new > old for new, old in zip(size, batch.shape[-2:])):
        out = F.interpolate(batch, size=size, mode="bicubic", align_corners=False)
    else:
        out = area_resize(batch, size)
    return out.mul(255).round_().clamp_(0, 255).div_(255)  # the release resizes uint8 images


# -------------------------------------------------------------------------------------------------- network


@dataclass(frozen=True)
class DA3Config:
    """One DA3 network: encoder size and taps, and the any-view models' extras from `start` on."""

    encoder: str
    taps: tuple[int, int, int, int]
    any_view: bool  # qk-norm, rotary positions, camera token and doubled tokens from block `start`
    start: int = 4

    @property
    def encoder_config(self) -> EncoderConfig:
        return ENCODERS[self.encoder]

    @property
    def head_input(self) -> int:
        return self.encoder_config.embed_dim * (2 if self.any_view else 1)


MONO_LARGE = DA3Config("vitl", (4, 11, 17, 23), any_view=False)
ANY_VIEW = {encoder: DA3Config(encoder, (5, 7, 9, 11), any_view=True) for encoder in ("vits", "vitb")}


class AnyViewEncoder(DinoV2Encoder):
    """DINOv2 of the any-view models, on one view.

    From block `start` on, blocks have qk-norm and rotary positions, and alternate "local" (within a view: each
    patch at its grid position) and "global" (across views: every patch at one position) attention; at `start`
    the class token is replaced by the learned camera token of the reference view. Each tapped output is the
    last local block's tokens beside the tapped block's normalised ones (2 x the width).
    """

    def __init__(self, cfg: EncoderConfig, start: int):
        super().__init__(cfg, mask_token=False, final_norm_eps=1e-5)
        self.start = start
        self.camera_token = nn.Parameter(torch.zeros(1, 2, cfg.embed_dim))  # (reference view, other views)
        for i in range(start, cfg.depth):
            self.blocks[i] = RopeBlock(cfg.embed_dim, cfg.num_heads)
        self.rope = RotaryEmbedding2D(cfg.embed_dim // cfg.num_heads)

    def rope_tables(self, patch_h: int, patch_w: int, device, dtype):
        """(local, global) rotary tables: the class token at (0, 0), patches at (row + 1, column + 1) within the
        view, or all at (1, 1) across views."""
        rows, cols = torch.meshgrid(torch.arange(patch_h, device=device), torch.arange(patch_w, device=device),
                                    indexing="ij")  # fmt: skip - not cartesian_prod: ONNX has no such operator
        grid = torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=-1) + 1
        special = torch.zeros(1, 2, dtype=grid.dtype, device=device)
        local = torch.cat([special, grid])
        across = torch.cat([special, torch.ones_like(grid)])
        return self.rope.tables(local, dtype), self.rope.tables(across, dtype)

    def forward_taps(self, x: torch.Tensor, taps) -> list[torch.Tensor]:
        batch, _, height, width = x.shape
        x = self.embed(x)
        local_rope, global_rope = self.rope_tables(height // PATCH, width // PATCH, x.device, x.dtype)
        outputs, local = [], x
        for i, block in enumerate(self.blocks[: max(taps) + 1]):
            if i == self.start:
                x = torch.cat([self.camera_token[:, :1].expand(batch, -1, -1).to(x.dtype), x[:, 1:]], dim=1)
            if i < self.start:
                x = local = block(x)
            elif i % 2:
                x = block(x, global_rope)
            else:
                x = local = block(x, local_rope)
            if i in taps:
                outputs.append(torch.cat([local[:, 1:], self.norm(x)[:, 1:]], dim=-1))
        return outputs


def uv_position_embedding(height, width, channels: int, dtype, device) -> torch.Tensor:
    """(1, channels, height, width) sine / cosine encoding of each pixel's (x, y) on a plane of the image's aspect
    ratio spanning the unit diagonal, scaled by 0.1: what the any-view head adds to its feature maps.

    In tensor operations throughout, so that an exported graph keeps `height` and `width` as its input's sizes.
    """
    sizes = [torch.as_tensor(n, device=device).float() for n in (width, height)]
    diagonal = torch.sqrt(sizes[0] * sizes[0] + sizes[1] * sizes[1])
    # pixel centres span (1 - 1/n) of the plane's extent (n / diagonal) on each axis: (2i + 1 - n) / diagonal
    xs, ys = (
        (2 * torch.arange(n, device=device).float() + 1 - size) / diagonal for n, size in zip((width, height), sizes)
    )
    quarter = channels // 4
    omega = 1.0 / 100.0 ** (torch.arange(quarter, dtype=torch.float32, device=device) / quarter)
    grid_x, grid_y = (g.reshape(-1) for g in torch.meshgrid(xs, ys, indexing="xy"))
    parts = []
    for coordinate in (grid_x, grid_y):
        angles = torch.einsum("m,d->md", coordinate, omega)
        parts += [angles.sin(), angles.cos()]
    embedding = torch.cat(parts, dim=-1).float().view(height, width, channels) * 0.1
    return embedding.permute(2, 0, 1)[None].to(dtype)


class DA3Head(DPTHead):
    """DA3's DPT head: v2's reassemble and fusion; depth = exp(logit); mono / metric add a sky map (ReLU).

    The any-view models' head also normalises the tokens first and adds UV position encodings to each level and
    to the full-resolution features; its second output channel (confidence) and ray branch are not used here.
    """

    def __init__(self, cfg: DA3Config):
        enc = cfg.encoder_config
        super().__init__(cfg.head_input, enc.features, enc.out_channels)
        self.any_view = cfg.any_view
        self.norm = nn.LayerNorm(cfg.head_input) if cfg.any_view else nn.Identity()
        s = self.scratch
        s.refinenet4 = FeatureFusionBlock(enc.features, skip=False)  # DA3 stores no unused skip branch
        s.output_conv2 = output_branch(enc.features, 2 if cfg.any_view else 1)
        if not cfg.any_view:
            s.sky_output_conv2 = output_branch(enc.features, 1)

    @property
    def has_sky(self) -> bool:
        return not self.any_view

    def reassemble(self, index: int, tokens: torch.Tensor, patch_h: int, patch_w: int) -> torch.Tensor:
        x = rearrange(self.norm(tokens), "b (h w) c -> b c h w", h=patch_h, w=patch_w)
        x = self.projects[index](x)
        if self.any_view:
            x = x + uv_position_embedding(patch_h, patch_w, x.shape[1], x.dtype, x.device)
        return self.resize_layers[index](x)

    def forward(self, tokens: list[torch.Tensor], patch_h: int, patch_w: int) -> torch.Tensor:
        """Four token maps -> (B, 2, H, W): depth and sky probability (mono / metric), or (B, 1, H, W): depth."""
        x = self.scratch.output_conv1(self.fuse(tokens, patch_h, patch_w))
        height, width = patch_h * PATCH, patch_w * PATCH
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=True)
        if self.any_view:
            x = x + uv_position_embedding(height, width, x.shape[1], x.dtype, x.device)
        depth = torch.exp(self.scratch.output_conv2(x)[:, :1])
        if not self.has_sky:
            return depth
        return torch.cat([depth, F.relu(self.scratch.sky_output_conv2(x))], dim=1)


class DepthAnything3(DepthModel):
    """Depth Anything 3 on one image: relative depth (mono, Small, Base) or metres (metric), and the sky.

    Example:
        >>> model = DepthModel.from_pretrained("depth_anything_3_mono_large")  # doctest: +SKIP
        >>> depth, sky = model.infer("photo.jpg", return_sky=True)  # (1, H, W) each  # doctest: +SKIP
        >>> control = condition(depth, kind=model.output_kind, far_mask=sky)  # sky black  # doctest: +SKIP
        >>> metric = DepthModel.from_pretrained("depth_anything_3_metric_large")  # doctest: +SKIP
        >>> metres = metric.infer(photo, focal_px=1450.0)  # doctest: +SKIP
    """

    sky_threshold = SKY_THRESHOLD

    def __init__(self, cfg: DA3Config, family: str | ModelFamily = "da3_mono"):
        super().__init__()
        self.cfg = cfg
        self.family = get_family(family)
        encoder = cfg.encoder_config
        if cfg.any_view:
            self.pretrained = AnyViewEncoder(encoder, cfg.start)
        else:
            self.pretrained = DinoV2Encoder(encoder, mask_token=False, final_norm_eps=1e-5)
        self.head = DA3Head(cfg)
        self.head_features = encoder.features

    @property
    def encoder(self) -> str:
        return self.cfg.encoder

    @property
    def has_sky(self) -> bool:
        return self.head.has_sky

    @property
    def output_channels(self) -> tuple[str, ...]:
        """What `forward`'s channels hold (an exported file says so)."""
        return ("raw depth", "sky probability") if self.has_sky else ("raw depth",)

    def extra_repr(self) -> str:
        return f"encoder={self.encoder}, family={self.family.name}, source={self.source}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, H, W), H and W multiples of 14 -> (B, 2, H, W) raw depth and sky probability,
        or (B, 1, H, W) raw depth for the any-view models: the network alone, what backends run."""
        height, width = x.shape[-2:]
        if height % PATCH or width % PATCH:
            raise ValueError(f"Input height and width must be multiples of {PATCH}, got {height}x{width}.")
        tokens = self.pretrained.forward_taps(x, self.cfg.taps)
        return self.head(tokens, height // PATCH, width // PATCH)

    @torch.inference_mode()
    def predict_maps(self, batch: NetworkBatch | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(depth, sky probability) (N, h, w) of a batch: sky set far as the release does, metric depth in metres
        (focal lengths from the batch: given or from EXIF, else a 26 mm-equivalent lens, with a warning)."""
        raw = super().predict(batch)
        depth = raw[:, 0]
        sky = raw[:, 1].clamp(0.0, 1.0) if self.has_sky else None
        if sky is not None:
            depth = set_sky_far(depth, sky)
        if self.is_metric:
            depth = depth * metric_scales(batch, depth.shape[-2:]).to(depth.device)[:, None, None]
        return depth, sky

    def predict(self, batch: NetworkBatch | torch.Tensor) -> torch.Tensor:
        """A network batch -> depth (N, h, w) in the family's quantity; see `predict_maps`."""
        return self.predict_maps(batch)[0]


def set_sky_far(depth: torch.Tensor, sky: torch.Tensor) -> torch.Tensor:
    """The release's sky rule, per image: sky pixels (sky >= 0.3) get the 99th percentile of the other pixels'
    depth, when both parts have more than 10 pixels.

    The release draws 100,000 random pixels for the percentile of larger maps (and pools a batch); this takes
    every pixel of each image, so results are reproducible and each image is its own.
    """
    out = depth.clone()
    for i, (image_depth, image_sky) in enumerate(zip(depth, sky)):
        ground = image_sky < SKY_THRESHOLD
        count = int(ground.sum())
        if count <= 10 or ground.numel() - count <= 10:
            continue
        far = torch.quantile(image_depth[ground].float(), SKY_QUANTILE).to(depth.dtype)
        out[i] = torch.where(ground, image_depth, far)
    return out


def metric_scales(batch: NetworkBatch | torch.Tensor, net_size) -> torch.Tensor:
    """Per image, metres per unit of DA3 metric's output: focal length at the network's resolution / 300.

    The focal length in image pixels scales with the image, as the release scales a camera's intrinsics (the
    mean of the horizontal and vertical scale). Unknown focal lengths assume a 26 mm-equivalent lens, with a
    warning that the metres are approximate.
    """
    net_h, net_w = (int(s) for s in net_size)
    if isinstance(batch, NetworkBatch):
        sizes, focals = batch.sizes, batch.focal_px or (None,) * len(batch)
    else:
        sizes, focals = ((net_h, net_w),) * batch.shape[0], (None,) * batch.shape[0]
    if any(f is None for f in focals):
        warnings.warn(
            "Depth Anything 3 metric: no focal length known for an image (none given, none in its EXIF), so its "
            f"metres assume a {DEFAULT_FOCAL_35MM:g} mm-equivalent lens and are approximate. Give the focal length "
            "in pixels: focal_px= (Python), --focal-px (command line) or the estimate node's focal_px.",
            UserWarning,
            stacklevel=3,
        )
    scales = []
    for (height, width), focal in zip(sizes, focals):
        focal = equivalent_focal_px(DEFAULT_FOCAL_35MM, height, width) if focal is None else float(focal)
        scales.append(focal * (net_w / width + net_h / height) / 2 / METRIC_FOCAL)
    return torch.tensor(scales, dtype=torch.float32)


# ----------------------------------------------------------------------------------------- checkpoints

_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.")  # HF export / ComfyUI save wrappers
_COMFYUI_EXTRAS = re.compile(
    r"^backbone\.embeddings\.(camera_token)$|^backbone\.encoder\.layer\.(\d+)\.attention\.(?:attention\.)?([qk]_norm)\."
)
_UNUSED = re.compile(r"^(cam_enc|cam_dec)\.|^head\.scratch\.(refinenet\d_aux|output_conv[12]_aux)\.")


def _own_extra(match: re.Match) -> str:
    camera, layer, norm = match.groups()
    return "pretrained.camera_token" if camera else f"pretrained.blocks.{layer}.attn.{norm}."


def unwrap(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys without the `model.` (Hugging Face) or `model.diffusion_model.` (ComfyUI) prefix all keys share."""
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def da3_layout(keys: Iterable[str]) -> str | None:
    """"official", "comfyui", "nested" for a Depth Anything 3 state dict's layout, or None for another model."""
    keys = set(unwrap(dict.fromkeys(keys)))  # type: ignore[arg-type]
    if any(k.startswith("da3_metric.") for k in keys) and any(k.startswith("da3.") for k in keys):
        return "nested"
    if "head.projects.0.weight" not in keys or "head.scratch.output_conv2.0.weight" not in keys:
        return None
    if "backbone.pretrained.cls_token" in keys:
        return "official"
    if "backbone.embeddings.cls_token" in keys:
        return "comfyui"
    return None


def to_own_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A DA3 state dict in any supported layout -> this module's names (`pretrained.*` DINOv2, `head.*`), without
    the tensors single-view depth does not use (camera encoder / decoder, ray branch)."""
    state = unwrap(state)
    if da3_layout(state) == "comfyui":
        # ComfyUI's DINOv2 uses the transformers names; camera token and qk-norm are DA3's own additions.
        state = hf_format.from_transformers_state(state)
        state = {_COMFYUI_EXTRAS.sub(_own_extra, k): v for k, v in state.items()}
    else:
        state = {k.removeprefix("backbone."): v for k, v in state.items()}
    return {k: v for k, v in state.items() if not _UNUSED.match(k)}


def config_from_state(state: dict[str, torch.Tensor], path) -> DA3Config:
    """The network a state dict (own names) holds; DA3-Large / Giant and the nested model are not supported."""
    from ..loading import CheckpointError

    cls_token = state.get("pretrained.cls_token")
    encoder = ENCODER_BY_DIM.get(cls_token.shape[-1]) if cls_token is not None else None
    if encoder is None:
        raise CheckpointError(f"{path}: holds no DINOv2 encoder of a size Depth Anything 3 uses.")
    any_view = "pretrained.camera_token" in state
    if any_view and encoder.name in ANY_VIEW:
        return ANY_VIEW[encoder.name]
    if not any_view and encoder.name == "vitl":
        return MONO_LARGE
    if any_view:
        variant = {"vitl": "DA3-Large", "vitg": "DA3-Giant"}.get(encoder.name, f"an any-view {encoder.name}")
    else:
        variant = f"a {encoder.name} mono / metric model"
    raise CheckpointError(
        f"{path}: is {variant}, a Depth Anything 3 variant not supported yet. Supported: DA3MONO-LARGE, "
        "DA3METRIC-LARGE, DA3-SMALL and DA3-BASE (Apache-2.0), e.g. depth_anything_3_mono_large."
    )


class DA3Family(ModelFamily):
    """A Depth Anything 3 family: its checkpoints' names, configs and layout, its pre-processing, its output."""

    preprocessing = DA3Preprocessing()

    def __init__(
        self, name: str, description: str, *, output_kind: str, name_pattern: str, model_names: tuple[str, ...],
        layout: str, known_models: tuple[KnownModel, ...] = (), aliases: tuple[str, ...] = (),
    ):
        self.name = name
        self.description = description
        self.output_kind = output_kind
        self.uses_focal_length = output_kind == "metric_depth"
        self.name_pattern = name_pattern
        self.model_names = model_names
        self.layout = layout
        self.known_models = known_models
        self.aliases = aliases

    def matches_config(self, config: dict) -> bool:
        return isinstance(config, dict) and config.get("model_name") in self.model_names

    def matches_layout(self, keys: Iterable[str]) -> bool:
        keys = list(keys)
        layout = da3_layout(keys)
        if layout is None:
            return False
        if layout == "nested":
            return self.layout == "any_view"  # refused with a clear message when built
        camera = any(k.endswith("camera_token") for k in keys)
        return camera == (self.layout == "any_view")

    def build(self, checkpoint, dtype: torch.dtype) -> DepthAnything3:
        from ..loading import CheckpointError, load_weights

        raw = checkpoint.state_dict()
        if da3_layout(raw) == "nested":
            raise CheckpointError(
                f"{checkpoint.weights_file}: is the nested DA3 model (DA3NESTED-GIANT-LARGE, CC-BY-NC-4.0), not "
                "supported yet. Use depth_anything_3_metric_large for metres, depth_anything_3_mono_large for "
                "relative depth."
            )
        if da3_layout(raw) is None:
            raise CheckpointError(
                f"{checkpoint.weights_file}: is not a Depth Anything 3 checkpoint "
                f"(first keys: {', '.join(list(raw)[:3])})."
            )
        state = to_own_names(raw)
        cfg = config_from_state(state, checkpoint.weights_file)
        if cfg.any_view != (self.layout == "any_view"):
            kind = "an any-view model (DA3-Small / Base)" if cfg.any_view else "a mono / metric model"
            raise CheckpointError(f"{checkpoint.weights_file}: is {kind}, not {self.description}.")
        with torch.device("meta"):
            model = DepthAnything3(cfg, family=self)
        load_weights(model, state, checkpoint.weights_file, dtype)
        model.head.to(memory_format=torch.channels_last)  # convolutions run faster channels-last
        return model


def _repack(name: str, family: str, encoder: str) -> KnownModel:
    return KnownModel(
        name, family, encoder, REPACK, f"geometry_estimation/{name}.safetensors", "Apache-2.0",
        comfyui_folder="geometry_estimation",  # where ComfyUI core's Depth Anything 3 nodes load it from
    )


# Names: "da3" / "depth_anything_3" followed by the variant, in the spellings of the release (DA3MONO-LARGE,
# da3metric-large), Comfy-Org's repacks (depth_anything_3_mono_large) and the Hub (DA3-SMALL).
_DA3 = r"(^|[^a-z0-9])(da3|depth_?anything_?(v|_)?3)_?"
DA3_MONO = register_family(DA3Family(
    "da3_mono", "Depth Anything 3 mono (DA3MONO-LARGE), relative depth, sky map",
    output_kind="relative_depth", name_pattern=_DA3 + r"mono", model_names=("da3mono-large",), layout="sky",
    known_models=(_repack("depth_anything_3_mono_large", "da3_mono", "vitl"),), aliases=("da3mono",),
))
DA3_METRIC = register_family(DA3Family(
    "da3_metric", "Depth Anything 3 metric (DA3METRIC-LARGE), metres from the focal length, sky map",
    output_kind="metric_depth", name_pattern=_DA3 + r"metric", model_names=("da3metric-large",), layout="sky",
    known_models=(_repack("depth_anything_3_metric_large", "da3_metric", "vitl"),),
    aliases=("da3metric",),
))
DA3_ANY_VIEW = register_family(DA3Family(
    "da3", "Depth Anything 3 any-view (DA3-Small / Base) on one view, relative depth",
    output_kind="relative_depth", name_pattern=_DA3 + r"(small|base|large|giant|nested|vit[sblg])",
    model_names=("da3-small", "da3-base", "da3-large", "da3-giant", "da3nested-giant-large"), layout="any_view",
    known_models=(_repack("depth_anything_3_small", "da3", "vits"), _repack("depth_anything_3_base", "da3", "vitb")),
    aliases=("da3_small", "da3_base", "da3_any_view"),
))
