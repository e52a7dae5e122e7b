"""Depth Anything v1 / v2 / v2-metric: a DINOv2 encoder (timm) and the DPT head, with official inference.

Parameter names follow the official checkpoints (`pretrained.*` for the encoder, `depth_head.*` for the head).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import SwiGLUPacked
from timm.models.vision_transformer import Block, VisionTransformer

from .configs import ENCODERS, EncoderConfig, Family, resolve_family
from .dpt import DPTHead
from .transforms import PATCH, ImageInput, normalize_for_model, processing_size, resize_prediction, to_image_list

POS_GRID = 37  # DINOv2 stores position embeddings for a 37 x 37 patch grid (518 x 518 pixels)


class LayerScaleBlock(Block):
    """timm's pre-norm ViT block with the LayerScale multiply fused into the residual add (one pass less)."""

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        x = torch.addcmul(x, self.ls1.gamma, self.attn(self.norm1(x), attn_mask=attn_mask, is_causal=is_causal))
        return torch.addcmul(x, self.ls2.gamma, self.mlp(self.norm2(x)))


class DinoV2Encoder(VisionTransformer):
    """DINOv2 ViT/14 on timm's VisionTransformer, with the official position-embedding resize."""

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


class DepthAnything(nn.Module):
    """Depth Anything v1, v2 or v2-metric.

    Relative models (v1, v2) predict affine-invariant disparity (near = large); metric models predict depth in
    metres. Build one with `DepthAnything.from_pretrained` and run it with `infer`.

    Example:
        >>> from depth_anything import DepthAnything, normalize
        >>> model = DepthAnything.from_pretrained("depth_anything_v2_vits")  # doctest: +SKIP
        >>> depth = model.infer(pil_image)  # (1, H, W) float32 disparity  # doctest: +SKIP
        >>> control = normalize(depth, metric=model.is_metric)  # [0, 1], near = 1  # doctest: +SKIP
    """

    def __init__(self, encoder: str = "vits", family: str | Family = "v2", max_depth: float | None = None):
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"Unknown encoder {encoder!r}; use one of {', '.join(ENCODERS)}.")
        self.config = ENCODERS[encoder]
        self.family = family if isinstance(family, Family) else resolve_family(family)
        if max_depth is not None and not self.family.is_metric:
            raise ValueError(f"max_depth applies to metric models only, not to family {self.family.name!r}.")
        self.max_depth = float(max_depth if max_depth is not None else self.family.max_depth or 0.0) or None
        self.taps = self.config.v1_taps if self.family.uses_v1_taps else self.config.v2_taps
        self.pretrained = DinoV2Encoder(self.config)
        self.depth_head = DPTHead(self.config.embed_dim, self.config.features, self.config.out_channels, self.is_metric)
        self.source: str | None = None

    @property
    def encoder(self) -> str:
        return self.config.name

    @property
    def is_metric(self) -> bool:
        return self.family.is_metric

    @property
    def device(self) -> torch.device:
        return self.pretrained.cls_token.device

    @property
    def dtype(self) -> torch.dtype:
        return self.pretrained.cls_token.dtype

    def extra_repr(self) -> str:
        return f"encoder={self.encoder}, family={self.family.name}, source={self.source}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, H, W), H and W multiples of 14 -> (B, H, W) disparity or metres."""
        height, width = x.shape[-2:]
        if height % PATCH or width % PATCH:
            raise ValueError(f"Input height and width must be multiples of {PATCH}, got {height}x{width}.")
        tokens = self.pretrained.forward_taps(x, self.taps)
        depth = self.depth_head(tokens, height // PATCH, width // PATCH).squeeze(1)
        return depth * self.max_depth if self.is_metric else depth

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        *,
        family: str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        cache_dir: str | Path | None = None,
    ) -> "DepthAnything":
        """Load an official checkpoint.

        Args:
            source: an official `.pth`, a `.safetensors` repack (fp16 or fp32), a transformers-format folder
                (config.json + model.safetensors), or a known model name from `depth_anything.list_models()`,
                downloaded on first use.
            family: "v1", "v2", "metric_indoor" or "metric_outdoor". v1 and v2 weights have identical keys, so
                this is needed when neither the file name nor a config.json tells.
            device: defaults to CUDA, then MPS, then CPU.
            dtype: "fp32", "fp16", "bf16" or a torch dtype; defaults to fp16 on CUDA / MPS and fp32 on CPU.
            cache_dir: where known models are downloaded (default: $DEPTH_ANYTHING_CACHE or
                ~/.cache/depth_anything).

        Example:
            >>> model = DepthAnything.from_pretrained("depth_anything_v2_vits", device="cpu")  # doctest: +SKIP
        """
        from .loading import load_model

        return load_model(cls, source, family=family, device=device, dtype=dtype, cache_dir=cache_dir)

    @torch.inference_mode()
    def infer(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        input_size: int = 518,
        max_size: int | None = None,
        batch_size: int = 8,
        progress: Callable[[int, int], None] | None = None,
        tiled: bool | str = False,
        tile: int | None = None,
        overlap: int | None = None,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Depth for one image or a batch, at each image's own size, with the official pre-processing.

        Args:
            images: a PIL image, numpy HW / HWC (uint8, uint16 or float in [0, 1]), torch (B, H, W, 3) in
                [0, 1] (ComfyUI's IMAGE) or (B, 3, H, W), or a list of these; sizes may differ.
            input_size: the short side the network sees (multiple of 14). Larger sees more detail.
            max_size: cap on the longest processed side (default 3 x input_size), so thin or huge images do
                not run out of memory.
            batch_size: images of one size (or tiles of one image) that go through the network together.
            progress: called as progress(done, total) after each batch; raise from it to stop. When tiling,
                it counts network passes (one global pass and the tiles of each image).
            tiled: False for one pass per image; True for high-resolution depth from a global pass plus
                overlapping native-resolution tiles (`depth_anything.tiling.tiled_predict`); "auto" to tile
                only images large enough to gain. Metric models align tiles by scale only.
            tile: tile side in pixels, a multiple of 14 (default: input_size, or a fifth of the short side).
            overlap: pixels shared by neighbouring tiles (default: a quarter of the tile).

        Returns:
            float32 (B, H, W) on the CPU: disparity for relative models, metres for metric ones. When the
            images differ in size, a list of (H, W) tensors.
        """
        frames = to_image_list(images)
        if not frames:
            raise ValueError("No images given: pass at least one image.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        if tiled not in (False, True, "auto"):
            raise ValueError(f"tiled must be False, True or 'auto', got {tiled!r}.")
        if tiled:
            return self._infer_tiled(frames, tiled == "auto", tile, overlap, input_size, max_size, batch_size, progress)

        groups: dict[tuple[int, int], list[int]] = {}
        for index, frame in enumerate(frames):
            groups.setdefault(tuple(frame.shape[-2:]), []).append(index)

        results: list[torch.Tensor | None] = [None] * len(frames)
        done = 0
        for size, indices in groups.items():
            net_size = processing_size(*size, input_size=input_size, max_size=max_size)
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                batch = torch.stack([frames[i] for i in chunk])
                for i, depth in zip(chunk, self._predict_images(batch, net_size)):
                    results[i] = depth
                done += len(chunk)
                if progress is not None:
                    progress(done, len(frames))

        return _stack_if_same_size(results)

    def _infer_tiled(
        self,
        frames: list[torch.Tensor],
        auto: bool,
        tile: int | None,
        overlap: int | None,
        input_size: int,
        max_size: int | None,
        batch_size: int,
        progress: Callable[[int, int], None] | None,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Each image through `tiled_predict`, its tiles batched; progress counts network passes."""
        from .tiling import tile_grid, tiled_predict

        options = dict(tile=tile, overlap=overlap, model_size=input_size, max_size=max_size, auto=auto)
        grids = [tile_grid(*frame.shape[-2:], **options) for frame in frames]  # checks the options up front
        passes = [1 if grid is None else 1 + len(grid) for grid in grids]
        align = "scale" if self.is_metric else "affine"

        def predict(batch: torch.Tensor) -> torch.Tensor:
            return self._predict_images(batch, processing_size(*batch.shape[-2:], input_size, max_size))

        results = []
        for index, frame in enumerate(frames):
            report = None
            if progress is not None:
                done_before = sum(passes[:index])
                report = lambda done, _total: progress(done_before + done, sum(passes))  # noqa: E731
            depth = tiled_predict(frame, predict, progress=report, batch_size=batch_size, align=align, **options)
            results.append(depth)
        return _stack_if_same_size(results)

    def _predict_images(self, batch: torch.Tensor, net_size: tuple[int, int]) -> torch.Tensor:
        """float (N, 3, H, W) in [0, 1] -> float32 (N, H, W) on the CPU, through the official pre-processing."""
        prediction = self._predict(normalize_for_model(batch.to(self.device), net_size))
        return resize_prediction(prediction, tuple(batch.shape[-2:])).cpu()

    def _predict(self, batch: torch.Tensor) -> torch.Tensor:
        """Normalised float32 batch -> float32 prediction, never NaN/inf because of fp16 range."""
        prediction = self(batch.to(self.dtype)).float()
        if self.dtype == torch.float16 and not torch.isfinite(prediction).all():
            # fp16 tops out at 65504: recompute the batch in float32 rather than hand back inf / NaN.
            prediction = self._float32_twin()(batch).float()
        return prediction

    def _float32_twin(self) -> "DepthAnything":
        twin = self.__dict__.get("_fp32_twin")
        if twin is None:
            warnings.warn(
                "fp16 overflowed for this input; recomputing in float32 (use dtype='bf16' to avoid the retry).",
                RuntimeWarning,
                stacklevel=3,
            )
            twin = copy.deepcopy(self).float()
            self.__dict__["_fp32_twin"] = twin  # not a submodule: stays out of state_dict and .to()
        return twin

    def _apply(self, fn, *args, **kwargs):
        self.__dict__.pop("_fp32_twin", None)  # weights or device changed: the twin is stale
        return super()._apply(fn, *args, **kwargs)


def _stack_if_same_size(depths: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
    """(B, H, W) when every map has one size, else the list: `infer`'s return convention."""
    if all(d.shape == depths[0].shape for d in depths):
        return torch.stack(depths)
    return depths
