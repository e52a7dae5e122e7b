"""Video files in and out with PyAV: frames as players show them, every frame's own time, the sound kept.

Reading (`probe`, `VideoReader`): a demux pass (no decoding) numbers every frame by its presentation time, so the
frame count is exact and a variable frame rate is recognised; frames are then decoded upright (a phone video's
rotation is applied, as players do), and a packet that does not decode is skipped and recorded while the frames
after it keep their own numbers.

Writing (`VideoWriter`): H.264 .mp4 (MPEG-4 Part 2 where FFmpeg has no libx264) whose frames carry the source's
timestamps, so the frame rate is exactly the source's (a variable one too) and the sound stays in sync; the
source's audio is copied in (re-encoded to AAC when .mp4 cannot hold its codec). Encoding runs in a thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np

_END = object()
# Audio codecs the .mp4 muxer stores as they are; others are re-encoded to AAC.
MP4_AUDIO_CODECS = frozenset({"aac", "mp3", "ac3", "eac3", "alac"})


class VideoError(ValueError):
    """A video file that cannot be read or written."""


def import_av():
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is part of the video extra
        raise VideoError("Video needs PyAV: pip install 'depth-anything-preprocessor[video]'") from exc
    return av


def _open(path: Path):
    av = import_av()
    try:
        container = av.open(str(path))
    except Exception as exc:  # noqa: BLE001 - every FFmpeg error means the same to the user
        raise VideoError(f"cannot open video ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise VideoError("the file has no video stream (an .mp4 copied only in part loses the index that lists them)")
    return container


@dataclass
class Skipped:
    """A frame that could not be decoded."""

    number: int  # its place in the clip (0-based) as the demux pass numbered it; -1 when the file has no pts
    seconds: float | None
    reason: str

    def describe(self) -> str:
        which = f"frame {self.number}" if self.number >= 0 else "a frame"
        at = f" ({self.seconds:.2f} s)" if self.seconds is not None else ""
        return f"{which}{at} could not be decoded ({self.reason}) and was skipped"


@dataclass
class VideoInfo:
    """What the demux pass and the first frame tell about a video."""

    frames: int  # frames in the file (packets with data), decodable or not
    width: int  # as shown: after rotation
    height: int
    rate: Fraction  # average frames per second
    time_base: Fraction  # of the timestamps below
    rotation: int  # degrees counter-clockwise the stored pictures are turned to be shown upright
    variable_rate: bool
    has_audio: bool
    numbers: dict[int, int] = field(default_factory=dict)  # pts -> frame number; empty when the file has no pts

    def seconds(self, pts: int | None) -> float | None:
        return None if pts is None else float(pts * self.time_base)


def _rate(stream, pts: list[int]) -> Fraction | None:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if rate:
        return Fraction(rate)
    if len(pts) > 1 and pts[-1] > pts[0]:
        return Fraction(len(pts) - 1) / ((pts[-1] - pts[0]) * Fraction(stream.time_base))
    return None


def _varies(pts: list[int]) -> bool:
    """Whether frame durations differ by more than timestamp rounding (1 tick, or a tenth of the typical one)."""
    steps = np.diff(np.asarray(pts, dtype=np.int64))
    if steps.size < 2:
        return False
    typical = float(np.median(steps))
    return float(steps.max() - steps.min()) > max(1.0, 0.1 * typical)


def _quarter_turns(rotation: float) -> int:
    return int(round(rotation / 90.0)) % 4


def probe(path: Path) -> VideoInfo:
    """Count and number the frames of a video without decoding them, and read its size and rotation.

    Raises:
        VideoError: the file cannot be opened, has no video stream, no frames, or no frame that decodes.
    """
    container = _open(path)
    try:
        stream = container.streams.video[0]
        has_audio = bool(container.streams.audio)
        pts: list[int] = []
        count = 0
        try:
            for packet in container.demux(stream):
                if packet.size:
                    count += 1
                    if packet.pts is not None:
                        pts.append(packet.pts)
        except Exception as exc:  # noqa: BLE001 - a damaged container
            raise VideoError(f"the file is damaged after {count} frames ({exc}); nothing was written") from exc
        if not count:
            raise VideoError("the video has no frames")
        pts.sort()
        rate = _rate(stream, pts)
        if rate is None:
            raise VideoError("cannot tell the frame rate of the video")
        time_base = Fraction(stream.time_base) if stream.time_base else 1 / rate
        numbers = {p: n for n, p in enumerate(pts)} if len(pts) == count and len(set(pts)) == count else {}
        variable = _varies(pts) if numbers else False
    finally:
        container.close()
    decoding = VideoReader(path, None).decoded()
    try:
        first = next(decoding, None)
    finally:
        decoding.close()
    if first is None:
        raise VideoError("no frame of the video can be decoded")
    rotation = int(getattr(first, "rotation", 0) or 0)  # PyAV >= 14 reads the display matrix
    width, height = first.width, first.height
    if _quarter_turns(rotation) % 2:
        width, height = height, width
    return VideoInfo(count, width, height, rate, time_base, rotation, variable, has_audio, numbers)


@dataclass
class Frame:
    """A decoded frame: its number in the clip, its timestamp and its uint8 RGB picture, upright."""

    number: int
    pts: int | None
    array: np.ndarray | None  # None for frames before the start a reader was asked for


class VideoReader:
    """Decodes a video's frames in presentation order, upright; undecodable packets are skipped and recorded.

    Example:
        >>> info = probe(Path("clip.mp4"))  # doctest: +SKIP
        >>> reader = VideoReader(Path("clip.mp4"), info)  # doctest: +SKIP
        >>> for frame in reader.frames():  # doctest: +SKIP
        ...     print(frame.number, frame.array.shape)
        >>> reader.skipped  # frames that did not decode  # doctest: +SKIP
    """

    def __init__(self, path: Path, info: VideoInfo | None):
        self.path = path
        self.info = info
        self.errors: list[str] = []  # decoder messages of the packets that failed
        self.skipped: list[Skipped] = []  # filled when `frames` has read the whole video

    def decoded(self) -> Iterator:
        """PyAV frames as decoded; a packet that fails is left out and decoding goes on (see `frames`)."""
        container = _open(self.path)
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for packet in container.demux(stream):
                try:
                    yield from packet.decode()
                except Exception as exc:  # noqa: BLE001 - a damaged packet: its frame is missing, reported
                    self.errors.append(getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
        finally:
            container.close()

    def frames(self, start: int = 0) -> Iterator[Frame]:
        """Frames in order; the first `start` decodable ones come without their picture (`array` None), cheaply.

        Once all are read, `skipped` lists the frames that did not decode, by the numbers the demux pass gave
        them (with frame threading an error surfaces a few packets late, so the numbers are what tells).

        Raises:
            VideoError: a frame's size differs from the first frame's.
        """
        info = self.info
        numbers = info.numbers if info is not None else {}
        turns = _quarter_turns(info.rotation) if info is not None else 0
        seen: set[int] = set()
        position = 0
        last = -1
        for frame in self.decoded():
            number = numbers.get(frame.pts, -1)
            if number <= last:  # no timestamps to go by: count
                number = last + 1
            last = number
            seen.add(number)
            array = None
            if position >= start:
                array = frame.to_ndarray(format="rgb24")
                if turns:
                    array = np.ascontiguousarray(np.rot90(array, turns))
                if info is not None and array.shape[:2] != (info.height, info.width):
                    raise VideoError(
                        f"frame size changes within the video ({info.width}x{info.height} -> "
                        f"{array.shape[1]}x{array.shape[0]} at frame {number})"
                    )
            position += 1
            yield Frame(number, frame.pts, array)
        reason = self.errors[0] if self.errors else "no picture came out of the decoder"
        if numbers:
            times = {number: pts for pts, number in numbers.items()}
            self.skipped = [Skipped(n, info.seconds(times[n]), reason) for n in sorted(set(times) - seen)]
        else:
            self.skipped = [Skipped(-1, None, error) for error in self.errors]


# -------------------------------------------------------------------------------------------------- writing


class _Audio:
    """The source's audio as packets for the output, in time order: copied, or re-encoded to AAC."""

    def __init__(self, source: Path, output):
        av = import_av()
        self.container = av.open(str(source))
        self.input = self.container.streams.audio[0]
        self.copy = self.input.codec_context.name in MP4_AUDIO_CODECS
        if self.copy:
            self.stream = output.add_stream_from_template(self.input)
        else:
            rate = self.input.codec_context.sample_rate or 48000
            self.stream = output.add_stream("aac", rate=rate)
            self.resampler = av.AudioResampler(format="fltp", layout=self.stream.layout, rate=rate)
        self._packets = self._generate()
        self._next = None

    def _generate(self) -> Iterator:
        for packet in self.container.demux(self.input):
            if self.copy:
                if packet.size and packet.dts is not None:
                    packet.stream = self.stream
                    yield packet
                continue
            try:
                frames = packet.decode()
            except Exception:  # noqa: BLE001 - a damaged audio packet: leave a gap
                continue
            for frame in frames:
                for resampled in self.resampler.resample(frame):
                    yield from self.stream.encode(resampled)
        if not self.copy:
            for resampled in self.resampler.resample(None):
                yield from self.stream.encode(resampled)
            yield from self.stream.encode(None)

    @staticmethod
    def _seconds(packet) -> float:
        stamp = packet.dts if packet.dts is not None else packet.pts
        return float(stamp * packet.time_base) if stamp is not None and packet.time_base else 0.0

    def until(self, seconds: float | None) -> Iterator:
        """Packets up to `seconds` (all that remain for None)."""
        while True:
            if self._next is None:
                self._next = next(self._packets, None)
                if self._next is None:
                    return
            if seconds is not None and self._seconds(self._next) > seconds:
                return
            packet, self._next = self._next, None
            yield packet

    def close(self) -> None:
        self.container.close()


