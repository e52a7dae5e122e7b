"""Real encoded test videos made with PyAV: H.264 in .mp4, with an AAC track, rotation side data, variable
frame rates or a damaged packet, and a reader for what the command wrote."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np


def scene(height: int, width: int, seed: int) -> np.ndarray:
    """A photo-like uint8 RGB frame (gradients and a moving disc), different for each seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    disc = ((x - 0.3 - 0.02 * seed) ** 2 + (y - 0.4) ** 2 < 0.04).astype(float)
    channels = [np.sin(6 * x * rng.uniform(0.8, 1.2) + 0.3 * seed) * np.cos(5 * y) for _ in range(2)]
    image = np.stack([*channels, disc - 0.5], axis=-1) * 0.45 + 0.5
    return np.clip(image * 255 + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)


def clip_frames(count: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    return [scene(height, width, seed) for seed in range(count)]


def make_video(
    path: Path,
    frames: list[np.ndarray],
    rate: Fraction = Fraction(25),
    *,
    pts: list[int] | None = None,
    rotation: int = 0,
    audio_seconds: float = 0.0,
    audio_codec: str = "aac",
    intra_only: bool = False,
) -> Path:
    """Encode `frames` as H.264 in an .mp4 (time base 1 / rate unless `pts` says otherwise).

    pts: each frame's timestamp in units of 1 / rate (a variable frame rate when the steps differ).
    rotation: display-matrix rotation side data, counter-clockwise degrees, as phones write it.
    audio_seconds: add a track of a 440 Hz tone that long, in `audio_codec` (aac, or pcm_s16le for a .mov).
    intra_only: every frame a key frame (so that one damaged packet damages one frame only).
    """
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv444p" if height % 2 or width % 2 else "yuv420p"  # H.264 4:4:4 takes odd sides
        stream.codec_context.time_base = 1 / rate
        if intra_only:
            stream.options = {"g": "1", "bf": "0"}
        if rotation:
            stream.set_display_rotation(rotation)
        audio = container.add_stream(audio_codec, rate=44100, layout="stereo") if audio_seconds else None
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = index if pts is None else pts[index]
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio is not None:
            samples = int(44100 * audio_seconds)
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 44100)).astype(np.float32)
            resampler = av.AudioResampler(format=audio.format, layout="stereo", rate=44100)
            for start in range(0, samples, 1024):
                chunk = np.ascontiguousarray(np.repeat(tone[None, start : start + 1024], 2, axis=0))
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = 44100, start
                for converted in resampler.resample(frame):
                    container.mux(audio.encode(converted))
            container.mux(audio.encode(None))
    return path


def damage_packet(path: Path, index: int) -> None:
    """Overwrite the payload of the index-th video packet with garbage, in place (a corrupt frame mid-file)."""
    import av

    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    position, size = packets[index]
    data = bytearray(path.read_bytes())
    data[position + 4 : position + size] = np.random.default_rng(0).integers(0, 255, size - 4, np.uint8).tobytes()
    path.write_bytes(bytes(data))


@dataclass
class DecodedVideo:
    rate: Fraction
    frames: list[np.ndarray]  # uint8 RGB as stored (no rotation applied)
    pts: list[int]
    time_base: Fraction
    rotations: list[int]
    audio_codec: str | None
    audio_seconds: float


def read_video(path: Path) -> DecodedVideo:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = list(container.decode(stream))
        audio_codec, audio_seconds = None, 0.0
        if container.streams.audio:
            audio = container.streams.audio[0]
            audio_codec = audio.codec_context.name
        return_value = DecodedVideo(
            Fraction(stream.average_rate), [f.to_ndarray(format="rgb24") for f in decoded], [f.pts for f in decoded],
            Fraction(stream.time_base), [int(getattr(f, "rotation", 0) or 0) for f in decoded], audio_codec, 0.0,
        )
    if audio_codec is not None:
        with av.open(str(path)) as container:
            samples = sum(frame.samples for frame in container.decode(audio=0))
            return_value.audio_seconds = samples / container.streams.audio[0].codec_context.sample_rate
    return return_value
