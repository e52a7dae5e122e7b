"""Random-initialised Stable Diffusion 1.5-shaped checkpoint and depth ControlNet, small enough for CPU tests.

Written from the original (LDM / ControlNet v1.1) key layouts, which ComfyUI detects by shape: its SD1.5 match
needs only model_channels 320, context_dim 768, conv (not linear) transformer projections and no class embedding,
so a UNet with one level, one residual block and one transformer block is loaded as SD1.5. The VAE is stored in
the TAESD layout (ComfyUI detects it inside a checkpoint). There is no text encoder: ComfyUI builds CLIP-L from a
fixed config (250 MB even when random), so the tests give the sampler its conditioning from a test node
(tests/nodes_probe.py, TestConditioning) and the checkpoint loader returns no CLIP.
"""

from __future__ import annotations

from pathlib import Path

import torch

CHANNELS = 320  # SD1.5's model_channels
TIME_EMBED = 4 * CHANNELS
CONTEXT = 768  # CLIP-L width
HINT_CHANNELS = (16, 16, 32, 32, 96, 96, 256)  # ControlNet's hint encoder (x8 down-sampling), then model_channels


def _res_block(prefix: str, cin: int, cout: int) -> dict[str, tuple[int, ...]]:
    shapes = {
        f"{prefix}in_layers.0.weight": (cin,),
        f"{prefix}in_layers.0.bias": (cin,),
        f"{prefix}in_layers.2.weight": (cout, cin, 3, 3),
        f"{prefix}in_layers.2.bias": (cout,),
        f"{prefix}emb_layers.1.weight": (cout, TIME_EMBED),
        f"{prefix}emb_layers.1.bias": (cout,),
        f"{prefix}out_layers.0.weight": (cout,),
        f"{prefix}out_layers.0.bias": (cout,),
        f"{prefix}out_layers.3.weight": (cout, cout, 3, 3),
        f"{prefix}out_layers.3.bias": (cout,),
    }
    if cin != cout:
        shapes[f"{prefix}skip_connection.weight"] = (cout, cin, 1, 1)
        shapes[f"{prefix}skip_connection.bias"] = (cout,)
    return shapes


def _spatial_transformer(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    block = f"{prefix}transformer_blocks.0."
    shapes = {
        f"{prefix}norm.weight": (c,),
        f"{prefix}norm.bias": (c,),
        f"{prefix}proj_in.weight": (c, c, 1, 1),
        f"{prefix}proj_in.bias": (c,),
        f"{prefix}proj_out.weight": (c, c, 1, 1),
        f"{prefix}proj_out.bias": (c,),
        f"{block}ff.net.0.proj.weight": (8 * c, c),  # GEGLU: value and gate of the 4c hidden layer
        f"{block}ff.net.0.proj.bias": (8 * c,),
        f"{block}ff.net.2.weight": (c, 4 * c),
        f"{block}ff.net.2.bias": (c,),
    }
    for attn, context in (("attn1", c), ("attn2", CONTEXT)):
        shapes[f"{block}{attn}.to_q.weight"] = (c, c)
        shapes[f"{block}{attn}.to_k.weight"] = (c, context)
        shapes[f"{block}{attn}.to_v.weight"] = (c, context)
        shapes[f"{block}{attn}.to_out.0.weight"] = (c, c)
        shapes[f"{block}{attn}.to_out.0.bias"] = (c,)
    for norm in ("norm1", "norm2", "norm3"):
        shapes[f"{block}{norm}.weight"] = (c,)
        shapes[f"{block}{norm}.bias"] = (c,)
    return shapes


def _time_embed(prefix: str) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}time_embed.0.weight": (TIME_EMBED, CHANNELS),
        f"{prefix}time_embed.0.bias": (TIME_EMBED,),
        f"{prefix}time_embed.2.weight": (TIME_EMBED, TIME_EMBED),
        f"{prefix}time_embed.2.bias": (TIME_EMBED,),
    }


def _encoder_level(prefix: str) -> dict[str, tuple[int, ...]]:
    """The input side shared by UNet and ControlNet: input conv, then one level of residual + transformer."""
    shapes = {f"{prefix}input_blocks.0.0.weight": (CHANNELS, 4, 3, 3), f"{prefix}input_blocks.0.0.bias": (CHANNELS,)}
    shapes.update(_res_block(f"{prefix}input_blocks.1.0.", CHANNELS, CHANNELS))
    shapes.update(_spatial_transformer(f"{prefix}input_blocks.1.1.", CHANNELS))
    shapes.update(_res_block(f"{prefix}middle_block.0.", CHANNELS, CHANNELS))  # no middle attention
    return shapes


