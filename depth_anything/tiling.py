"""Tiled high-resolution depth: detail from native-resolution tiles, layout from one global pass, no seams.

A depth network sees about 518 pixels; shrinking a 4K photo to that loses thin structures and blurs every
edge. `tiled_predict` runs the network once on the whole (shrunken) image and then on overlapping tiles at the
image's own resolution. Each tile's prediction is fitted to the global one (`tile_fusion`: a robust tone curve
and tilt per tile, then an edge-aware correction field, so that crops which disagree with the whole view beyond
scale and shift leave no patchwork), and the tiles are blended with raised-cosine weights that sum to one.
Memory is bounded by a batch of tiles: nothing of the image's size is held apart from the input and the output.

The engine is model-agnostic: `predict` is any callable from images (N, 3, h, w) in [0, 1] to (N, h, w).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .options import (
    MAX_TILES,
    OVERLAP_FRACTION,
    PATCH,
    TILE_SPAN,
    check,
    input_size_problem,
    overlap_problem,
    tile_count_problem,
    tile_problem,
)
from .tile_fusion import FUSIONS, Fusion, fit_scale_shift, fuse_tiles
from .transforms import processing_size

__all__ = ["Fusion", "TileAssembler", "TileGrid", "default_tile", "fit_scale_shift", "tile_grid", "tiled_predict"]

Predict = Callable[[torch.Tensor], torch.Tensor]
# (tiles (N, h, w), the global map sampled over each of them (N, gh, gw), scale_only) -> fitted tiles (N, h, w)
FuseTiles = Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]
NetSize = Callable[[int, int], tuple[int, int]]  # (height, width) of an image -> what the network sees

# "auto" tiles when tiles see at least this many times finer than the global pass; at 1.67x (1280 x 864 at 518)
# tiling already measured 2.3x the boundary F1 and 18% lower AbsRel (BENCHMARKS.md)
AUTO_MIN_GAIN = 1.5
ALIGN_MODES = ("affine", "scale")


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of one image lie: tile size and the top-left corners along each axis.

    `weights()` gives separable blend weights that fall off toward inner tile borders (not at image borders)
    and sum to exactly one at every pixel.
    """

    height: int
    width: int
    tile_height: int
    tile_width: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    def boxes(self) -> list[tuple[int, int]]:
        """Top-left (y, x) of every tile, row by row."""
        return [(y, x) for y in self.ys for x in self.xs]

    def weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, tile_height) and (columns, tile_width) float32 weights; tile (i, j) uses wy[i] x wx[j]."""
        return (
            _axis_weights(self.ys, self.tile_height, self.height),
            _axis_weights(self.xs, self.tile_width, self.width),
        )


def _smooth_ramp(u: torch.Tensor) -> torch.Tensor:
    # sin^2 ramps of two neighbours over the same overlap add up to exactly one.
    return torch.sin(0.5 * math.pi * u.clamp(0.0, 1.0)) ** 2


def _axis_weights(starts: Sequence[int], size: int, length: int) -> torch.Tensor:
    position = torch.arange(size, dtype=torch.float64) + 0.5  # pixel centres: every weight stays above zero
    raw = torch.ones(len(starts), size, dtype=torch.float64)
    for k, start in enumerate(starts):
        if k > 0 and (ramp := starts[k - 1] + size - start) > 0:
            raw[k] = torch.minimum(raw[k], _smooth_ramp(position / ramp))
        if k + 1 < len(starts) and (ramp := start + size - starts[k + 1]) > 0:
            raw[k] = torch.minimum(raw[k], _smooth_ramp((size - position) / ramp))
    total = torch.zeros(length, dtype=torch.float64)
    for k, start in enumerate(starts):
        total[start : start + size] += raw[k]
    # Normalising per axis keeps the sum at one even where three tiles overlap (overlap > half a tile).
    return torch.stack([raw[k] / total[start : start + size] for k, start in enumerate(starts)]).float()


def _axis_starts(length: int, size: int, overlap: int, shift: int) -> tuple[int, ...]:
    if length <= size:
        return (0,)
    count = math.ceil((length - size) / (size - overlap)) + 1
    starts = [round(k * (length - size) / (count - 1)) for k in range(count)]  # spread evenly: no sliver tile
    if shift:
        starts = [0, *(min(max(s + shift, 0), length - size) for s in starts), length - size]
    return tuple(sorted(set(starts)))


def default_tile(height: int, width: int, model_size: int = 518) -> int:
    """The tile side used when none is given: the model's resolution, or a fifth of the short side if larger.

    Up to a short side of about 2600 pixels (4K) tiles are seen at full resolution. Beyond that, tiles much
    smaller than the image would lose the context a depth network needs: a fifth of the short side keeps each
    tile a recognisable part of the scene and the count under about 100 at any resolution.

    >>> default_tile(2160, 3840), default_tile(4320, 7680)
    (518, 868)
    """
    span = PATCH * round(min(height, width) / TILE_SPAN / PATCH)
    return max(model_size, span)


def tile_grid(
    height: int,
    width: int,
    *,
    tile: int | None = None,
    overlap: int | None = None,
    model_size: int = 518,
    max_size: int | None = None,
    auto: bool = False,
    shift: tuple[int, int] = (0, 0),
    net_size: NetSize | None = None,
) -> TileGrid | None:
    """The tiles for an image of this size, or None when one pass is all it needs.

    One pass when the image fits in one tile, or, with `auto`, when the tiles would see less than
    `AUTO_MIN_GAIN` times finer detail than the global pass. See `tiled_predict` for the arguments.

    >>> grid = tile_grid(1080, 1920)
    >>> len(grid), grid.tile_height, grid.ys
    (15, 518, (0, 281, 562))
    """
    if height < 1 or width < 1:
        raise ValueError(f"Image has an empty side ({width}x{height}).")
    check(input_size_problem(model_size, "model_size", maximum=None), tile_problem(tile))
    if tile is None:
        tile = default_tile(height, width, model_size)
    check(overlap_problem(overlap, tile))
    if overlap is None:
        overlap = tile // OVERLAP_FRACTION
    if height <= tile and width <= tile:
        return None
    tile_height, tile_width = min(tile, height), min(tile, width)
    if auto:
        global_height, global_width = _global_size(height, width, model_size, max_size, net_size)
        global_scale = max(height / global_height, width / global_width)
        tile_scale = max(1.0, min(tile_height, tile_width) / model_size)
        if global_scale / tile_scale < AUTO_MIN_GAIN:
            return None
    grid = TileGrid(
        height=height,
        width=width,
        tile_height=tile_height,
        tile_width=tile_width,
        ys=_axis_starts(height, tile_height, min(overlap, tile_height - 1), shift[0]),
        xs=_axis_starts(width, tile_width, min(overlap, tile_width - 1), shift[1]),
    )
    if len(grid) > MAX_TILES:  # each tile is a network pass: refuse plans that would run practically forever
        fitting = _fitting_tiles(height, width, tile, model_size)
        check(tile_count_problem(len(grid), height, width, tile, overlap, fitting))
    return grid


def _fitting_tiles(height: int, width: int, tile: int, model_size: int) -> tuple[int, int, int]:
    """(tile, overlap, count) within MAX_TILES: this tile with the default overlap, else the default tiles."""
    for side in (tile, default_tile(height, width, model_size)):
        overlap = side // OVERLAP_FRACTION
        count = 1
        for length in (height, width):
            size = min(side, length)
            count *= len(_axis_starts(length, size, min(overlap, size - 1), 0))
        if count <= MAX_TILES:
            break
    return side, overlap, count


def _global_size(height: int, width: int, model_size: int, max_size: int | None, net_size: NetSize | None):
    """What the network sees of the whole image: the model family's own rule, else v1 / v2's."""
    if net_size is not None:
        return tuple(net_size(height, width))
    return processing_size(height, width, model_size, max_size)


def _global_view(image: torch.Tensor, size: tuple[int, int], pixels_per_strip: int = 1 << 18) -> torch.Tensor:
    """(3, H, W) -> (3, h, w), antialiased, without an intermediate of the image's size.

    An integer box filter runs over strips of rows first (down to between one and two times the target size),
    then an antialiased resize of that small result.
    """
    height, width = image.shape[-2:]
    factor = max(1, int(min(height / size[0], width / size[1])))
    if factor > 1:
        step = factor * max(1, pixels_per_strip // width // factor)
        strips = [
            F.avg_pool2d(image[None, :, start : start + step].float(), factor, ceil_mode=True)[0]
            for start in range(0, height, step)
        ]
        image = torch.cat(strips, dim=1)
    return F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)[0]


def _sample_global(global_map: torch.Tensor, boxes, tile_size, grid_size, image_size) -> torch.Tensor:
    """The global map (h, w) sampled at the centres of a (gh, gw) grid over each tile -> (N, gh, gw)."""
    (tile_h, tile_w), (grid_h, grid_w), (height, width) = tile_size, grid_size, image_size
    device = global_map.device
    cell_y = (torch.arange(grid_h, device=device, dtype=torch.float32) + 0.5) * (tile_h / grid_h)
    cell_x = (torch.arange(grid_w, device=device, dtype=torch.float32) + 0.5) * (tile_w / grid_w)
    grids = []
    for y, x in boxes:
        gy = (y + cell_y) / height * 2 - 1  # align_corners=False: -1 and 1 are the image's outer edges
        gx = (x + cell_x) / width * 2 - 1
        grids.append(torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1))
    sampled = F.grid_sample(
        global_map[None, None].expand(len(boxes), 1, -1, -1),
        torch.stack(grids),
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )
    return sampled[:, 0]


def _check_prediction(prediction, count: int, size: tuple[int, int]) -> torch.Tensor:
    if not isinstance(prediction, torch.Tensor):
        raise TypeError(f"predict must return a torch tensor (N, h, w), got {type(prediction).__name__}.")
    if tuple(prediction.shape) != (count, *size):
        raise ValueError(
            f"predict returned shape {tuple(prediction.shape)} for {count} image(s) of {size[0]}x{size[1]}; "
            f"it must return ({count}, {size[0]}, {size[1]})."
        )
    if not torch.isfinite(prediction).all():
        raise ValueError("predict returned NaN or infinite values.")
    return prediction.float()


def _as_chw(image: torch.Tensor) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch tensor (3, H, W) or (H, W, 3), got {type(image).__name__}.")
    if not image.is_floating_point():
        raise TypeError(f"image must be a float tensor in [0, 1], got dtype {image.dtype}.")
    if image.ndim == 3 and image.shape[0] == 3:
        chw = image
    elif image.ndim == 3 and image.shape[-1] == 3:
        chw = image.permute(2, 0, 1)  # a view: the image is not copied
    else:
        raise ValueError(f"image must have shape (3, H, W) or (H, W, 3), got {tuple(image.shape)}.")
    if chw.shape[1] < 1 or chw.shape[2] < 1:
        raise ValueError(f"Image has an empty side ({chw.shape[2]}x{chw.shape[1]}).")
    for start in range(0, chw.shape[1], 256):  # in strips: no mask of the image's size
        if not torch.isfinite(chw[:, start : start + 256]).all():
            raise ValueError("image contains NaN or infinite values; fix or clip them before predicting depth.")
    return chw


def _fusion(fusion, lowpass: float | None, *, scale_only: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """(tiles, reference) -> fitted tiles, for the `fusion` and `lowpass` arguments of `tiled_predict`."""
    if isinstance(fusion, str):
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, a Fusion or a callable, got {fusion!r}.")
        fusion = FUSIONS[fusion]
    if isinstance(fusion, Fusion):
        return lambda depth, target: fuse_tiles(depth, target, fusion=fusion, scale_only=scale_only, lowpass=lowpass)
    if callable(fusion):

        def fuse(depth: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            fitted = fusion(depth, target, scale_only)
            if not isinstance(fitted, torch.Tensor) or fitted.shape != depth.shape:
                raise ValueError(f"fusion must return the tiles' shape {tuple(depth.shape)}.")
            return fitted.float()

        return fuse
    raise TypeError(f"fusion must be a name, a Fusion or a callable, got {type(fusion).__name__}.")


def tiled_predict(
    image: torch.Tensor,
    predict: Predict,
    *,
    tile: int | None = None,
    overlap: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 4,
    model_size: int = 518,
    max_size: int | None = None,
    auto: bool = False,
    align: str = "affine",
    lowpass: float | None = None,
    shift: tuple[int, int] = (0, 0),
    on_tile: Callable[[int, int, torch.Tensor], None] | None = None,
    net_size: NetSize | None = None,
    fusion: str | Fusion | FuseTiles = "local",
) -> torch.Tensor:
    """Depth for a large image from one global pass and overlapping native-resolution tiles.

    Args:
        image: float (3, H, W) or (H, W, 3) in [0, 1].
        predict: images (N, 3, h, w) in [0, 1] -> depth (N, h, w) at the same size (relative disparity, or
            metric depth with align="scale"). Any model or stand-in; it resizes internally as it needs.
        tile: tile side in pixels, a multiple of 14 (default: `default_tile`, the model's resolution or a
            fifth of the short side). Tiles are clipped to the image where it is narrower.
        overlap: pixels shared by neighbouring tiles, 0 to tile - 1 (default: a quarter of the tile).
        progress: called as progress(done, total) after the global pass and each batch of tiles, counting
            network passes; raise from it to stop.
        batch_size: tiles per `predict` call, counted at the model's resolution: tiles larger than
            `model_size` go fewer at a time, so that memory stays bounded however large the image.
        model_size: the resolution the model works at (short side); the global pass sees the image this large.
        max_size: cap on the global pass's long side (default 3 x model_size), as in `processing_size`.
        auto: use one plain pass when tiling would not see much finer than the global pass (see `tile_grid`).
        align: "affine" (scale and shift, for relative disparity) or "scale" (scale only, for metric depth).
        lowpass: the earlier guard against crops that disagree beyond scale and shift, kept for old callers: a
            Gaussian sigma in global-map pixels below which each tile's frequencies come from the global map
            after one scale and shift per tile (it replaces `fusion`). The default fusion measured better.
        shift: offset (dy, dx) of the tile grid in pixels; a shifted grid should give the same depth.
        on_tile: called as on_tile(y, x, depth) with each aligned tile before blending, for inspection.
        net_size: the model family's rule for the size its network sees, (height, width) -> (h, w), used for the
            global pass (default: v1 / v2's `processing_size` with `model_size` and `max_size`).
        fusion: how each tile is fitted to the global map before blending: "local" (default: a robust tone
            curve and tilt per tile plus an edge-aware correction field), "tile" (one robust scale and shift
            per tile, the earlier default), a `Fusion` with its own settings, or a callable
            fusion(tiles (N, h, w), reference (N, gh, gw), scale_only) -> fitted tiles, where `reference` is the
            global map sampled over each tile on a grid as coarse as the global map.

    Returns:
        float32 (H, W) on the image's device.

    Example:
        >>> def predict(batch):  # a stand-in model: brightness as disparity
        ...     return batch.mean(dim=1)
        >>> depth = tiled_predict(torch.rand(3, 1200, 1600), predict, tile=518)
        >>> depth.shape
        torch.Size([1200, 1600])
    """
    chw = _as_chw(image)
    if align not in ALIGN_MODES:
        raise ValueError(f"align must be one of {', '.join(ALIGN_MODES)}, got {align!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    if lowpass is not None and not lowpass > 0:
        raise ValueError(f"lowpass must be a positive sigma or None, got {lowpass!r}.")
    _fusion(fusion, lowpass, scale_only=align == "scale")  # a bad fusion is refused before any pass
    height, width = chw.shape[-2:]
    grid = tile_grid(
        height, width, tile=tile, overlap=overlap, model_size=model_size, max_size=max_size, auto=auto, shift=shift,
        net_size=net_size,
    )
    if grid is None:
        depth = _check_prediction(predict(chw[None].float()), 1, (height, width))[0]
        if progress is not None:
            progress(1, 1)
        return depth

    total = 1 + len(grid)
    global_size = _global_size(height, width, model_size, max_size, net_size)
    global_map = _check_prediction(predict(_global_view(chw, global_size)[None]), 1, global_size)[0]
    if progress is not None:
        progress(1, total)

    assembler = TileAssembler(
        grid, global_map, fusion=fusion, align=align, lowpass=lowpass, on_tile=on_tile, device=chw.device
    )
    boxes = grid.boxes()
    tile_size = (grid.tile_height, grid.tile_width)
    per_call = max(1, min(batch_size, batch_size * model_size**2 // (tile_size[0] * tile_size[1])))
    for start in range(0, len(boxes), per_call):
        chunk = boxes[start : start + per_call]
        tiles = torch.stack([chw[:, y : y + tile_size[0], x : x + tile_size[1]] for y, x in chunk]).float()
        depth = _check_prediction(predict(tiles), len(chunk), tile_size)
        del tiles
        assembler.add(chunk, depth)
        if progress is not None:
            progress(1 + start + len(chunk), total)
    return assembler.result()


class TileAssembler:
    """One image's depth from its global map and its tiles' depth: each tile fitted to the global map, then
    blended. Tiles come in any batches, in any order; each tile of the grid exactly once.

    `tiled_predict` runs the network and feeds one of these; a caller with predictions of its own (a video model
    that sees each tile position as a clip) feeds it directly.

    Args:
        grid: the image's `TileGrid`.
        global_map: the whole image's depth as the network saw it, (gh, gw) at the network's resolution (the
            coarse grid tiles are compared on is as coarse as this map).
        fusion, align, lowpass: as for `tiled_predict`.
        on_tile: called as on_tile(y, x, depth) with each fitted tile before blending.
        device: where the result is built (default: the global map's).

    Example:
        >>> grid = tile_grid(600, 900, tile=280)
        >>> assembler = TileAssembler(grid, torch.rand(56, 84))
        >>> for box in grid.boxes():
        ...     assembler.add([box], torch.rand(1, grid.tile_height, grid.tile_width))
        >>> assembler.result().shape
        torch.Size([600, 900])
    """

    def __init__(
        self,
        grid: TileGrid,
        global_map: torch.Tensor,
        *,
        fusion: str | Fusion | FuseTiles = "local",
        align: str = "affine",
        lowpass: float | None = None,
        on_tile: Callable[[int, int, torch.Tensor], None] | None = None,
        device: torch.device | str | None = None,
    ):
        if align not in ALIGN_MODES:
            raise ValueError(f"align must be one of {', '.join(ALIGN_MODES)}, got {align!r}.")
        if global_map.ndim != 2 or not torch.isfinite(global_map).all():
            raise ValueError(f"global_map must be a finite (h, w) depth map, got shape {tuple(global_map.shape)}.")
        self.grid, self.on_tile = grid, on_tile
        self.device = torch.device(device) if device is not None else global_map.device
        self.global_map = global_map.float().to(self.device)
        self.fuse = _fusion(fusion, lowpass, scale_only=align == "scale")
        # Tiles are compared with the global map on a grid as coarse as the global map itself.
        scale = min(grid.height / global_map.shape[0], grid.width / global_map.shape[1])
        self.pooled = (max(1, round(grid.tile_height / scale)), max(1, round(grid.tile_width / scale)))
        self.weight_y, self.weight_x = (w.to(self.device) for w in grid.weights())
        self.output = torch.zeros(grid.height, grid.width, dtype=torch.float32, device=self.device)
        self.remaining = set(grid.boxes())

    def add(self, boxes: Sequence[tuple[int, int]], depth: torch.Tensor) -> None:
        """Tiles at `boxes` (their top-left corners, as `grid.boxes()` gives them) with depth (N, th, tw)."""
        grid = self.grid
        tile_size = (grid.tile_height, grid.tile_width)
        boxes = [tuple(box) for box in boxes]
        unknown = [box for box in boxes if box not in self.remaining]
        if unknown:
            raise ValueError(f"tiles {unknown} are not in the grid, or were added already.")
        depth = _check_prediction(depth, len(boxes), tile_size).to(self.device)
        target = _sample_global(self.global_map, boxes, tile_size, self.pooled, (grid.height, grid.width))
        depth = self.fuse(depth, target)
        for (y, x), tile_depth in zip(boxes, depth):
            if self.on_tile is not None:
                self.on_tile(y, x, tile_depth)
            blend = self.weight_y[grid.ys.index(y)][:, None] * self.weight_x[grid.xs.index(x)][None, :]
            self.output[y : y + tile_size[0], x : x + tile_size[1]] += blend * tile_depth
            self.remaining.discard((y, x))

    def result(self) -> torch.Tensor:
        """The blended depth (H, W), float32; every tile must have been added."""
        if self.remaining:
            raise ValueError(f"{len(self.remaining)} tile(s) of the grid were never added, e.g. {min(self.remaining)}.")
        return self.output
