"""Video -> depth video with PyAV: exact frame rate, one depth range for the whole clip, bounded memory.

With one range for the clip (the default) every frame's depth must be known before the first frame is
written, so the clip is read twice: the first pass runs the model and keeps each frame's depth on disk as
16 bits across its own range (2 bytes per pixel, next to the output, deleted at the end); the second pass
decodes the frames again, maps the stored depth onto the clip's range and encodes. Memory stays at a few
frames whatever the clip's length.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..conditioning import DepthRange
from ..files import partial_path, write_atomic
from ..images import preview_rgb
from .outputs import GAP, QuantizedDepth, RenderOptions, render
from .pipeline import InferenceSettings, predict

_END = object()


class VideoError(ValueError):
    """A video file that cannot be read or written."""


def _import_av():
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is part of the video extra
        raise VideoError("Video needs PyAV: pip install 'depth-anything-preprocessor[video]'") from exc
    return av


def _background(iterable: Iterable, size: int) -> Iterator:
    """Iterate `iterable` in a background thread, at most `size` items ahead; errors re-raised here."""
    items: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterable:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            items.put(exc)

    thread = threading.Thread(target=produce, daemon=True, name="decode")
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


class _Clip:
    """An open input video: frames as uint8 RGB arrays, its frame rate and frame count (when known)."""

    def __init__(self, path: Path):
        av = _import_av()
        try:
            self.container = av.open(str(path))
        except Exception as exc:  # noqa: BLE001 - every FFmpeg error means the same to the user
            raise VideoError(f"cannot open video ({exc})") from exc
        if not self.container.streams.video:
            self.container.close()
            raise VideoError("the file has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate
        if not rate:
            self.container.close()
            raise VideoError("cannot tell the frame rate of the video")
        self.rate = Fraction(rate)
        self.width, self.height = self.stream.codec_context.width, self.stream.codec_context.height
        self.frames = int(self.stream.frames) or None

    def __iter__(self) -> Iterator[np.ndarray]:
        for frame in self.container.decode(self.stream):
            yield frame.to_ndarray(format="rgb24")

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> "_Clip":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Encoder:
    """Writes uint8 frames to an .mp4 (H.264 when available) at an exact rational frame rate, in a thread."""

    def __init__(self, file: BinaryIO, rate: Fraction, width: int, height: int):
        av = _import_av()
        self.rate = rate
        self.container = av.open(file, "w", format="mp4")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.stream = self.container.add_stream(codec, rate=rate)
        self.stream.width, self.stream.height = width + width % 2, height + height % 2  # yuv420p: even sides
        self.stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            self.stream.options = {"crf": "16"}  # depth banding shows at the default quality
        else:
            self.stream.bit_rate = 8 * width * height * int(rate + 1)
        self.count = 0
        self._frames: queue.Queue = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._encode_all, daemon=True, name="encode")
        self._thread.start()

    def _encode_all(self) -> None:
        av = _import_av()
        try:
            while (array := self._frames.get()) is not _END:
                if array.shape[0] % 2 or array.shape[1] % 2:
                    pad = ((0, array.shape[0] % 2), (0, array.shape[1] % 2)) + ((0, 0),) * (array.ndim - 2)
                    array = np.pad(array, pad, mode="edge")
                frame = av.VideoFrame.from_ndarray(array, format="gray" if array.ndim == 2 else "rgb24")
                frame.pts = self.count
                frame.time_base = 1 / self.rate
                self.container.mux(self.stream.encode(frame))
                self.count += 1
            self.container.mux(self.stream.encode(None))
        except BaseException as exc:  # noqa: BLE001 - re-raised by close()
            self._error = exc
            while self._frames.get() is not _END:  # drain so that the producer never blocks
                pass

    def write(self, array: np.ndarray) -> None:
        if self._error is not None:
            raise VideoError(f"cannot encode video ({self._error})") from self._error
        self._frames.put(array)

    def abort(self) -> None:
        """Stop after an error elsewhere; the caller discards the file."""
        self._frames.put(_END)
        self._thread.join()
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - the file is thrown away anyway
            pass

    def close(self) -> int:
        """Finish the file; returns the number of frames written."""
        self._frames.put(_END)
        self._thread.join()
        self.container.close()
        if self._error is not None:
            raise VideoError(f"cannot encode video ({self._error})") from self._error
        return self.count


def frame_count(path: Path) -> int | None:
    """Frames in a video as its container tells (None when it does not say or the file cannot be read)."""
    try:
        with _Clip(path) as clip:
            return clip.frames
    except VideoError:
        return None


def _batches(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _depths(model, frames: Iterable[np.ndarray], settings: InferenceSettings) -> Iterator[tuple]:
    """(frame, depth, sky mask or None) triples, frames decoded in the background and run through the model in
    batches."""
    for batch in _batches(_background(frames, 2 * settings.batch_size), settings.batch_size):
        for frame, maps in zip(batch, predict(model, batch, settings)):
            if isinstance(maps, Exception):
                raise maps
            yield frame, *maps


def video_depth(
    model,
    source: Path,
    output: Path,
    settings: InferenceSettings,
    options: RenderOptions,
    *,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the depth video of `source` to `output` (atomically); returns the number of frames.

    `options.format` is "side-by-side" (frame | gap | depth) or "png8" (depth only, colour or grayscale);
    `options.normalize` "batch" gives the whole clip one range. `progress(n)` is called as n more frames finish.

    Example:
        >>> settings, options = InferenceSettings(), RenderOptions()
        >>> video_depth(model, Path("clip.mp4"), Path("out/clip.mp4"), settings, options)  # doctest: +SKIP
        240
    """
    if options.format not in ("side-by-side", "png8"):
        raise VideoError(f"video output is side-by-side or depth only (png8), not {options.format!r}")
    tick = progress or (lambda n: None)
    with _Clip(source) as clip:
        rate, width, height = clip.rate, clip.width, clip.height
    out_width = 2 * width + GAP if options.format == "side-by-side" else width
    written = 0

    def checked(frame: np.ndarray) -> np.ndarray:
        if frame.shape[:2] != (height, width):
            raise VideoError(
                f"frame size changes within the video ({width}x{height} -> {frame.shape[1]}x{frame.shape[0]})"
            )
        return frame

    def encode(file: BinaryIO, pictures: Iterable[np.ndarray]) -> None:
        nonlocal written
        encoder = _Encoder(file, rate, out_width, height)
        try:
            for array in pictures:
                encoder.write(array)
        except BaseException:
            encoder.abort()
            raise
        written = encoder.close()

    if not options.two_pass:

        def single_pass() -> Iterator[np.ndarray]:
            with _Clip(source) as clip:
                for frame, depth, sky in _depths(model, map(checked, clip), settings):
                    yield render(options.unit(depth, far_mask=sky), preview_rgb(frame), options)
                    tick(1)

        write_atomic(output, lambda file: encode(file, single_pass()))
        return written

    store = partial_path(output, "depth")
    ranges: list[DepthRange] = []
    try:
        with open(store, "wb") as kept, _Clip(source) as clip:
            for _, depth, sky in _depths(model, map(checked, clip), settings):
                quantized = QuantizedDepth.from_depth(depth, options.kind, far_mask=sky)
                kept.write(quantized.levels.tobytes())
                ranges.append(quantized.range)
                tick(1)
        if not ranges:
            raise VideoError("the video has no frames")
        clip_range = DepthRange()
        for frame_range in ranges:
            clip_range = clip_range.merge(frame_range)
        shared = replace(options, normalize="per_image", kind="disparity")  # stored values are near-bright

        def second_pass() -> Iterator[np.ndarray]:
            with open(store, "rb") as kept, _Clip(source) as clip:
                for index, frame in enumerate(_background(map(checked, clip), 4)):
                    if index >= len(ranges):
                        raise VideoError("the video decoded to more frames the second time; cannot finish")
                    levels = np.fromfile(kept, dtype=np.uint16, count=height * width).reshape(height, width)
                    stored = QuantizedDepth(levels, ranges[index].low, ranges[index].high)
                    yield render(shared.unit(stored.values(), clip_range), preview_rgb(frame), options)

        write_atomic(output, lambda file: encode(file, second_pass()))
    finally:
        store.unlink(missing_ok=True)
    if written != len(ranges):
        raise VideoError(f"wrote {written} frames but computed depth for {len(ranges)}")
    return written
