"""Temporal modules of Video Depth Anything: attention along time at every spatial position (AnimateDiff style).

A `TemporalModule` takes the feature maps of the frames of a clip, (frames, C, h, w), and lets each position
attend to the same position in the other frames: one transformer block of two self-attentions and a GEGLU
feed-forward, pre-norm, with a fixed sinusoidal table of frame positions added before each attention. Its output
projection is zero-initialised in training, so an untrained module is the identity.

Module and parameter names follow the official checkpoints (`head.motion_modules.{i}.temporal_transformer.*`).

Streaming: each attention also returns its (normalised) input, what later frames attend to. Given those of
earlier frames as `cache`, a module computes one new frame from the earlier ones without recomputing them.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

HEADS = 8
MAX_FRAMES = 32  # frames the position table covers: the longest clip one pass can see
SEQUENCES = 8192  # sequences (positions) per attention call


class SinusoidalPositions(nn.Module):
    """Adds the transformer's fixed sine / cosine table of positions (here: frames) to a (N, frames, C) input."""

    def __init__(self, dim: int, max_len: int = MAX_FRAMES):
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32)[:, None]
        frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
        pe = torch.zeros(1, max_len, dim)
        pe[0, :, 0::2] = torch.sin(position * frequency)
        pe[0, :, 1::2] = torch.cos(position * frequency)
        self.register_buffer("pe", pe)  # saved in the official checkpoints, so loaded from them

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[1]
        if frames > self.pe.shape[1]:
            raise ValueError(f"a temporal module sees at most {self.pe.shape[1]} frames at once, got {frames}.")
        return x + self.pe[:, :frames].to(x.dtype)


class TemporalAttention(nn.Module):
    """Multi-head self-attention over frames; queries come from the new frames only when earlier ones are cached."""

    def __init__(self, dim: int, heads: int = HEADS):
        super().__init__()
        self.heads = heads
        self.pos_encoder = SinusoidalPositions(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])  # index 0 as in the checkpoints (1 was a dropout)

    def forward(self, x: torch.Tensor, cache: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N, frames, C) normalised input of the new frames; cache: (N, earlier, C) that of earlier frames."""
        context = x if cache is None else torch.cat([cache, x], dim=1)
        context = self.pos_encoder(context)  # positions count the cached frames first
        query = context[:, context.shape[1] - x.shape[1] :]
        q, k, v = (
            rearrange(t, "n f (h d) -> n h f d", h=self.heads)
            for t in (self.to_q(query), self.to_k(context), self.to_v(context))
        )
        # Sequences are independent; in parts, because CUDA attention kernels fail on batches above 65535 (a
        # high-resolution map has more positions than that).
        parts = zip(q.split(SEQUENCES), k.split(SEQUENCES), v.split(SEQUENCES))
        out = torch.cat([F.scaled_dot_product_attention(*part) for part in parts])
        return self.to_out[0](rearrange(out, "n h f d -> n f (h d)"))


class GEGLU(nn.Module):
    """Linear to twice the width, then value * gelu(gate)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(dim, hidden * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        # Indices as in the checkpoints: 0 the GEGLU, 1 a dropout (inactive), 2 the output projection.
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TemporalTransformerBlock(nn.Module):
    """Two pre-norm self-attentions over frames and a pre-norm feed-forward, each with a residual add."""

    def __init__(self, dim: int, heads: int = HEADS, attentions: int = 2):
        super().__init__()
        self.attention_blocks = nn.ModuleList([TemporalAttention(dim, heads) for _ in range(attentions)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(attentions)])
        self.ff = FeedForward(dim)
        self.ff_norm = nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, cache: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(N, frames, C) -> the same, and each attention's normalised input (for a later frame's `cache`)."""
        states = []
        for i, (attention, norm) in enumerate(zip(self.attention_blocks, self.norms)):
            normed = norm(x)
            x = x + attention(normed, None if cache is None else cache[i])
            states.append(normed)
        x = x + self.ff(self.ff_norm(x))
        return x, states


class TemporalTransformer(nn.Module):
    def __init__(self, channels: int, heads: int = HEADS, groups: int = 32):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TemporalTransformerBlock(channels, heads)])
        self.proj_out = nn.Linear(channels, channels)

    def forward(
        self, x: torch.Tensor, frames: int, cache: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        height, width = x.shape[-2:]
        # Every spatial position of every clip becomes one sequence of `frames` tokens.
        tokens = rearrange(self.norm(x), "(b f) c h w -> (b h w) f c", f=frames)
        tokens = self.proj_in(tokens)
        states = []
        for block in self.transformer_blocks:
            tokens, block_states = block(tokens, cache)
            states.extend(block_states)
        tokens = self.proj_out(tokens)
        return x + rearrange(tokens, "(b h w) f c -> (b f) c h w", h=height, w=width), states


class TemporalModule(nn.Module):
    """Feature maps of clips, ((clips frames), C, h, w) -> the same, each position mixed with itself over time.

    Example:
        >>> module = TemporalModule(64)
        >>> module(torch.zeros(2 * 5, 64, 3, 4), frames=5)[0].shape
        torch.Size([10, 64, 3, 4])
    """

    def __init__(self, channels: int, heads: int = HEADS):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, heads)

    def forward(
        self, x: torch.Tensor, frames: int, cache: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Returns the mixed maps and what later frames attend to (one tensor per attention, (N, frames, C)).

        With `cache` (those tensors of earlier frames, concatenated along frames), `x` holds only new frames.
        """
        return self.temporal_transformer(x, frames, cache)
