"""The transformers layout of Depth Anything (DepthAnythingForDepthEstimation): key map, config, export.

One explicit official <-> transformers key map serves both directions. transformers 4.x and 5.x name the
attention projections differently; both are read, and export writes the names of the installed version.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from .configs import ENCODERS
from .transforms import IMAGENET_MEAN, IMAGENET_STD

ATTENTION_NAMES = {
    # official part -> transformers 5.x, transformers 4.x
    "q": ("attention.q_proj", "attention.attention.query"),
    "k": ("attention.k_proj", "attention.attention.key"),
    "v": ("attention.v_proj", "attention.attention.value"),
    "proj": ("attention.o_proj", "attention.output.dense"),
}


def key_map(depth: int, swiglu: bool = False, version: int = 5) -> dict[str, str]:
    """official key -> transformers key, for every tensor except the fused qkv (see `split_qkv`)."""
    names = {part: pair[0 if version >= 5 else 1] for part, pair in ATTENTION_NAMES.items()}
    m = {
        "pretrained.cls_token": "backbone.embeddings.cls_token",
        "pretrained.mask_token": "backbone.embeddings.mask_token",
        "pretrained.pos_embed": "backbone.embeddings.position_embeddings",
    }
    params = ("weight", "bias")
    for p in params:
        m[f"pretrained.patch_embed.proj.{p}"] = f"backbone.embeddings.patch_embeddings.projection.{p}"
        m[f"pretrained.norm.{p}"] = f"backbone.layernorm.{p}"
    mlp = (("w12", "weights_in"), ("w3", "weights_out")) if swiglu else (("fc1", "fc1"), ("fc2", "fc2"))
    for i in range(depth):
        ours, theirs = f"pretrained.blocks.{i}.", f"backbone.encoder.layer.{i}."
        for j in (1, 2):
            m[f"{ours}ls{j}.gamma"] = f"{theirs}layer_scale{j}.lambda1"
            for p in params:
                m[f"{ours}norm{j}.{p}"] = f"{theirs}norm{j}.{p}"
        for p in params:
            m[f"{ours}attn.proj.{p}"] = f"{theirs}{names['proj']}.{p}"
            for official, hf in mlp:
                m[f"{ours}mlp.{official}.{p}"] = f"{theirs}mlp.{hf}.{p}"
    head, neck = "depth_head.", "neck."
    for i in range(4):
        for p in params:
            m[f"{head}projects.{i}.{p}"] = f"{neck}reassemble_stage.layers.{i}.projection.{p}"
            if i != 2:  # the stride-16 level is not resized
                m[f"{head}resize_layers.{i}.{p}"] = f"{neck}reassemble_stage.layers.{i}.resize.{p}"
        m[f"{head}scratch.layer{i + 1}_rn.weight"] = f"{neck}convs.{i}.weight"
        fusion = f"{neck}fusion_stage.layers.{3 - i}."  # transformers lists the fusion blocks coarse-to-fine
        for p in params:
            m[f"{head}scratch.refinenet{i + 1}.out_conv.{p}"] = f"{fusion}projection.{p}"
            for u in (1, 2):
                for c in (1, 2):
                    m[f"{head}scratch.refinenet{i + 1}.resConfUnit{u}.conv{c}.{p}"] = (
                        f"{fusion}residual_layer{u}.convolution{c}.{p}"
                    )
    for p in params:
        m[f"{head}scratch.output_conv1.{p}"] = f"head.conv1.{p}"
        m[f"{head}scratch.output_conv2.0.{p}"] = f"head.conv2.{p}"
        m[f"{head}scratch.output_conv2.2.{p}"] = f"head.conv3.{p}"
    return m


def is_transformers_layout(state: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith("backbone.embeddings.") for k in state)


def _transformers_depth(state: dict[str, torch.Tensor]) -> int:
    layers = {int(m.group(1)) for k in state if (m := re.match(r"backbone\.encoder\.layer\.(\d+)\.", k))}
    return len(layers)


def from_transformers_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers state dict (4.x or 5.x names) -> official keys. Unknown keys are kept for the strict check."""
    depth = _transformers_depth(state)
    swiglu = any(".mlp.weights_in." in k for k in state)
    version = 5 if any(".attention.q_proj." in k for k in state) else 4
    inverse = {v: k for k, v in key_map(depth, swiglu, version).items()}
    out = {inverse.get(k, k): v for k, v in state.items()}
    for i in range(depth):
        for p in ("weight", "bias"):
            parts = [f"backbone.encoder.layer.{i}.{ATTENTION_NAMES[x][0 if version >= 5 else 1]}.{p}" for x in "qkv"]
            if all(part in out for part in parts):
                out[f"pretrained.blocks.{i}.attn.qkv.{p}"] = torch.cat([out.pop(part) for part in parts])
    return out


