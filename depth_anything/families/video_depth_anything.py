"""Video Depth Anything (VDA): Depth Anything v2 with temporal modules in its head, for depth that does not flicker.

The network is v2's DINOv2 encoder and DPT head with four temporal modules (`depth_anything.temporal`) inserted
in the head: after the reassembly of the two coarsest taps and after the two coarsest fusion steps. Each lets
every position attend to itself in the other frames of a clip of up to 32 frames. Checkpoints keep v2's encoder
keys (`pretrained.*`) and name the head `head.*`, with `head.motion_modules.*` for the temporal modules.

Videos run in the official windows (`VideoDepthAnything.infer_video`): 32 frames at a time, each window after
the first re-using 10 key frames of the one before, its depth aligned to the previous one by a least-squares
scale and shift on the two shared key frames (metric models are not re-scaled) and cross-faded over 8 frames.
The released streaming mode (frame by frame, attending to cached features of earlier frames) is
`infer_video(..., streaming=True)`. High-resolution video is tiled in time as well as space
(`infer_video(..., tiled=True)`): every tile position is a clip of its own through the same windows, and each
frame's tiles are fitted to that frame of the whole-frame clip, so detail comes from the tiles and both the
layout and its stability over time from the whole frames.

Two families: `video` (relative: affine-invariant disparity, near = large) and `video_metric` (metres).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from ..backends import EagerBackend
from ..configs import ENCODERS, KnownModel
from ..dinov2 import DinoV2Encoder
from ..dpt import DPTHead
from ..images import ImageInput, crop_image, decoded, image_size, split_images
from ..model import DepthModel, Progress
from ..options import (
    MAX_SIZE_FACTOR,
    PATCH,
    batch_size_problem,
    check,
    input_size_problem,
    max_size_problem,
    tile_problem,
)
from ..pipeline import prepare_image, stack_if_same_size
from ..temporal import MAX_FRAMES, TemporalModule
from ..tiling import TileAssembler, TileGrid, tile_grid
from ..transforms import Preprocessing, processing_size
from . import ModelFamily, get_family, register_family
from .depth_anything import encoder_from_state

# The official window protocol ("do not change" in the release).
WINDOW = 32  # frames one pass sees
OVERLAP = 10  # slots of each later window filled with key frames of the window before
KEYFRAMES = (0, 12, 24, 25, 26, 27, 28, 29, 30, 31)  # which slots of the window before
INTERP = 8  # frames cross-faded between windows
ALIGN = OVERLAP - INTERP  # shared key frames the scale and shift are fitted on (the first two)
STEP = WINDOW - OVERLAP  # new frames per window
# Streaming: a frame attends to the first two cached frames and the latest ones; the cache keeps up to
# GAP + 1 frames (the official sliding window of cached features).
STREAM_GAP = STEP * 2 - 1 - ALIGN

ENCODER_NAMES = ("vits", "vitb", "vitl")  # released sizes
WIDE = 1.78  # frames wider than this (long / short side) get a smaller input_size, as in the release


def video_input_size(height: int, width: int, input_size: int) -> int:
    """The input_size the official code uses for frames of this size.

    Frames wider than 16:9 (aspect ratio above 1.78) get a smaller input_size, so that the long side the
    network sees stays about that of a 16:9 frame: input_size * 1.777 / ratio, to a multiple of 14 (at least 14).

    >>> video_input_size(480, 640, 518), video_input_size(100, 300, 518)
    (518, 308)
    """
    ratio = max(height, width) / min(height, width)
    if ratio > WIDE:
        input_size = round(int(input_size * 1.777 / ratio) / PATCH) * PATCH
    return max(PATCH, input_size)


@dataclass(frozen=True)
class VideoPreprocessing(Preprocessing):
    """v2's rule (short side to input_size, bicubic, ImageNet) after the release's input_size rule for wide frames.

    The default cap on the longest side (`max_size`) is 3 x the given input_size, before the wide-frame rule
    shrinks it, so the cap never changes the official size of frames up to an aspect ratio of 3.

    Example:
        >>> VideoPreprocessing().net_size(100, 300)
        (308, 924)
    """

    def net_size(
        self, height: int, width: int, input_size: int | None = None, max_size: int | None = None
    ) -> tuple[int, int]:
        input_size = self.input_size if input_size is None else input_size
        check(input_size_problem(input_size, maximum=None), max_size_problem(max_size))
        if height < 1 or width < 1:
            return processing_size(height, width, input_size, max_size)  # its message for an empty side
        if max_size is None:
            max_size = MAX_SIZE_FACTOR * input_size
        return processing_size(height, width, video_input_size(height, width, input_size), max_size)


# ------------------------------------------------------------------------------------------------ network


class TemporalDPTHead(DPTHead):
    """v2's DPT head with temporal modules on layer 3 and layer 4 and after refinenets 4 and 3.

    The head runs in three stages so that only the coarse maps of a whole clip are held at once: `clip_features`
    (per frame: project the taps; the two coarse ones are also resized), `mix` (the whole clip: temporal
    modules and the two coarse fusion steps) and `decode` (per frame: the fine fusion steps and the output).
    """

    def __init__(self, embed_dim: int, features: int, out_channels: tuple[int, int, int, int]):
        super().__init__(embed_dim, features, out_channels, metric=False)  # relative and metric end in ReLU
        self.motion_modules = nn.ModuleList(
            [TemporalModule(c) for c in (out_channels[2], out_channels[3], features, features)]
        )

    def clip_features(self, tokens: list[torch.Tensor], patch_h: int, patch_w: int) -> ClipFeatures:
        """Four tapped token maps of some frames -> what the rest of the head needs of them."""
        tap_1, tap_2, tap_3, tap_4 = (self.project(i, x, patch_h, patch_w) for i, x in enumerate(tokens))
        return ClipFeatures(tap_1, tap_2, self.resize_layers[2](tap_3), self.resize_layers[3](tap_4))

    def mix(
        self, features: ClipFeatures, frames: int, cache: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The coarse layers of (clips x frames) -> the fused map after refinenet3 (stride 7 of the input), and
        what later frames attend to (the streaming cache, 8 tensors)."""
        s, mm = self.scratch, self.motion_modules
        layer_3, layer_4 = features.layer_3, features.layer_4
        cache = cache or [None] * 8
        states = []

        def temporal(i: int, x: torch.Tensor) -> torch.Tensor:
            x, new = mm[i](x, frames, None if cache[2 * i] is None else cache[2 * i : 2 * i + 2])
            states.extend(new)
            return x

        layer_3 = s.layer3_rn(temporal(0, layer_3))
        layer_4 = s.layer4_rn(temporal(1, layer_4))
        path = temporal(2, s.refinenet4(layer_4, size=layer_3.shape[2:]))
        size = (layer_3.shape[2] * 2, layer_3.shape[3] * 2)  # layer 2's size: twice the patch grid
        return temporal(3, s.refinenet3(path, layer_3, size=size)), states

    def decode(self, features: ClipFeatures, path: torch.Tensor) -> torch.Tensor:
        """Some frames' features and mixed map -> their prediction (n, 1, 14 patch_h, 14 patch_w)."""
        s = self.scratch
        layer_1 = s.layer1_rn(self.resize_layers[0](features.tap_1))
        layer_2 = s.layer2_rn(self.resize_layers[1](features.tap_2))
        path = s.refinenet2(path, layer_2, size=layer_1.shape[2:])
        path = s.refinenet1(path, layer_1)
        return self.output(path, *features.patches)


