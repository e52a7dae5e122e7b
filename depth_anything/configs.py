"""Model configurations as data: encoders, families and the released checkpoints."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EncoderConfig:
    name: str
    embed_dim: int
    depth: int
    num_heads: int
    features: int  # DPT head width
    out_channels: tuple[int, int, int, int]  # DPT reassemble widths
    v2_taps: tuple[int, int, int, int]  # 0-based blocks read by v2 / v2-metric
    swiglu: bool = False  # only giant uses the fused SwiGLU MLP

    @property
    def v1_taps(self) -> tuple[int, int, int, int]:
        # v1 reads the last four blocks.
        return tuple(range(self.depth - 4, self.depth))  # type: ignore[return-value]


ENCODERS: dict[str, EncoderConfig] = {
    "vits": EncoderConfig("vits", 384, 12, 6, 64, (48, 96, 192, 384), (2, 5, 8, 11)),
    "vitb": EncoderConfig("vitb", 768, 12, 12, 128, (96, 192, 384, 768), (2, 5, 8, 11)),
    "vitl": EncoderConfig("vitl", 1024, 24, 16, 256, (256, 512, 1024, 1024), (4, 11, 17, 23)),
    "vitg": EncoderConfig("vitg", 1536, 40, 24, 384, (1536, 1536, 1536, 1536), (9, 19, 29, 39), swiglu=True),
}
ENCODER_BY_DIM = {cfg.embed_dim: cfg for cfg in ENCODERS.values()}


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    max_depth: float | None = None  # set for metric models: sigmoid output x max_depth = metres

    @property
    def is_metric(self) -> bool:
        return self.max_depth is not None

    @property
    def uses_v1_taps(self) -> bool:
        return self.name == "v1"


FAMILIES: dict[str, Family] = {
    "v1": Family("v1", "Depth Anything v1, relative disparity"),
    "v2": Family("v2", "Depth Anything v2, relative disparity"),
    "metric_indoor": Family("metric_indoor", "Depth Anything v2 metric, Hypersim (indoor), metres up to 20", 20.0),
    "metric_outdoor": Family("metric_outdoor", "Depth Anything v2 metric, Virtual KITTI (outdoor), metres up to 80", 80.0),
}

FAMILY_ALIASES = {
    "v1": "v1",
    "v2": "v2",
    "metric_indoor": "metric_indoor",
    "metric-indoor": "metric_indoor",
    "metric indoor": "metric_indoor",
    "indoor": "metric_indoor",
    "hypersim": "metric_indoor",
    "v2_metric_hypersim": "metric_indoor",
    "metric_outdoor": "metric_outdoor",
    "metric-outdoor": "metric_outdoor",
    "metric outdoor": "metric_outdoor",
    "outdoor": "metric_outdoor",
    "vkitti": "metric_outdoor",
    "v2_metric_vkitti": "metric_outdoor",
}


def resolve_family(name: str) -> Family:
    """Return the family for a name or alias ("v1", "v2", "metric_indoor", "hypersim", ...)."""
    key = FAMILY_ALIASES.get(str(name).strip().lower())
    if key is None:
        raise ValueError(
            f"Unknown model family {name!r}. Use one of: v1, v2, metric_indoor (Hypersim), metric_outdoor (VKITTI)."
        )
    return FAMILIES[key]


@dataclass(frozen=True)
class KnownModel:
    """An officially released checkpoint that `from_pretrained` can fetch by name."""

    name: str
    family: str
    encoder: str
    repo_id: str
    filename: str  # path inside the repo; the cached copy keeps its base name
    license: str
    repo_type: str = "model"

    @property
    def url(self) -> str:
        prefix = "spaces/" if self.repo_type == "space" else ""
        return f"https://huggingface.co/{prefix}{self.repo_id}/blob/main/{self.filename}"


def _known_models() -> dict[str, KnownModel]:
    models = {}
    for enc in ("vits", "vitb", "vitl"):
        name = f"depth_anything_{enc}14"
        models[name] = KnownModel(
            name, "v1", enc, "LiheYoung/Depth-Anything", f"checkpoints/{name}.pth", "Apache-2.0", repo_type="space"
        )
    sizes = {"vits": "Small", "vitb": "Base", "vitl": "Large"}
    for enc, size in sizes.items():
        licence = "Apache-2.0" if enc == "vits" else "CC-BY-NC-4.0"
        name = f"depth_anything_v2_{enc}"
        models[name] = KnownModel(name, "v2", enc, f"depth-anything/Depth-Anything-V2-{size}", f"{name}.pth", licence)
        for dataset, family in (("hypersim", "metric_indoor"), ("vkitti", "metric_outdoor")):
            name = f"depth_anything_v2_metric_{dataset}_{enc}"
            repo = f"depth-anything/Depth-Anything-V2-Metric-{'Hypersim' if dataset == 'hypersim' else 'VKITTI'}-{size}"
            models[name] = KnownModel(name, family, enc, repo, f"{name}.pth", licence)
    return models


KNOWN_MODELS: dict[str, KnownModel] = _known_models()
