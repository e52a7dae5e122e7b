"""The DPT depth head of Depth Anything.

Module and parameter names follow the official checkpoints (`depth_head.*`; Video Depth Anything's `head.*` adds
temporal modules around the same layers), so a released state dict loads without renaming. Depth Anything 3's
head (`depth_anything.families.depth_anything_3`) is this one with other output branches; it reuses
`DPTHead.fuse` and the building blocks here.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(x))  # x itself is the skip: no in-place here
        out = self.conv2(F.relu(out, inplace=True))
        return out.add_(x)


class FeatureFusionBlock(nn.Module):
    """Adds the skip feature, refines, upsamples (to `size`, or x2) and projects.

    `skip=False` builds the coarsest block without the skip branch's weights (v1 / v2 checkpoints hold them
    although that block never gets a skip input; Depth Anything 3's do not).
    """

    def __init__(self, features: int, skip: bool = True):
        super().__init__()
        if skip:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, size=None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


def output_branch(features: int, channels: int = 1, *activation: nn.Module) -> nn.Sequential:
    """The last layers of a head: 3x3 conv to 32 channels, ReLU, 1x1 conv to `channels`, then `activation`."""
    return nn.Sequential(nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, channels, 1), *activation)


class Scratch(nn.Module):
    """Holds the head's shared layers under the official `scratch.*` names."""

    def __init__(self, out_channels: tuple[int, int, int, int], features: int, metric: bool):
        super().__init__()
        for i, channels in enumerate(out_channels, start=1):
            setattr(self, f"layer{i}_rn", nn.Conv2d(channels, features, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self, f"refinenet{i}", FeatureFusionBlock(features))
        self.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        # Relative models end in ReLU (disparity >= 0); metric models in a sigmoid scaled by max_depth.
        self.output_conv2 = output_branch(features, 1, nn.Sigmoid() if metric else nn.ReLU())


class DPTHead(nn.Module):
    """Turns four ViT token maps into one dense map at the input resolution.

    Each tapped token map is projected (1x1), brought to strides 4, 8, 16 and 32 of the input, mapped to
    `features` channels and fused coarse-to-fine; the result is upsampled to the input size and reduced to one
    channel.
    """

    def __init__(self, embed_dim: int, features: int, out_channels: tuple[int, int, int, int], metric: bool = False):
        super().__init__()
        self.projects = nn.ModuleList([nn.Conv2d(embed_dim, c, 1) for c in out_channels])
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(out_channels[0], out_channels[0], 4, stride=4),
                nn.ConvTranspose2d(out_channels[1], out_channels[1], 2, stride=2),
                nn.Identity(),
                nn.Conv2d(out_channels[3], out_channels[3], 3, stride=2, padding=1),
            ]
        )
        self.scratch = Scratch(out_channels, features, metric)

    def project(self, i: int, tokens: torch.Tensor, patch_h: int, patch_w: int) -> torch.Tensor:
        """Tap `i`'s tokens (B, patch_h * patch_w, C) -> its 1x1 projection (B, out_channels[i], patch_h, patch_w)."""
        return self.projects[i](rearrange(tokens, "b (h w) c -> b c h w", h=patch_h, w=patch_w))

    def reassemble(self, index: int, tokens: torch.Tensor, patch_h: int, patch_w: int) -> torch.Tensor:
        """One tapped token map (B, N, C) -> the feature map of its pyramid level."""
        return self.resize_layers[index](self.project(index, tokens, patch_h, patch_w))

    def output(self, path: torch.Tensor, patch_h: int, patch_w: int) -> torch.Tensor:
        """The finest fused map -> (B, 1, 14 patch_h, 14 patch_w): reduce, upsample to the input size, predict."""
        out = self.scratch.output_conv1(path)
        out = F.interpolate(out, size=(patch_h * 14, patch_w * 14), mode="bilinear", align_corners=True)
        return self.scratch.output_conv2(out)

    def fuse(self, tokens: list[torch.Tensor], patch_h: int, patch_w: int) -> torch.Tensor:
        """Four token maps -> the finest fused map (after refinenet1, stride 2 of the patch grid)."""
        layers = [self.reassemble(i, x, patch_h, patch_w) for i, x in enumerate(tokens)]
        s = self.scratch
        l1, l2, l3, l4 = (getattr(s, f"layer{i}_rn")(x) for i, x in enumerate(layers, start=1))
        path = s.refinenet4(l4, size=l3.shape[2:])
        path = s.refinenet3(path, l3, size=l2.shape[2:])
        path = s.refinenet2(path, l2, size=l1.shape[2:])
        path = s.refinenet1(path, l1)
        return path

    def forward(self, tokens: list[torch.Tensor], patch_h: int, patch_w: int) -> torch.Tensor:
        """tokens: four (B, patch_h * patch_w, C) maps without the class token -> (B, 1, 14 patch_h, 14 patch_w)."""
        return self.output(self.fuse(tokens, patch_h, patch_w), patch_h, patch_w)
