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


# ----------------------------------------------------------------------------------- Depth Anything 3

# variant: (encoder, any-view). Mono and metric share one network; any-view models add qk-norm from block 4, a
# camera token, doubled head input tokens with a LayerNorm, two output channels (depth, confidence), no sky head.
DA3_VARIANTS = {
    "mono_large": ("vitl", False), "metric_large": ("vitl", False), "small": ("vits", True), "base": ("vitb", True),
}
DA3_HEADS = {"vits": 6, "vitb": 12, "vitl": 16}


def da3_shapes(variant: str) -> dict[str, tuple[int, ...]]:
    """The tensors of the depth path of an official DA3 state dict (`backbone.pretrained.*`, `head.*`), from the
    release's configs; the any-view models' camera encoder / decoder and ray branch are left out."""
    encoder, any_view = DA3_VARIANTS[variant]
    dim, depth, features, out_channels = SPEC[encoder]
    head_dim = dim // DA3_HEADS[encoder]
    shapes: dict[str, tuple[int, ...]] = {}
    for key, shape in official_shapes(encoder).items():
        if key.startswith("pretrained.") and key != "pretrained.mask_token":
            shapes["backbone." + key] = shape
    if any_view:
        shapes["backbone.pretrained.camera_token"] = (1, 2, dim)
        for i in range(4, depth):
            for part in ("q_norm", "k_norm"):
                shapes[f"backbone.pretrained.blocks.{i}.attn.{part}.weight"] = (head_dim,)
                shapes[f"backbone.pretrained.blocks.{i}.attn.{part}.bias"] = (head_dim,)
    head_in = 2 * dim if any_view else dim
    for key, shape in official_shapes(encoder).items():
        if not key.startswith("depth_head."):
            continue
        if key.startswith("depth_head.scratch.refinenet4.resConfUnit1."):
            continue  # DA3's coarsest fusion block has no skip branch
        if key.startswith("depth_head.projects.") and key.endswith("weight"):
            shape = (shape[0], head_in, 1, 1)
        if key == "depth_head.scratch.output_conv2.2.weight" and any_view:
            shape = (2, 32, 1, 1)
        if key == "depth_head.scratch.output_conv2.2.bias" and any_view:
            shape = (2,)
        shapes["head." + key.removeprefix("depth_head.")] = shape
    if any_view:
        shapes["head.norm.weight"] = (head_in,)
        shapes["head.norm.bias"] = (head_in,)
    else:
        shapes["head.scratch.sky_output_conv2.0.weight"] = (32, features // 2, 3, 3)
        shapes["head.scratch.sky_output_conv2.0.bias"] = (32,)
        shapes["head.scratch.sky_output_conv2.2.weight"] = (1, 32, 1, 1)
        shapes["head.scratch.sky_output_conv2.2.bias"] = (1,)
    return shapes


def random_da3_tensor(key: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """A random value for one official DA3 tensor, scaled as `random_state_dict` scales v1 / v2's."""
    if key.endswith(("norm1.weight", "norm2.weight", "norm.weight", "q_norm.weight", "k_norm.weight")):
        return 1.0 + 0.1 * torch.randn(shape, generator=gen)
    if key.endswith("gamma"):
        return 0.1 + 0.4 * torch.rand(shape, generator=gen)
    if key.endswith("bias") or len(shape) == 1:
        return 0.02 * torch.randn(shape, generator=gen)
    if key.endswith(("pos_embed", "cls_token", "camera_token")):
        return 0.5 * torch.randn(shape, generator=gen)
    fan_in = shape[0] if ("resize_layers.0" in key or "resize_layers.1" in key) else int(torch.tensor(shape[1:]).prod())
    return torch.randn(shape, generator=gen) * (1.0 / fan_in) ** 0.5


def random_da3_state_dict(
    variant: str = "small", seed: int = 0, shapes: dict | None = None, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """Official-layout DA3 tensors (the depth path, or every tensor of `shapes`) with sensible activations: depth
    logits near 0 (depth = exp), and for mono / metric a sky probability that crosses the release's 0.3 threshold
    in some places. Each tensor is cast to `dtype` as it is drawn (a large model never exists twice)."""
    gen = torch.Generator().manual_seed(seed)
    shapes = da3_shapes(variant) if shapes is None else shapes
    state = {key: random_da3_tensor(key, shape, gen).to(dtype).contiguous() for key, shape in shapes.items()}
    if "head.scratch.sky_output_conv2.2.bias" in state:
        state["head.scratch.sky_output_conv2.2.bias"] = torch.tensor([-2.0], dtype=dtype)  # random heads lean to "sky"
    return state


def da3_mono_state(seed: int = 5) -> dict[str, torch.Tensor]:
    """The DA3MONO-LARGE weights the tests share (conftest writes them as a file; the parity tests load them into
    the release's network): seeded random, in fp16 as the file stores them."""
    return random_da3_state_dict("mono_large", seed, dtype=torch.float16)


def comfyui_da3_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official DA3 state dict in the layout of ComfyUI core's DA3 network (the Comfy-Org repacks): its DINOv2
    with transformers-style names (query / key / value apart), the head as released."""
    out = {}
    renames = {"cls_token": "embeddings.cls_token", "pos_embed": "embeddings.position_embeddings",
               "camera_token": "embeddings.camera_token", "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias",
               "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
               "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias"}  # fmt: skip
    for key, value in state.items():
        if not key.startswith("backbone.pretrained."):
            out[key] = value
            continue
        name = key.removeprefix("backbone.pretrained.")
        if name in renames:
            out["backbone." + renames[name]] = value
            continue
        _, index, rest = name.split(".", 2)
        layer = f"backbone.encoder.layer.{index}."
        if rest.startswith("attn.qkv."):
            for part, chunk in zip(("query", "key", "value"), value.chunk(3)):
                out[f"{layer}attention.attention.{part}.{rest.rsplit('.', 1)[1]}"] = chunk.clone()
        else:
            rest = (rest.replace("attn.proj.", "attention.output.dense.").replace("attn.q_norm.", "attention.q_norm.")
                    .replace("attn.k_norm.", "attention.k_norm.").replace("ls1.gamma", "layer_scale1.lambda1")
                    .replace("ls2.gamma", "layer_scale2.lambda1"))  # fmt: skip
            out[layer + rest] = value
    return out


def write_da3_checkpoint(
    path: str | Path, variant: str = "small", seed: int = 0, *, layout: str = "official",
    state: dict[str, torch.Tensor] | None = None, dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a random DA3 checkpoint: layout "official" (the release's keys), "hf" (under `model.`, as the Hub's
    model.safetensors) or "comfyui" (Comfy-Org's repack layout). The format follows the suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = random_da3_state_dict(variant, seed) if state is None else state
    if layout == "comfyui":
        state = comfyui_da3_names(state)
    elif layout == "hf":
        state = {"model." + k: v for k, v in state.items()}
    elif layout != "official":
        raise ValueError(f"unknown layout {layout!r}")
    state = {k: v.to(dtype).contiguous() for k, v in state.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path
