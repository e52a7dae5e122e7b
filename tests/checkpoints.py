"""Random-initialised checkpoints in the official key layouts (Depth Anything v1 / v2 / metric, Video Depth
Anything), written from the published spec.

Written independently of depth_anything's model code, so that loading one proves the layout, not a round trip.
Values are scaled so that every layer matters (LayerScale around 0.1-0.5, not DINOv2's 1e-5 init) and outputs
vary across the image.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

# encoder: (dim, depth, features, out_channels)
SPEC = {
    "vits": (384, 12, 64, (48, 96, 192, 384)),
    "vitb": (768, 12, 128, (96, 192, 384, 768)),
    "vitl": (1024, 24, 256, (256, 512, 1024, 1024)),
    "vitg": (1536, 40, 384, (1536, 1536, 1536, 1536)),
}


def official_shapes(encoder: str) -> dict[str, tuple[int, ...]]:
    dim, depth, features, out_channels = SPEC[encoder]
    shapes: dict[str, tuple[int, ...]] = {
        "pretrained.cls_token": (1, 1, dim),
        "pretrained.pos_embed": (1, 37 * 37 + 1, dim),
        "pretrained.mask_token": (1, dim),
        "pretrained.patch_embed.proj.weight": (dim, 3, 14, 14),
        "pretrained.patch_embed.proj.bias": (dim,),
        "pretrained.norm.weight": (dim,),
        "pretrained.norm.bias": (dim,),
    }
    for i in range(depth):
        b = f"pretrained.blocks.{i}."
        shapes.update({
            b + "norm1.weight": (dim,), b + "norm1.bias": (dim,),
            b + "attn.qkv.weight": (3 * dim, dim), b + "attn.qkv.bias": (3 * dim,),
            b + "attn.proj.weight": (dim, dim), b + "attn.proj.bias": (dim,),
            b + "ls1.gamma": (dim,),
            b + "norm2.weight": (dim,), b + "norm2.bias": (dim,),
            b + "ls2.gamma": (dim,),
        })
        if encoder == "vitg":
            shapes.update({
                b + "mlp.w12.weight": (8192, dim), b + "mlp.w12.bias": (8192,),
                b + "mlp.w3.weight": (dim, 4096), b + "mlp.w3.bias": (dim,),
            })
        else:
            shapes.update({
                b + "mlp.fc1.weight": (4 * dim, dim), b + "mlp.fc1.bias": (4 * dim,),
                b + "mlp.fc2.weight": (dim, 4 * dim), b + "mlp.fc2.bias": (dim,),
            })
    h = "depth_head."
    for i, c in enumerate(out_channels):
        shapes[f"{h}projects.{i}.weight"] = (c, dim, 1, 1)
        shapes[f"{h}projects.{i}.bias"] = (c,)
        shapes[f"{h}scratch.layer{i + 1}_rn.weight"] = (features, c, 3, 3)
    for i, k in ((0, 4), (1, 2)):
        c = out_channels[i]
        shapes[f"{h}resize_layers.{i}.weight"] = (c, c, k, k)  # ConvTranspose2d: (in, out, k, k)
        shapes[f"{h}resize_layers.{i}.bias"] = (c,)
    shapes[f"{h}resize_layers.3.weight"] = (out_channels[3], out_channels[3], 3, 3)
    shapes[f"{h}resize_layers.3.bias"] = (out_channels[3],)
    for r in range(1, 5):
        p = f"{h}scratch.refinenet{r}."
        shapes[p + "out_conv.weight"] = (features, features, 1, 1)
        shapes[p + "out_conv.bias"] = (features,)
        for u in (1, 2):
            for c in (1, 2):
                shapes[f"{p}resConfUnit{u}.conv{c}.weight"] = (features, features, 3, 3)
                shapes[f"{p}resConfUnit{u}.conv{c}.bias"] = (features,)
    shapes[f"{h}scratch.output_conv1.weight"] = (features // 2, features, 3, 3)
    shapes[f"{h}scratch.output_conv1.bias"] = (features // 2,)
    shapes[f"{h}scratch.output_conv2.0.weight"] = (32, features // 2, 3, 3)
    shapes[f"{h}scratch.output_conv2.0.bias"] = (32,)
    shapes[f"{h}scratch.output_conv2.2.weight"] = (1, 32, 1, 1)
    shapes[f"{h}scratch.output_conv2.2.bias"] = (1,)
    return shapes


def _random_value(key: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """One tensor with values that keep activations in a sensible range."""
    if key.endswith(("norm1.weight", "norm2.weight", "norm.weight")) or (".norms." in key and key.endswith("weight")):
        return 1.0 + 0.1 * torch.randn(shape, generator=gen)
    if key.endswith("gamma"):
        return 0.1 + 0.4 * torch.rand(shape, generator=gen)
    if key.endswith("bias"):
        return 0.02 * torch.randn(shape, generator=gen)
    if key.endswith(("pos_embed", "cls_token", "mask_token")):
        return 0.5 * torch.randn(shape, generator=gen)
    fan_in = int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1
    if "resize_layers.0" in key or "resize_layers.1" in key:
        fan_in = shape[0]  # transposed conv: input channels come first
    return torch.randn(shape, generator=gen) * (1.0 / fan_in) ** 0.5


def random_state_dict(encoder: str = "vits", seed: int = 0) -> dict[str, torch.Tensor]:
    """Official-layout tensors with values that keep activations in a sensible range."""
    gen = torch.Generator().manual_seed(seed)
    state = {key: _random_value(key, shape, gen).contiguous() for key, shape in official_shapes(encoder).items()}
    # A positive final bias keeps relative models' ReLU output mostly above zero, so maps are not flat.
    state["depth_head.scratch.output_conv2.2.bias"] = torch.tensor([1.0])
    return state


# ------------------------------------------------------------------------------------- Video Depth Anything


def _sinusoid_table(frames: int, dim: int) -> torch.Tensor:
    """The transformer's fixed position table (1, frames, dim): sin on even channels, cos on odd, wavelengths
    rising geometrically to 10000 (a buffer the official checkpoints store)."""
    table = torch.zeros(1, frames, dim)
    for t in range(frames):
        for j in range(0, dim, 2):
            angle = t / 10000 ** (j / dim)
            table[0, t, j] = math.sin(angle)
            table[0, t, j + 1] = math.cos(angle)
    return table


def video_official_shapes(encoder: str) -> dict[str, tuple[int, ...]]:
    """Video Depth Anything's keys: v2's encoder, the v2 head under `head.*`, and four temporal modules."""
    _dim, _depth, features, out_channels = SPEC[encoder]
    shapes = {k.replace("depth_head.", "head.", 1): v for k, v in official_shapes(encoder).items()}
    for m, c in enumerate((out_channels[2], out_channels[3], features, features)):
        t = f"head.motion_modules.{m}.temporal_transformer."
        shapes.update({t + "norm.weight": (c,), t + "norm.bias": (c,), t + "proj_in.weight": (c, c),
                       t + "proj_in.bias": (c,)})
        b = t + "transformer_blocks.0."
        for a in (0, 1):
            p = f"{b}attention_blocks.{a}."
            shapes.update({p + "pos_encoder.pe": (1, 32, c), p + "to_q.weight": (c, c), p + "to_k.weight": (c, c),
                           p + "to_v.weight": (c, c), p + "to_out.0.weight": (c, c), p + "to_out.0.bias": (c,)})
            shapes.update({f"{b}norms.{a}.weight": (c,), f"{b}norms.{a}.bias": (c,)})
        shapes.update({b + "ff.net.0.proj.weight": (8 * c, c), b + "ff.net.0.proj.bias": (8 * c,),
                       b + "ff.net.2.weight": (c, 4 * c), b + "ff.net.2.bias": (c,),
                       b + "ff_norm.weight": (c,), b + "ff_norm.bias": (c,)})
        shapes.update({t + "proj_out.weight": (c, c), t + "proj_out.bias": (c,)})
    return shapes


def random_video_state_dict(encoder: str = "vits", seed: int = 0) -> dict[str, torch.Tensor]:
    """Video Depth Anything tensors in the official layout, seeded. The temporal modules' output projections,
    zero-initialised in training, are random here so that the modules change the depth (and bugs show)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in video_official_shapes(encoder).items():
        state[key] = _sinusoid_table(*shape[1:]) if key.endswith("pe") else _random_value(key, shape, gen).contiguous()
    state["head.scratch.output_conv2.2.bias"] = torch.tensor([1.0])
    return state


def write_video_checkpoint(path: str | Path, encoder: str = "vits", seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
    """Write a random Video Depth Anything checkpoint; the format follows the suffix (.pth or .safetensors)."""
    return _save({k: v.to(dtype) for k, v in random_video_state_dict(encoder, seed).items()}, Path(path))


def write_checkpoint(path: str | Path, encoder: str = "vits", seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
    """Write a random official-layout checkpoint; the format follows the suffix (.pth/.pt/.bin or .safetensors)."""
    return _save({k: v.to(dtype) for k, v in random_state_dict(encoder, seed).items()}, Path(path))


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path