def unet_shapes(prefix: str = "model.diffusion_model.") -> dict[str, tuple[int, ...]]:
    shapes = _time_embed(prefix)
    shapes.update(_encoder_level(prefix))
    for i in range(2):  # one per input block; each takes its skip connection (320 + 320 channels)
        shapes.update(_res_block(f"{prefix}output_blocks.{i}.0.", 2 * CHANNELS, CHANNELS))
    shapes.update({
        f"{prefix}out.0.weight": (CHANNELS,),
        f"{prefix}out.0.bias": (CHANNELS,),
        f"{prefix}out.2.weight": (4, CHANNELS, 3, 3),
        f"{prefix}out.2.bias": (4,),
    })  # fmt: skip
    return shapes


def controlnet_shapes(prefix: str = "control_model.") -> dict[str, tuple[int, ...]]:
    shapes = _time_embed(prefix)
    channels = (3, *HINT_CHANNELS, CHANNELS)
    for i, (cin, cout) in enumerate(zip(channels[:-1], channels[1:])):
        shapes[f"{prefix}input_hint_block.{2 * i}.weight"] = (cout, cin, 3, 3)
        shapes[f"{prefix}input_hint_block.{2 * i}.bias"] = (cout,)
    shapes.update(_encoder_level(prefix))
    for name in ("zero_convs.0.0", "zero_convs.1.0", "middle_block_out.0"):
        shapes[f"{prefix}{name}.weight"] = (CHANNELS, CHANNELS, 1, 1)
        shapes[f"{prefix}{name}.bias"] = (CHANNELS,)
    return shapes


def taesd_shapes(prefix: str = "first_stage_model.") -> dict[str, tuple[int, ...]]:
    """TAESD: 64-channel conv stacks; a Block is conv-relu-conv-relu-conv plus identity skip."""
    shapes: dict[str, tuple[int, ...]] = {f"{prefix}vae_scale": ()}

    def conv(name, cin, cout, bias=True):
        shapes[f"{name}.weight"] = (cout, cin, 3, 3)
        if bias:
            shapes[f"{name}.bias"] = (cout,)

    def block(name):
        for j in (0, 2, 4):
            conv(f"{name}.conv.{j}", 64, 64)

    # (first conv, residual blocks, bias-free 64->64 convs (stride or after upsampling), last conv) per half
    halves = {
        "taesd_encoder": ((0, 3, 64), (1, 3, 4, 5, 7, 8, 9, 11, 12, 13), (2, 6, 10), (14, 64, 4)),
        "taesd_decoder": ((1, 4, 64), (3, 4, 5, 8, 9, 10, 13, 14, 15, 18), (7, 12, 17), (19, 64, 3)),
    }
    for half, (first, blocks, plain, last) in halves.items():
        for index, cin, cout in (first, last):
            conv(f"{prefix}{half}.{index}", cin, cout)
        for index in blocks:
            block(f"{prefix}{half}.{index}")
        for index in plain:
            conv(f"{prefix}{half}.{index}", 64, 64, bias=False)
    return shapes


def random_tensors(shapes: dict[str, tuple[int, ...]], seed: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Values that keep activations in range: norms near 1, small biases, weights ~ 1/sqrt(fan_in)."""
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for key, shape in shapes.items():
        if key.endswith("vae_scale"):
            t = torch.tensor(1.0)
        elif len(shape) == 1 and key.endswith("weight"):  # group / layer norm scales (layer weights are 2-D+)
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif key.endswith("bias") or "embedding" in key:
            t = 0.02 * torch.randn(shape, generator=gen)
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod()))
            t = torch.randn(shape, generator=gen) * fan_in**-0.5
        tensors[key] = t.to(dtype).contiguous()
    return tensors


def write_sd15_checkpoint(path: str | Path, seed: int = 0) -> Path:
    """A single-file SD1.5-shaped checkpoint (UNet + TAESD-layout VAE, no text encoder) as .safetensors, fp16."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shapes = {**unet_shapes(), **taesd_shapes()}
    save_file(random_tensors(shapes, seed, torch.float16), str(path))
    return path


def write_sd15_controlnet(path: str | Path, seed: int = 1) -> Path:
    """An SD1.5-shaped ControlNet in the ControlNet v1.1 .pth layout (`control_model.` keys), fp16."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = random_tensors(controlnet_shapes(), seed, torch.float16)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(path))
    else:
        torch.save(tensors, path)
    return path