def to_transformers_state(state: dict[str, torch.Tensor], version: int = 5) -> dict[str, torch.Tensor]:
    """Official state dict -> transformers keys (5.x names unless version=4)."""
    depth = len({k.split(".")[2] for k in state if k.startswith("pretrained.blocks.")})
    swiglu = any(".mlp.w12." in k for k in state)
    mapping = key_map(depth, swiglu, version)
    out = {}
    for key, value in state.items():
        if m := re.fullmatch(r"pretrained\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)", key):
            for part, chunk in zip("qkv", value.chunk(3)):
                name = ATTENTION_NAMES[part][0 if version >= 5 else 1]
                out[f"backbone.encoder.layer.{m.group(1)}.{name}.{m.group(2)}"] = chunk.clone()
        elif key in mapping:
            out[mapping[key]] = value
        else:
            raise KeyError(f"no transformers name for {key}")
    return out


def transformers_config(encoder: str, family, max_depth: float | None = None) -> dict:
    """A DepthAnythingConfig as a dict, for `DepthAnythingConfig(**d)` or config.json."""
    cfg = ENCODERS[encoder]
    taps = cfg.v1_taps if family.uses_v1_taps else cfg.v2_taps
    backbone = {
        "model_type": "dinov2",
        "hidden_size": cfg.embed_dim,
        "num_hidden_layers": cfg.depth,
        "num_attention_heads": cfg.num_heads,
        "image_size": 518,
        "patch_size": 14,
        "layerscale_value": 1.0,
        "use_swiglu_ffn": cfg.swiglu,
        "out_indices": [t + 1 for t in taps],
        "apply_layernorm": True,
        "reshape_hidden_states": False,
    }
    if not cfg.swiglu:
        backbone["mlp_ratio"] = 4
    return {
        "model_type": "depth_anything",
        "architectures": ["DepthAnythingForDepthEstimation"],
        "backbone_config": backbone,
        "patch_size": 14,
        "reassemble_hidden_size": cfg.embed_dim,
        "reassemble_factors": [4, 2, 1, 0.5],
        "neck_hidden_sizes": list(cfg.out_channels),
        "fusion_hidden_size": cfg.features,
        "head_in_index": -1,
        "head_hidden_size": 32,
        "depth_estimation_type": "metric" if family.is_metric else "relative",
        "max_depth": _int_if_whole(max_depth or family.max_depth or 1),
    }


def _int_if_whole(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value  # transformers types max_depth as int


PREPROCESSOR_CONFIG = {
    "image_processor_type": "DPTImageProcessor",
    "do_resize": True,
    "size": {"height": 518, "width": 518},
    "keep_aspect_ratio": True,
    "ensure_multiple_of": 14,
    "resample": 3,  # bicubic
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": list(IMAGENET_MEAN),
    "image_std": list(IMAGENET_STD),
    "do_pad": False,
}


def official_state_dict(model) -> dict[str, torch.Tensor]:
    """The model's weights under the official checkpoint names, float32 on the CPU."""
    state = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    if model.config.swiglu:  # timm calls giant's fused SwiGLU layers fc1 / fc2
        state = {k.replace(".mlp.fc1.", ".mlp.w12.").replace(".mlp.fc2.", ".mlp.w3."): v for k, v in state.items()}
    return state


def to_transformers(model) -> "torch.nn.Module":
    """Our DepthAnything -> transformers' DepthAnythingForDepthEstimation with the same weights (float32, CPU)."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation

    config = DepthAnythingConfig(**transformers_config(model.encoder, model.family, model.max_depth))
    hf_model = DepthAnythingForDepthEstimation(config).eval()
    version = 5 if any(".attention.q_proj." in k for k in hf_model.state_dict()) else 4
    state = official_state_dict(model)
    hf_model.load_state_dict(to_transformers_state(state, version), strict=True)
    return hf_model


def save_transformers(model, folder: str | Path) -> Path:
    """Write a transformers-format folder (config.json, model.safetensors, preprocessor_config.json).

    transformers no longer ships a conversion script for Depth Anything; this is one.

    Example:
        >>> save_transformers(DepthAnything.from_pretrained("depth_anything_v2_vits.pth"), "da2-small-hf")  # doctest: +SKIP
    """
    folder = Path(folder)
    to_transformers(model).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2))
    return folder

