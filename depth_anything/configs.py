"""Configurations as data: the ViT encoders and the record of a released checkpoint.

Families (v1, v2, metric, ...) and their released checkpoints live in `depth_anything.families`.
"""

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
class KnownModel:
    """An officially released checkpoint that `from_pretrained` can fetch by name."""

    name: str
    family: str
    encoder: str
    repo_id: str
    filename: str  # path inside the repo; the cached copy keeps its base name
    license: str
    repo_type: str = "model"
    comfyui_folder: str = "depth_anything"  # the ComfyUI model folder its file belongs in (shared with core's nodes)

    @property
    def url(self) -> str:
        prefix = "spaces/" if self.repo_type == "space" else ""
        return f"https://huggingface.co/{prefix}{self.repo_id}/blob/main/{self.filename}"