class VideoWriter:
    """Writes uint8 frames to an .mp4 with the source's timestamps and audio, encoding in a thread.

    Sides are padded to even numbers (the last row / column repeated) as 4:2:0 video needs.

    Example:
        >>> with open("out.mp4", "wb") as file:  # doctest: +SKIP
        ...     writer = VideoWriter(file, info, width, height, audio_from=Path("clip.mp4"))
        ...     writer.write(picture, frame.pts)
        ...     writer.close()
    """

    def __init__(self, file: BinaryIO, info: VideoInfo, width: int, height: int, *, audio_from: Path | None = None):
        av = import_av()
        self.av = av
        self.info = info
        self.container = av.open(file, "w", format="mp4")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.stream = self.container.add_stream(codec, rate=info.rate)
        self.stream.width, self.stream.height = width + width % 2, height + height % 2
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.time_base = info.time_base  # frames keep the source's own timestamps
        if codec == "libx264":
            self.stream.options = {"crf": "16"}  # depth banding shows at the default quality
        else:
            self.stream.bit_rate = 8 * width * height * int(info.rate + 1)
        self.audio = _Audio(audio_from, self.container) if audio_from is not None and info.has_audio else None
        self.count = 0
        self._last_pts: int | None = None
        self._frames: queue.Queue = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._encode_all, daemon=True, name="encode")
        self._thread.start()

    def _pts(self, pts: int | None) -> int:
        """The source timestamp, or (files without any) the frame's place at the average rate."""
        if pts is None or (self._last_pts is not None and pts <= self._last_pts):
            step = max(1, round(1 / (self.info.rate * self.info.time_base)))
            pts = 0 if self._last_pts is None else self._last_pts + step
        self._last_pts = pts
        return pts

    def _encode_all(self) -> None:
        av = self.av
        try:
            while (item := self._frames.get()) is not _END:
                array, pts = item
                if array.shape[0] % 2 or array.shape[1] % 2:
                    pad = ((0, array.shape[0] % 2), (0, array.shape[1] % 2)) + ((0, 0),) * (array.ndim - 2)
                    array = np.pad(array, pad, mode="edge")
                frame = av.VideoFrame.from_ndarray(array, format="gray" if array.ndim == 2 else "rgb24")
                frame.pts = self._pts(pts)
                frame.time_base = self.info.time_base
                self.container.mux(self.stream.encode(frame))
                if self.audio is not None:
                    for packet in self.audio.until(float(frame.pts * self.info.time_base)):
                        self.container.mux(packet)
                self.count += 1
            self.container.mux(self.stream.encode(None))
            if self.audio is not None:
                for packet in self.audio.until(None):
                    self.container.mux(packet)
        except BaseException as exc:  # noqa: BLE001 - re-raised by write() / close()
            self._error = exc
            while self._frames.get() is not _END:  # drain so that the producer never blocks
                pass

    def write(self, array: np.ndarray, pts: int | None) -> None:
        if self._error is not None:
            raise VideoError(f"cannot encode video ({self._error})") from self._error
        self._frames.put((array, pts))

    def _finish(self) -> None:
        self._frames.put(_END)
        self._thread.join()
        if self.audio is not None:
            self.audio.close()

    def abort(self) -> None:
        """Stop after an error elsewhere; the caller discards the file."""
        self._finish()
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - the file is thrown away anyway
            pass

    def close(self) -> int:
        """Finish the file; returns the number of frames written."""
        self._finish()
        self.container.close()
        if self._error is not None:
            raise VideoError(f"cannot encode video ({self._error})") from self._error
        return self.count