@dataclass(frozen=True)
class ClipFeatures:
    """What the encoder and the head's reassembly give the rest of the head for some frames, frame by frame.

    The two fine taps stay at patch resolution (projected, not yet upsampled) so that a window's features are
    small; they are also what consecutive windows share for the key frames they both see.
    """

    tap_1: torch.Tensor  # (n, out_channels[0], patch_h, patch_w)
    tap_2: torch.Tensor  # (n, out_channels[1], patch_h, patch_w)
    layer_3: torch.Tensor  # (n, out_channels[2], patch_h, patch_w)
    layer_4: torch.Tensor  # (n, out_channels[3], ceil(patch_h / 2), ceil(patch_w / 2))

    def __len__(self) -> int:
        return len(self.tap_1)

    @property
    def patches(self) -> tuple[int, int]:
        return tuple(self.tap_1.shape[-2:])

    def frames(self, index) -> ClipFeatures:
        """The features of some frames: a slice, or a list of frame indices."""
        index = list(index) if isinstance(index, (list, tuple)) else index
        return ClipFeatures(*(t[index] for t in self.tensors()))

    @classmethod
    def cat(cls, parts: list[ClipFeatures]) -> ClipFeatures:
        """The features of consecutive groups of frames as one."""
        return cls(*(torch.cat(same) for same in zip(*(part.tensors() for part in parts))))

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The four maps, in field order."""
        return self.tap_1, self.tap_2, self.layer_3, self.layer_4


class VideoDepthAnything(DepthModel):
    """Video Depth Anything (relative or metric): temporally consistent depth for the frames of a clip.

    `forward` takes the frames of one clip (up to 32) as a batch; `infer_video` runs a video of any length in
    the official windows. Build one with `VideoDepthAnything.from_pretrained` (or `DepthModel.from_pretrained`).

    Attributes:
        micro_batch: frames the encoder and the full-resolution part of the head run at once (memory, not
            results: the temporal modules always see the whole clip). `infer_video` sets it from `batch_size`.

    Example:
        >>> model = DepthModel.from_pretrained("video_depth_anything_vits")  # doctest: +SKIP
        >>> depth = model.infer_video(frames)  # (T, H, W) float32 disparity  # doctest: +SKIP
    """

    micro_batch = 4

    def __init__(self, encoder: str = "vits", family: str | ModelFamily = "video"):
        super().__init__()
        if encoder not in ENCODER_NAMES:
            raise ValueError(f"Video Depth Anything has no {encoder!r} model; use one of {', '.join(ENCODER_NAMES)}.")
        self.config = ENCODERS[encoder]
        self.family = get_family(family)
        if not isinstance(self.family, VideoDepthAnythingFamily):
            raise ValueError(f"family {self.family.name!r} is not Video Depth Anything.")
        self.taps = self.config.v2_taps
        self.pretrained = DinoV2Encoder(self.config)
        self.head = TemporalDPTHead(self.config.embed_dim, self.config.features, self.config.out_channels)
        self.head_features = self.config.features

    def activation_memory(self, batch: int, height: int, width: int) -> int:
        """Rough peak bytes of one window: `micro_batch` frames through the full-resolution head, plus the
        coarse maps of all its frames that the temporal modules mix."""
        element = torch.finfo(self.dtype).bits // 8
        frames = min(batch, WINDOW)
        patches = (height // PATCH) * (width // PATCH)
        out = self.config.out_channels
        coarse = frames * patches * (out[0] + out[1] + out[2] + out[3] + 6 * self.config.features) * element
        return super().activation_memory(min(frames, self.micro_batch), height, width) + coarse

    @contextmanager
    def micro_batches(self, frames: int):
        """Run the encoder and the fine head `frames` at a time inside the block."""
        before, self.micro_batch = self.micro_batch, max(1, int(frames))
        try:
            yield self
        finally:
            self.micro_batch = before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised frames of one clip (T, 3, H, W), T <= 32, H and W multiples of 14 -> (T, H, W) depth.

        A (B, T, 3, H, W) batch of clips gives (B, T, H, W).
        """
        if x.ndim == 5:
            return torch.stack([self.forward(clip) for clip in x])
        frames, _, height, width = x.shape
        if height % PATCH or width % PATCH:
            raise ValueError(f"Input height and width must be multiples of {PATCH}, got {height}x{width}.")
        if frames > MAX_FRAMES:
            raise ValueError(
                f"Video Depth Anything sees at most {MAX_FRAMES} frames at once, got {frames}: use infer_video "
                f"for longer clips, or a batch_size of at most {MAX_FRAMES}."
            )
        return self.decode(self.encode(x))[0]

    def encode(self, x: torch.Tensor) -> ClipFeatures:
        """Normalised frames (n, 3, H, W) -> their features, `micro_batch` frames at a time (frame by frame:
        the frames do not meet before the head's temporal modules)."""
        patches = (x.shape[-2] // PATCH, x.shape[-1] // PATCH)
        chunks = x.split(self.micro_batch)
        return ClipFeatures.cat([self.head.clip_features(self.pretrained.forward_taps(c, self.taps), *patches) for c in chunks])

    def decode(
        self, features: ClipFeatures, cache: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The features of one clip's frames -> their depth (n, H, W), the fine head `micro_batch` frames at a
        time; and what later frames attend to. With `cache` (streaming), the features are of new frames only."""
        path, states = self.head.mix(features, len(features), cache)
        depth = [
            self.head.decode(features.frames(slice(start, start + self.micro_batch)), part)
            for start, part in zip(range(0, len(features), self.micro_batch), path.split(self.micro_batch))
        ]
        # The official forward then resizes to (H, W), already the size, and applies a ReLU the head ends in.
        return torch.cat(depth).squeeze(1), states

    # ------------------------------------------------------------------------------------------------ video

    @torch.inference_mode()
    def infer_video(
        self,
        frames: Iterable[ImageInput] | torch.Tensor,
        *,
        input_size: int | None = None,
        max_size: int | None = None,
        batch_size: int = 8,
        progress: Progress | None = None,
        streaming: bool = False,
        tiled: bool | str = False,
        tile: int | None = None,
        overlap: int | None = None,
    ) -> torch.Tensor | Iterator[torch.Tensor]:
        """Temporally consistent depth for the frames of a clip, in the official windows (or streamed).

        Windows (the release's `infer_video_depth`): 32 frames per pass; each later window re-uses the previous
        window's inputs at its key frames (0, 12, 24-31) in its first 10 slots and takes 22 new frames; its
        depth is mapped onto the previous one by a least-squares scale and shift fitted on the two shared key
        frames (0 and 12; metric models keep scale 1 and shift 0), negatives clipped to 0, and its first
        overlapping frames are cross-faded linearly into the previous window's last 8. The clip is padded
        with copies of its last frame to fill the last window. Memory does not grow with the clip's length:
        one window of network inputs, its prediction and 10 depth maps at frame size are held at a time.

        Args:
            frames: a list of frames, a (T, H, W, 3) / (T, 3, H, W) tensor or array, or any iterable of frames
                (a decoder: it is read as the windows need, never held whole). All frames share one size.
            input_size: the short side the network sees (multiple of 14, default 518); frames wider than 16:9
                get a smaller one, as in the release (`video_input_size`).
            max_size: cap on the longest side the network sees (default 3 x input_size).
            batch_size: frames the encoder and the full-resolution head run at once (memory, not results).
            progress: called as progress(frames done, total frames or None) after each window (after each
                batch of frames when streaming); raise from it to stop.
            streaming: the release's streaming mode (`video_depth_stream.py`): each frame is predicted once, as
                it arrives, attending to cached features of earlier frames; no windows, no alignment. Less
                accurate than windows (published ScanNet delta1 0.926 -> 0.836), for live input.
            tiled: False for whole frames; True for high-resolution depth: the whole frames as one clip (the
                layout), and every tile position of `depth_anything.tiling.tile_grid` as a clip of its own
                through the same windows (the detail), each frame's tiles fitted to that frame's whole-frame
                depth (`TileAssembler`); "auto" tiles only frames large enough to gain from it. Not with
                `streaming`. Memory: every tile position holds its windows' state (measured: about 25 maps
                of the tile's size each; BENCHMARKS.md, "tiled in time").
            tile, overlap: with `tiled`, the tile side (a multiple of 14) and the pixels neighbouring tiles
                share (defaults: as for images).

        Returns:
            float32 (T, H, W) on the CPU for a list, tensor or array; for any other iterable, a generator that
            yields each frame's (H, W) depth as soon as it is final. Disparity for `video`, metres for
            `video_metric`.

        Example:
            >>> depth = model.infer_video(frames, input_size=518)  # (T, H, W)  # doctest: +SKIP
            >>> for frame_depth in model.infer_video(decoder):  # doctest: +SKIP
            ...     write(frame_depth)
        """
        if tiled not in (False, True, "auto"):
            raise ValueError(f"tiled must be False, True or 'auto', got {tiled!r}.")
        if tiled and streaming:
            raise ValueError("Tiled video runs in windows, not streamed: use streaming=False, or tiled=False.")
        check(
            None if input_size is None else input_size_problem(input_size, maximum=None),
            max_size_problem(max_size),
            batch_size_problem(batch_size),
            tile_problem(tile, overlap) if tiled else None,
        )
        whole = isinstance(frames, (list, tuple, torch.Tensor, np.ndarray))
        if whole:
            items = split_images(frames)
            if not items:
                raise ValueError("No frames given: pass at least one frame.")
            source, total = iter(items), len(items)
        else:
            source, total = (single for item in frames for single in split_images(item)), None
        if tiled:
            tiling = dict(auto=tiled == "auto", tile=tile, overlap=overlap)
            depths = self._tiled(source, total, batch_size, progress, input_size, max_size, **tiling)
        else:
            run = self._streamed if streaming else self._windowed
            depths = run(_ClipReader(source, self, input_size, max_size), total, batch_size, progress)
        return stack_if_same_size(list(depths)) if whole else depths

    def tile_predictor(self, *args, **kwargs):
        """As `DepthModel.tile_predictor`, each view a clip of its own: the tiles of one image (and the whole
        image) are not frames of a video, so they must not attend to each other. `infer_video(tiled=True)` is
        what keeps tiles stable over time."""
        predict = super().tile_predictor(*args, **kwargs)
        return lambda images: torch.cat([predict(view[None]) for view in images])

    def _tiled(
        self, source: Iterator[ImageInput], total, batch_size: int, progress, input_size, max_size, *, auto: bool,
        tile: int | None, overlap: int | None,
    ) -> Iterator[torch.Tensor]:
        source = (decoded(frame) for frame in source)  # a file or PIL frame decoded once, not once per tile
        first = next(source, None)
        if first is None:
            raise ValueError("No frames given: pass at least one frame.")
        source = itertools.chain([first], source)
        rule = self.family.preprocessing
        grid = tile_grid(
            *image_size(first), tile=tile, overlap=overlap, max_size=max_size, auto=auto,
            model_size=rule.input_size if input_size is None else input_size,
            net_size=lambda height, width: rule.net_size(height, width, input_size, max_size),
        )
        if grid is None:  # "auto" and frames too small to gain from tiles
            yield from self._windowed(_ClipReader(source, self, input_size, max_size), total, batch_size, progress)
            return
        # The clips are read in step, window by window, from one pass over the frames: a decoder is read once
        # and holds at most about two windows of frames.
        streams = itertools.tee(source, 1 + len(grid))
        done = 0
        # after every window of every clip: progress stays where it is, but raising from it stops the run there
        between = None if progress is None else (lambda _frames, _total: progress(done, total))
        whole = _ClipReader(streams[0], self, input_size, max_size, restore=False)
        clips = [self._windowed(whole, total, batch_size, between)]
        for stream, box in zip(streams[1:], grid.boxes()):
            reader = _ClipReader(_crops(stream, box, grid), self, input_size, max_size)
            clips.append(self._windowed(reader, total, batch_size, between, reuse_keys=False))
        for global_map, *tiles in zip(*clips):
            yield self._assemble(grid, global_map, tiles)
            done += 1
            if progress is not None:
                progress(done, total)

    def _assemble(self, grid: TileGrid, global_map: torch.Tensor, tiles: list[torch.Tensor]) -> torch.Tensor:
        """One frame's depth from its whole-frame depth (at the network's size) and its tiles' depth."""
        assembler = TileAssembler(grid, global_map, align="scale" if self.is_metric else "affine")
        boxes = grid.boxes()
        for start in range(0, len(boxes), 8):  # fitted a few at a time: the fits' memory stays small
            assembler.add(boxes[start : start + 8], torch.stack(tiles[start : start + 8]))
        return assembler.result()

    def _windowed(
        self, reader: _ClipReader, total: int | None, batch_size: int, progress, reuse_keys: bool = True
    ) -> Iterator[torch.Tensor]:
        """The official windows over one clip; `reuse_keys` keeps the key frames' features for the next window
        (less encoding, more memory: tiled video runs many clips at once and encodes them again instead)."""
        stitch = _Stitcher(metric=self.is_metric)
        keys: list[torch.Tensor] = []  # the previous window's inputs at KEYFRAMES
        key_features: ClipFeatures | None = None  # and their features, when the backend lets us keep them
        emitted = 0
        for start in itertools.count(0, STEP):
            if start > 0 and reader.count <= start:  # the official loop: windows start below the clip length
                break
            new = reader.take(WINDOW - len(keys))
            if new is None:
                raise ValueError("No frames given: pass at least one frame.")
            slots = keys + new
            with self.micro_batches(batch_size):
                prediction, key_features = self._window_prediction(slots, key_features)
            if not reuse_keys:
                key_features = None
            keys = [slots[i] for i in KEYFRAMES]
            finished = stitch.add(lambda i, window=prediction: reader.restore(window[i]))
            del slots, new, prediction  # not held while suspended: tiled video keeps many of these generators
            if reader.count <= start + STEP:  # no window follows: the held frames are final too
                finished += stitch.flush()
            finished = finished[: max(0, reader.count - emitted)][::-1]
            while finished:  # each map let go as it is given: a suspended window holds only what is still to come
                yield finished.pop()
                emitted += 1
            if progress is not None:
                progress(emitted, total)

    def _window_prediction(
        self, slots: list[torch.Tensor], shared: ClipFeatures | None
    ) -> tuple[torch.Tensor, ClipFeatures | None]:
        """One window's raw prediction (32, h, w), float32, and the features of its key frames for the next.

        The encoder works frame by frame, so the key frames a window shares with the one before need not be
        encoded again: on the eager backend their features are kept (the encoder sees 22 frames per window, not
        32; the official code encodes all 32). Other backends run whole windows through `predict`.
        """
        if not isinstance(self.backend, EagerBackend):
            return self.predict(torch.stack(slots)), None
        with torch.inference_mode():
            new = torch.stack(slots[len(shared) if shared is not None else 0 :]).to(self.dtype)
            features = self.encode(new) if shared is None else ClipFeatures.cat([shared, self.encode(new)])
            prediction = self.decode(features)[0].float()
        if not torch.isfinite(prediction).all():  # fp16 overflow: `predict` recomputes in float32 and says so
            return self.predict(torch.stack(slots)), None
        return prediction, features.frames(KEYFRAMES)

    def _streamed(self, reader: _ClipReader, total: int | None, batch_size: int, progress) -> Iterator[torch.Tensor]:
        history: list[list[torch.Tensor]] = []  # each frame's temporal-module inputs, the official sliding list
        index = -1
        while (chunk := reader.take(batch_size, pad=False)) is not None:
            with self.micro_batches(batch_size), torch.inference_mode():
                features = self.encode(torch.stack(chunk).to(self.dtype))
            for j in range(len(chunk)):
                index += 1
                cache = None
                if history:  # the first two cached frames and the latest ones, as the release
                    context = history[:2] + history[-(WINDOW - 3) :]
                    cache = [torch.cat([states[k] for states in context], dim=1) for k in range(len(context[0]))]
                with torch.inference_mode():
                    depth, states = self.decode(features.frames(slice(j, j + 1)), cache)
                if not history:
                    history = [states] * WINDOW  # the first frame stands in for a full window of earlier ones
                else:
                    history.append(states)
                if index + WINDOW > STREAM_GAP + 1:
                    del history[1]
                depth = depth.float()
                if not torch.isfinite(depth).all():
                    warnings.warn(
                        "Streaming gave non-finite depth (fp16 overflow); load the model with dtype='fp32' or 'bf16'.",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                yield reader.restore(depth[0])
            if progress is not None:
                progress(index + 1, total)
        if index < 0:
            raise ValueError("No frames given: pass at least one frame.")


def _crops(frames: Iterator[ImageInput], box: tuple[int, int], grid: TileGrid) -> Iterator[ImageInput]:
    """The tile at `box` of every frame, as the frames come."""
    for frame in frames:
        yield crop_image(frame, *box, grid.tile_height, grid.tile_width)


class _ClipReader:
    """Reads a clip's frames as the windows need them: network inputs of one size, counted, padded at the end."""

    def __init__(self, frames: Iterator[ImageInput], model: VideoDepthAnything, input_size, max_size, restore=True):
        self.frames = frames
        self.model = model
        self.restores = restore  # False: depth stays at the network's size (the whole frames of a tiled clip)
        self.input_size, self.max_size = input_size, max_size
        self.count = 0  # frames read so far (not counting padding)
        self.size: tuple[int, int] | None = None
        self.last: torch.Tensor | None = None

    def take(self, n: int, pad: bool = True) -> list[torch.Tensor] | None:
        """The next `n` frames' network inputs; past the end, copies of the last frame (or fewer when not
        `pad`). None when the clip had no frames left at all."""
        taken = []
        for frame in self.frames:
            taken.append(self._prepare(frame))
            if len(taken) == n:
                break
        if not taken and (self.last is None or not pad):
            return None
        if pad:
            taken += [self.last] * (n - len(taken))
        return taken

    def _prepare(self, frame: ImageInput) -> torch.Tensor:
        size = image_size(frame)
        if self.size is None:
            self.size = size
        elif size != self.size:
            raise ValueError(
                f"Frame {self.count} is {size[1]}x{size[0]} pixels but the clip's first frame is "
                f"{self.size[1]}x{self.size[0]}: every frame of a clip must have one size (resize them first)."
            )
        rule = self.model.family.preprocessing
        prepared = prepare_image(
            frame, rule, input_size=self.input_size, max_size=self.max_size, device=self.model.device
        )
        self.count += 1
        self.last = prepared.pixels
        return prepared.pixels

    def restore(self, prediction: torch.Tensor) -> torch.Tensor:
        """One (h, w) prediction -> float32 (H, W) depth at the frames' size, on the CPU."""
        if not self.restores:
            return prediction.to("cpu", torch.float32, copy=True)  # not a view: the window is not kept alive
        return self.model.restore(prediction[None], [self.size])[0]


class _Stitcher:
    """Joins the depth of consecutive windows as the release does, holding only the frames still to change."""

    def __init__(self, metric: bool):
        self.metric = metric
        self.reference: list[torch.Tensor] = []  # aligned depth of the key frames later windows are fitted to
        self.held: list[torch.Tensor] = []  # the last INTERP aligned frames, cross-faded by the next window

    def add(self, slot) -> list[torch.Tensor]:
        """A window's depth, `slot(i)` -> (H, W) for slot i -> the frames now final, in order."""
        if not self.reference:
            depth = [slot(i) for i in range(WINDOW)]
            self.reference = [depth[KEYFRAMES[i]] for i in range(ALIGN)]
            self.held = depth[WINDOW - INTERP :]
            return depth[: WINDOW - INTERP]
        shared = [slot(i) for i in range(ALIGN)]  # the window's own depth of the key frames it shares
        scale, shift = (1.0, 0.0) if self.metric else least_squares_fit(shared, self.reference)

        def aligned(i: int) -> torch.Tensor:
            return (slot(i) * scale + shift).clamp_min_(0.0)

        faded = cross_fade(self.held, [aligned(i) for i in range(ALIGN, OVERLAP)])
        new = [aligned(i) for i in range(OVERLAP, WINDOW)]
        self.reference = [self.reference[0]] + [new[KEYFRAMES[i] - OVERLAP] for i in range(1, ALIGN)]
        self.held = new[-INTERP:]
        return faded + new[:-INTERP]

    def flush(self) -> list[torch.Tensor]:
        held, self.held = self.held, []
        return held


def least_squares_fit(prediction: list[torch.Tensor], target: list[torch.Tensor]) -> tuple[float, float]:
    """(scale, shift) minimising |scale * prediction + shift - target|^2 over all pixels (1, 0 if degenerate)."""
    p = torch.cat([x.flatten() for x in prediction]).double()
    t = torch.cat([x.flatten() for x in target]).double()
    a00, a01, a11 = (p * p).sum(), p.sum(), float(p.numel())
    b0, b1 = (p * t).sum(), t.sum()
    det = a00 * a11 - a01 * a01
    if det == 0:
        return 1.0, 0.0
    return float((a11 * b0 - a01 * b1) / det), float((a00 * b1 - a01 * b0) / det)


def cross_fade(before: list[torch.Tensor], after: list[torch.Tensor]) -> list[torch.Tensor]:
    """Frames blended from `before` to `after` with weights of `after` rising linearly from 0 to 1."""
    last = len(before) - 1
    return [b * (1 - i / last) + a * (i / last) for i, (b, a) in enumerate(zip(before, after))]


# ----------------------------------------------------------------------------------------------- families


class VideoDepthAnythingFamily(ModelFamily):
    """Video Depth Anything, relative or metric: one network and layout, told apart by name."""

    layout = "video_depth_anything"
    temporal = True
    preprocessing = VideoPreprocessing()

    def __init__(
        self,
        name: str,
        description: str,
        *,
        output_kind: str,
        aliases: tuple[str, ...],
        known_models: tuple[KnownModel, ...],
    ):
        self.name = name
        self.description = description
        self.output_kind = output_kind
        self.aliases = aliases
        self.known_models = known_models

    def matches_name(self, name: str) -> bool:
        n = name.lower().replace("-", "_")
        return "video_depth_anything" in n and ("metric" in n) == self.is_metric

    def matches_layout(self, keys: Iterable[str]) -> bool:
        keys = set(keys)
        return "pretrained.cls_token" in keys and any(k.startswith("head.motion_modules.") for k in keys)

    def build(self, checkpoint, dtype: torch.dtype) -> VideoDepthAnything:
        from ..loading import CheckpointError, load_weights

        state = checkpoint.state_dict()
        encoder = encoder_from_state(state, checkpoint.weights_file)
        if encoder not in ENCODER_NAMES:
            raise CheckpointError(f"{checkpoint.weights_file}: Video Depth Anything has no {encoder} model.")
        with torch.device("meta"):
            model = VideoDepthAnything(encoder=encoder, family=self)
        load_weights(model, state, checkpoint.weights_file, dtype)
        # As for v2: the head's convolutions run faster channels-last (its linear layers are unaffected).
        model.head.to(memory_format=torch.channels_last)
        return model


def _released(metric: bool) -> tuple[KnownModel, ...]:
    family = "video_metric" if metric else "video"
    prefix = "metric_" if metric else ""
    repo = "Metric-Video-Depth-Anything" if metric else "Video-Depth-Anything"
    models = []
    for encoder, size in (("vits", "Small"), ("vitb", "Base"), ("vitl", "Large")):
        name = f"{prefix}video_depth_anything_{encoder}"
        licence = "Apache-2.0" if encoder == "vits" else "CC-BY-NC-4.0"
        models.append(KnownModel(name, family, encoder, f"depth-anything/{repo}-{size}", f"{name}.pth", licence))
    return tuple(models)


VIDEO = register_family(VideoDepthAnythingFamily(
    "video", "Video Depth Anything, relative disparity, temporally consistent",
    output_kind="disparity", aliases=("vda", "video_depth_anything", "video_relative"),
    known_models=_released(metric=False),
))
VIDEO_METRIC = register_family(VideoDepthAnythingFamily(
    "video_metric", "Video Depth Anything metric (Virtual KITTI + IRS), metres, temporally consistent",
    output_kind="metric_depth",
    aliases=("metric_video", "vda_metric", "metric_vda", "metric_video_depth_anything", "video_depth_anything_metric"),
    known_models=_released(metric=True),
))
