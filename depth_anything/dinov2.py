"""DINOv2 ViT/14 on timm's VisionTransformer: the encoder of Depth Anything v1 / v2 and its video and v3 kin.

Parameter names follow the official checkpoints (`cls_token`, `pos_embed`, `blocks.{i}.*`, `norm`), and the
position-embedding resize follows the official rule, which timm and transformers do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import SwiGLUPacked
from timm.models.vision_transformer import Block, VisionTransformer

from .configs import EncoderConfig
from .options import PATCH

POS_GRID = 37  # DINOv2 stores position embeddings for a 37 x 37 patch grid (518 x 518 pixels)


class LayerScaleBlock(Block):
    """timm's pre-norm ViT block with the LayerScale multiply fused into the residual add (one pass less)."""

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        x = torch.addcmul(x, self.ls1.gamma, self.attn(self.norm1(x), attn_mask=attn_mask, is_causal=is_causal))
        return torch.addcmul(x, self.ls2.gamma, self.mlp(self.norm2(x)))


class DinoV2Encoder(VisionTransformer):
    """DINOv2 ViT/14 with the official position-embedding resize; `forward_taps` gives the DPT head's inputs."""

    def __init__(self, cfg: EncoderConfig):
        mlp = dict(mlp_layer=SwiGLUPacked, act_layer=nn.SiLU, mlp_ratio=2.66667 * 2) if cfg.swiglu else {}
        super().__init__(
            img_size=POS_GRID * PATCH,
            patch_size=PATCH,
            embed_dim=cfg.embed_dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            qkv_bias=True,
            init_values=1.0,
            num_classes=0,
            dynamic_img_size=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            block_fn=LayerScaleBlock,
            **mlp,
        )
        # Used only in DINOv2 training; kept so that official state dicts load strictly.
        self.mask_token = nn.Parameter(torch.zeros(1, cfg.embed_dim))

    def position_embedding(self, patch_h: int, patch_w: int) -> torch.Tensor:
        """(1, 1 + patch_h * patch_w, C) position embedding for a patch grid.

        The official code resizes the 37 x 37 grid with bicubic using the scale factor (n + 0.1) / 37 rather than
        the target size; the two give different embeddings, so parity at every input size needs this rule.
        """
        if patch_h == POS_GRID and patch_w == POS_GRID:
            return self.pos_embed
        pos = self.pos_embed.float()
        cls_pos, grid = pos[:, :1], pos[:, 1:]
        dim = grid.shape[-1]
        grid = grid.reshape(1, POS_GRID, POS_GRID, dim).permute(0, 3, 1, 2)
        scale = ((patch_h + 0.1) / POS_GRID, (patch_w + 0.1) / POS_GRID)
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", align_corners=False, antialias=False)
        if grid.shape[-2:] != (patch_h, patch_w):  # pragma: no cover - the +0.1 offset prevents this
            raise RuntimeError(f"position embedding resized to {tuple(grid.shape[-2:])}, wanted {(patch_h, patch_w)}")
        grid = grid.permute(0, 2, 3, 1).reshape(1, patch_h * patch_w, dim)
        return torch.cat([cls_pos, grid], dim=1).to(self.pos_embed.dtype)

    def forward_taps(self, x: torch.Tensor, taps: Sequence[int]) -> list[torch.Tensor]:
        """Normalised patch tokens (B, N, C), class token dropped, after each block in `taps`."""
        batch, _, height, width = x.shape
        x = self.patch_embed(x).flatten(1, 2)  # NHWC -> (B, N, C)
        x = torch.cat([self.cls_token.expand(batch, -1, -1), x], dim=1)
        x = x + self.position_embedding(height // PATCH, width // PATCH).to(x.dtype)
        outputs = []
        for i, block in enumerate(self.blocks[: max(taps) + 1]):
            x = block(x)
            if i in taps:
                outputs.append(self.norm(x)[:, 1:])
        return outputs
