"""Random-initialised Depth Anything checkpoints in the official key layout, written from the published spec.

Written independently of depth_anything's model code, so that loading one proves the layout, not a round trip.
Values are scaled so that every layer matters (LayerScale around 0.1-0.5, not DINOv2's 1e-5 init) and outputs
vary across the image.
"""

from __future__ import annotations

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


def random_state_dict(encoder: str = "vits", seed: int = 0) -> dict[str, torch.Tensor]:
    """Official-layout tensors with values that keep activations in a sensible range."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_shapes(encoder).items():
        if key.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif key.endswith("gamma"):
            t = 0.1 + 0.4 * torch.rand(shape, generator=gen)
        elif key.endswith("bias"):
            t = 0.02 * torch.randn(shape, generator=gen)
        elif key.endswith(("pos_embed", "cls_token", "mask_token")):
            t = 0.5 * torch.randn(shape, generator=gen)
        else:
            fan_in = int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1
            if "resize_layers.0" in key or "resize_layers.1" in key:
                fan_in = shape[0]  # transposed conv: input channels come first
            t = torch.randn(shape, generator=gen) * (1.0 / fan_in) ** 0.5
        state[key] = t.contiguous()
    # A positive final bias keeps relative models' ReLU output mostly above zero, so maps are not flat.
    state["depth_head.scratch.output_conv2.2.bias"] = torch.tensor([1.0])
    return state


def write_checkpoint(path: str | Path, encoder: str = "vits", seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
    """Write a random official-layout checkpoint; the format follows the suffix (.pth/.pt/.bin or .safetensors)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.to(dtype) for k, v in random_state_dict(encoder, seed).items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path
