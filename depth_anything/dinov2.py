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


def capturing_graph() -> bool:
    """True while the network is traced or exported to a graph (sizes are then symbols, not numbers)."""
    exporting = getattr(torch.compiler, "is_exporting", lambda: False)()
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or exporting


def bicubic_matrix(size_out, size_in: int) -> torch.Tensor:
    """(size_out, size_in) matrix M with M @ v = 1-D bicubic resize of v by scale (size_out + 0.1) / size_in.

    PyTorch's bicubic (A = -0.75, half-pixel centres, edge samples repeated) with the official +0.1 scale
    factor, as tensor operations so that `size_out` may be a traced size.
    """
    size_out = torch.as_tensor(size_out)
    # Sample positions (i + 0.5) / scale - 0.5 with scale = (size_out + 0.1) / size_in, written over integers so
    # that each is one correctly rounded float32 division (0.1 has no exact float32 form).
    twice_target = 2 * torch.arange(size_out) + 1
    denominator = 2 * (10 * size_out + 1)
    source = (twice_target * (10 * size_in) - (10 * size_out + 1)).to(torch.float32) / denominator.to(torch.float32)
    first = torch.floor(source)
    t = source - first
    a = -0.75
    near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1  # noqa: E731 - |x| <= 1
    far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # noqa: E731 - 1 < |x| < 2
    weights = (far(t + 1), near(t), near(1 - t), far(2 - t))
    columns = torch.arange(size_in)
    matrix = torch.zeros(())
    for offset, weight in zip((-1, 0, 1, 2), weights):
        index = (first.to(torch.int64) + offset).clamp(0, size_in - 1)
        matrix = matrix + weight[:, None] * (index[:, None] == columns[None, :]).to(torch.float32)
    return matrix


def _eye(rows, columns: int) -> torch.Tensor:
    """A (rows, columns) matrix with ones on the diagonal, for a traced `rows`."""
    return (torch.arange(rows)[:, None] == torch.arange(columns)[None, :]).to(torch.float32)


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
        if capturing_graph():  # sizes are symbols of an exported graph: the same rule as tensor operations
            return self._position_embedding_graph(patch_h, patch_w)
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

    def _position_embedding_graph(self, patch_h, patch_w) -> torch.Tensor:
        """`position_embedding` for a graph whose input size is only known when it runs (ONNX, TensorRT).

        Bicubic resizing is linear and separable, so the grid is resized by two small matrices built from the
        patch counts at run time (`bicubic_matrix`), with the official +0.1 scale factor; a 37-patch side keeps
        the stored grid, as the eager rule does. Equal to `F.interpolate` up to float rounding (tested).
        """
        pos = self.pos_embed.float()
        cls_pos, grid = pos[:, :1], pos[:, 1:]
        dim = grid.shape[-1]
        grid = grid.reshape(POS_GRID, POS_GRID, dim).permute(2, 0, 1)  # (C, 37, 37)
        rows, cols = bicubic_matrix(patch_h, POS_GRID), bicubic_matrix(patch_w, POS_GRID)
        stored = (torch.as_tensor(patch_h) == POS_GRID) & (torch.as_tensor(patch_w) == POS_GRID)
        rows = torch.where(stored, _eye(patch_h, POS_GRID), rows)  # (patch_h, 37) either way
        cols = torch.where(stored, _eye(patch_w, POS_GRID), cols)
        grid = torch.matmul(torch.matmul(rows, grid), cols.transpose(0, 1))  # (C, patch_h, patch_w)
        grid = grid.permute(1, 2, 0).reshape(1, -1, dim)
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
