"""Depth Anything v1, v2 and v2-metric: a DINOv2 encoder and the DPT head, and the four families that use them.

All four share one network and one state-dict layout (`pretrained.*` for the encoder, `depth_head.*` for the head,
or the transformers names): v1 reads the encoder's last four blocks, v2 four spread-out ones, and the metric
models end in a sigmoid scaled to metres. Their weights cannot tell them apart, so the family comes from the file
name, a config.json or the user.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .. import hf_format
from ..configs import ENCODER_BY_DIM, ENCODERS, KnownModel
from ..dinov2 import DinoV2Encoder
from ..dpt import DPTHead
from ..model import DepthModel
from ..options import PATCH
from . import ModelFamily, get_family, register_family


class DepthAnything(DepthModel):
    """Depth Anything v1, v2 or v2-metric.

    Relative models (v1, v2) predict affine-invariant disparity (near = large); metric models predict depth in
    metres. Build one with `DepthAnything.from_pretrained` and run it with `infer`.

    Example:
        >>> from depth_anything import DepthAnything, normalize
        >>> model = DepthAnything.from_pretrained("depth_anything_v2_vits")  # doctest: +SKIP
        >>> depth = model.infer(pil_image)  # (1, H, W) float32 disparity  # doctest: +SKIP
        >>> control = normalize(depth, metric=model.is_metric)  # [0, 1], near = 1  # doctest: +SKIP
    """

    def __init__(self, encoder: str = "vits", family: str | ModelFamily = "v2", max_depth: float | None = None):
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"Unknown encoder {encoder!r}; use one of {', '.join(ENCODERS)}.")
        self.config = ENCODERS[encoder]
        self.family = get_family(family)
        if not isinstance(self.family, DepthAnythingFamily):
            raise ValueError(f"family {self.family.name!r} is not Depth Anything v1 / v2 / v2-metric.")
        if max_depth is not None and not self.family.is_metric:
            raise ValueError(f"max_depth applies to metric models only, not to family {self.family.name!r}.")
        self.max_depth = float(max_depth if max_depth is not None else self.family.max_depth or 0.0) or None
        self.taps = self.config.v1_taps if self.family.uses_v1_taps else self.config.v2_taps
        self.pretrained = DinoV2Encoder(self.config)
        self.depth_head = DPTHead(self.config.embed_dim, self.config.features, self.config.out_channels, self.is_metric)
        self.head_features = self.config.features

    def pass_flops(self, height: int, width: int) -> float:
        """FLOPs of one pass: each encoder block's projections and MLP (24 N d^2) and attention (4 N^2 d) on N
        tokens, and the DPT head's convolutions (about 18 features^2 per pixel, measured for vits / vitb / vitl)."""
        tokens = (height // PATCH) * (width // PATCH) + 1
        width_ = self.config.embed_dim
        encoder = self.config.depth * (24 * tokens * width_**2 + 4 * tokens**2 * width_)
        return float(encoder + 18 * self.config.features**2 * height * width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, H, W), H and W multiples of 14 -> (B, H, W) disparity or metres."""
        height, width = x.shape[-2:]
        if height % PATCH or width % PATCH:
            raise ValueError(f"Input height and width must be multiples of {PATCH}, got {height}x{width}.")
        tokens = self.pretrained.forward_taps(x, self.taps)
        depth = self.depth_head(tokens, height // PATCH, width // PATCH).squeeze(1)
        return depth * self.max_depth if self.is_metric else depth


def _family_from_name(name: str) -> str | None:
    """The v1 / v2 / metric family an official (or community) checkpoint name tells, or None."""
    import re

    n = name.lower().replace("-", "_")
    if "metric" in n or "hypersim" in n or "vkitti" in n:
        if "hypersim" in n or "indoor" in n:
            return "metric_indoor"
        if "vkitti" in n or "outdoor" in n:
            return "metric_outdoor"
        return None  # a metric model of unknown training set: do not guess
    if re.search(r"(^|[^a-z0-9])v2([^0-9]|$)|anything_?v2", n):
        return "v2"
    if re.search(r"(^|[^a-z0-9])v1([^0-9]|$)|anything_?v1|vit[sblg]14", n):
        return "v1"
    return None


def _family_from_config(config: dict) -> str | None:
    """The family a transformers DepthAnythingConfig (as a dict) describes, or None for another model."""
    if not isinstance(config, dict) or config.get("model_type", "depth_anything") != "depth_anything":
        return None
    if config.get("depth_estimation_type") == "metric":
        max_depth = _configured_max_depth(config) or 1.0
        return "metric_outdoor" if max_depth > 40 else "metric_indoor"
    backbone = config.get("backbone_config") or {}
    layers = backbone.get("num_hidden_layers", 12)
    last_four = list(range(layers - 3, layers + 1))  # transformers counts stages from 1 (0 = embeddings)
    return "v1" if list(backbone.get("out_indices") or []) == last_four else "v2"


def _configured_max_depth(config: dict) -> float | None:
    """config.json's max_depth (metres at the top of a metric model's range), or None when it has none."""
    value = config.get("max_depth")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError(f"max_depth must be a positive number of metres, got {value!r}")
    return float(value)


def encoder_from_state(state: dict[str, torch.Tensor], path) -> str:
    """The encoder (vits / vitb / vitl / vitg) an official-layout state dict holds, from its tensor shapes."""
    from ..loading import CheckpointError

    cls_token = state.get("pretrained.cls_token")
    if cls_token is None:
        raise CheckpointError(
            f"{path}: has no 'pretrained.cls_token' tensor, so it is not a Depth Anything checkpoint "
            f"(first keys: {', '.join(list(state)[:3])})."
        )
    cfg = ENCODER_BY_DIM.get(cls_token.shape[-1])
    if cfg is None:
        raise CheckpointError(f"{path}: encoder width {cls_token.shape[-1]} matches no Depth Anything encoder.")
    blocks = {int(k.split(".")[2]) for k in state if k.startswith("pretrained.blocks.")}
    if len(blocks) != cfg.depth:
        raise CheckpointError(f"{path}: has {len(blocks)} encoder blocks; {cfg.name} has {cfg.depth}.")
    return cfg.name


def _to_timm_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # DINOv2-giant's fused SwiGLU is `w12` / `w3` officially, `fc1` / `fc2` in timm.
    return {k.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2."): v for k, v in state.items()}


class DepthAnythingFamily(ModelFamily):
    """v1, v2 or a v2-metric family: the same network, told apart by name or config."""

    layout = "depth_anything"

    def __init__(
        self,
        name: str,
        description: str,
        *,
        output_kind: str = "disparity",
        max_depth: float | None = None,
        aliases: tuple[str, ...] = (),
        known_models: tuple[KnownModel, ...] = (),
    ):
        self.name = name
        self.description = description
        self.output_kind = output_kind
        self.max_depth = max_depth
        self.aliases = aliases
        self.known_models = known_models

    @property
    def uses_v1_taps(self) -> bool:
        return self.name == "v1"

    def matches_name(self, name: str) -> bool:
        return _family_from_name(name) == self.name

    def matches_config(self, config: dict) -> bool:
        return _family_from_config(config) == self.name

    def matches_layout(self, keys: Iterable[str]) -> bool:
        keys = set(keys)
        official = "pretrained.cls_token" in keys and any(k.startswith("depth_head.") for k in keys)
        return official or (hf_format.is_transformers_layout(keys) and "head.conv1.weight" in keys)

    def build(self, checkpoint, dtype: torch.dtype) -> DepthAnything:
        from ..loading import load_weights

        state = checkpoint.state_dict()
        max_depth = None
        if hf_format.is_transformers_layout(state):
            state = hf_format.from_transformers_state(state)
            if self.is_metric and checkpoint.config is not None:
                from ..loading import CheckpointError

                try:
                    configured = _configured_max_depth(checkpoint.config) or self.max_depth
                except ValueError as exc:
                    raise CheckpointError(f"{checkpoint.path / 'config.json'}: {exc}; fix the file.") from exc
                max_depth = None if configured == self.max_depth else configured
        encoder = encoder_from_state(state, checkpoint.weights_file)
        with torch.device("meta"):
            model = DepthAnything(encoder=encoder, family=self, max_depth=max_depth)
        load_weights(model, _to_timm_names(state), checkpoint.weights_file, dtype)
        # The head's convolutions run 1.5-1.7x faster channels-last (oneDNN on CPU, tensor cores on GPU).
        model.depth_head.to(memory_format=torch.channels_last)
        return model


def _released() -> dict[str, list[KnownModel]]:
    models: dict[str, list[KnownModel]] = {"v1": [], "v2": [], "metric_indoor": [], "metric_outdoor": []}
    for enc in ("vits", "vitb", "vitl"):
        name = f"depth_anything_{enc}14"
        models["v1"].append(
            KnownModel(name, "v1", enc, "LiheYoung/Depth-Anything", f"checkpoints/{name}.pth", "Apache-2.0", "space")
        )
    sizes = {"vits": "Small", "vitb": "Base", "vitl": "Large"}
    for enc, size in sizes.items():
        licence = "Apache-2.0" if enc == "vits" else "CC-BY-NC-4.0"
        name = f"depth_anything_v2_{enc}"
        models["v2"].append(KnownModel(name, "v2", enc, f"depth-anything/Depth-Anything-V2-{size}", f"{name}.pth", licence))
        for dataset, family in (("hypersim", "metric_indoor"), ("vkitti", "metric_outdoor")):
            name = f"depth_anything_v2_metric_{dataset}_{enc}"
            repo = f"depth-anything/Depth-Anything-V2-Metric-{'Hypersim' if dataset == 'hypersim' else 'VKITTI'}-{size}"
            models[family].append(KnownModel(name, family, enc, repo, f"{name}.pth", licence))
    return models


_RELEASED = _released()
V1 = register_family(DepthAnythingFamily(
    "v1", "Depth Anything v1, relative disparity", known_models=tuple(_RELEASED["v1"]),
))
V2 = register_family(DepthAnythingFamily(
    "v2", "Depth Anything v2, relative disparity", known_models=tuple(_RELEASED["v2"]),
))
METRIC_INDOOR = register_family(DepthAnythingFamily(
    "metric_indoor", "Depth Anything v2 metric, Hypersim (indoor), metres up to 20",
    output_kind="metric_depth", max_depth=20.0, aliases=("indoor", "hypersim", "v2_metric_hypersim"),
    known_models=tuple(_RELEASED["metric_indoor"]),
))
METRIC_OUTDOOR = register_family(DepthAnythingFamily(
    "metric_outdoor", "Depth Anything v2 metric, Virtual KITTI (outdoor), metres up to 80",
    output_kind="metric_depth", max_depth=80.0, aliases=("outdoor", "vkitti", "v2_metric_vkitti"),
    known_models=tuple(_RELEASED["metric_outdoor"]),
))
