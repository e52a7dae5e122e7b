"""Video -> depth: a depth video, 16-bit depth frames or raw depth, in bounded memory, resumable.

Every family goes through `DepthModel.infer_video`: Video Depth Anything runs its own temporal windows, per-frame
families (v1, v2, metric) run frame by frame as before (`--tiled` keeps their tiled per-frame path; Video Depth
Anything tiles in time as well, each tile position a clip through its windows).

Each video is done in two passes over a store folder of its own (`<outdir>/.depth-anything-video-store/`):

1. the model's pass decodes the frames and writes their depth in chunks of `CHUNK_FRAMES` frames: 16 bits across
   each frame's own range (2 bytes per pixel), or float32 for `--format npy`. A chunk is finished once its small
   record file is written (after its data, both atomically), so a killed run leaves only finished chunks and the
   next run goes on after the last one. Per-frame families resume exactly. A temporal family re-runs
   `RESUME_OVERLAP` frames before the resume point and is fitted onto the stored depth there by a least-squares
   scale and shift (none for metric models), as Video Depth Anything fits each window onto the one before: the
   frames after a resume point are close to an uninterrupted run's, not identical (the windows fall elsewhere).
2. the output pass renders the stored depth over the clip's range (one range for the clip by default) and writes
   the output atomically: an .mp4 with the source's timestamps and audio, a folder of 16-bit PNG frames (moved
   into place when complete), or one float32 .npy of shape (T, H, W).

Memory stays at a few frames plus the model's window whatever the clip's length.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePath
from typing import BinaryIO

import numpy as np
import torch

from ..conditioning import DepthRange, near_bright
from ..depth_files import write_sidecar
from ..files import remove_stale_partials, write_atomic
from ..images import preview_rgb
from .outputs import GAP, QuantizedDepth, RenderOptions, encode, render
from .pipeline import InferenceSettings, Task, predict
from .video_io import Frame, VideoError, VideoInfo, VideoReader, VideoWriter, probe

__all__ = ["VideoError", "VideoResult", "video_depth", "video_output", "video_tasks", "frame_count"]

VIDEO_STORE_FOLDER = ".depth-anything-video-store"
CHUNK_FRAMES = 48  # frames per resumable chunk of stored depth
RESUME_OVERLAP = 32  # frames a temporal model re-runs before a resume point: one Video Depth Anything window
FRAMES_SUFFIX = "_frames"  # --format png16: <video>_frames/000000.png ...
_MANIFEST = "video.json"
_END = object()


# ------------------------------------------------------------------------------------------------- outputs


def video_output(relative: PurePath, outdir: Path, fmt: str) -> Path:
    """Where a video's output goes under `outdir`: <name>.mp4, <name>_frames/ (png16) or <name>.npy."""
    name = relative.name
    if fmt == "png16":
        return outdir / relative.with_name(name + FRAMES_SUFFIX)
    return outdir / relative.with_name(name + (".npy" if fmt == "npy" else ".mp4"))


def video_tasks(sources: Iterable, outdir: Path, fmt: str) -> list[Task]:
    """One task per video source (`batch.inputs.Source`): its output and its store folder under `outdir`."""
    return [
        Task(source.path, video_output(source.relative, outdir, fmt), outdir / VIDEO_STORE_FOLDER / source.relative)
        for source in sources
    ]


def frame_count(path: Path) -> int | None:
    """Frames in a video, counted from its packets (None when it cannot be read)."""
    try:
        return probe(path).frames
    except VideoError:
        return None


@dataclass
class VideoResult:
    """What `video_depth` did for one video."""

    frames: int  # frames written
    resumed_from: int = 0  # frames of an interrupted run that were kept
    notes: list[str] = field(default_factory=list)  # skipped frames, variable frame rate, ...


# --------------------------------------------------------------------------------------------- depth store


def _signature(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class DepthStore:
    """A video's depth between the two passes, in resumable chunks (see the module docstring).

    `identity` holds everything the stored depth depends on (the source file, the model and its settings);
    a store made with another identity is discarded.
    """

    def __init__(self, folder: Path, identity: dict, raw: bool, height: int, width: int):
        self.folder = folder
        self.raw = raw  # float32 depth (npy output) instead of 16-bit near-bright levels
        self.shape = (height, width)
        self.dtype = np.dtype(np.float32 if raw else np.uint16)
        self.identity = identity
        manifest = self._read(folder / _MANIFEST)
        if manifest is None or manifest.get("identity") != identity:
            shutil.rmtree(folder, ignore_errors=True)
            manifest = {"identity": identity, "complete": False, "notes": []}
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_partials([folder])
        self.manifest = manifest
        self._save_manifest()
        self.chunks = self._finished_chunks()

    @staticmethod
    def _read(path: Path) -> dict | None:
        try:
            loaded = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return loaded if isinstance(loaded, dict) else None

    def _save_manifest(self) -> None:
        text = json.dumps(self.manifest, indent=1, sort_keys=True).encode()
        write_atomic(self.folder / _MANIFEST, lambda file: file.write(text))

    def _data(self, index: int) -> Path:
        return self.folder / f"chunk_{index:06d}.bin"

    def _record(self, index: int) -> Path:
        return self.folder / f"chunk_{index:06d}.json"

    def _finished_chunks(self) -> list[dict]:
        """Records of the chunks finished so far, in order; anything after a gap is not trusted."""
        chunks = []
        frame_bytes = self.dtype.itemsize * self.shape[0] * self.shape[1]
        while (record := self._read(self._record(len(chunks)))) is not None:
            data = self._data(len(chunks))
            if not data.is_file() or data.stat().st_size != record["count"] * frame_bytes:
                break
            chunks.append(record)
        return chunks

    @property
    def frames_done(self) -> int:
        return sum(chunk["count"] for chunk in self.chunks)

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    def add_chunk(self, frames: Iterable[tuple[Frame, torch.Tensor]]) -> int:
        """Store the next chunk from (frame, depth) pairs; returns the number of frames it holds."""
        record: dict = {"count": 0, "numbers": [], "pts": [], "ranges": []}

        def write(file: BinaryIO) -> None:
            for frame, depth in frames:
                if tuple(depth.shape) != self.shape:
                    raise VideoError(f"depth of frame {frame.number} is {tuple(depth.shape)}, not {self.shape}")
                if self.raw:
                    file.write(depth.float().numpy().astype(np.float32, copy=False).tobytes())
                    record["ranges"].append(None)
                else:
                    quantized = QuantizedDepth.from_depth(depth, "disparity")  # values are near-bright already
                    file.write(quantized.levels.tobytes())
                    record["ranges"].append([quantized.low, quantized.high])
                record["numbers"].append(frame.number)
                record["pts"].append(frame.pts)
                record["count"] += 1

        index = len(self.chunks)
        write_atomic(self._data(index), write)
        if record["count"]:
            text = json.dumps(record).encode()
            write_atomic(self._record(index), lambda file: file.write(text))  # the chunk counts from here
            self.chunks.append(record)
        else:
            self._data(index).unlink(missing_ok=True)
        return record["count"]

    def finish(self, notes: list[str]) -> None:
        self.manifest.update(complete=True, notes=notes)
        self._save_manifest()

    def frames(self) -> Iterator[tuple[int, int | None, torch.Tensor, DepthRange | None]]:
        """(frame number, pts, values, own range) of every stored frame in order: near-bright values (levels
        back to floats) or raw float32 depth."""
        count = self.shape[0] * self.shape[1]
        for index, chunk in enumerate(self.chunks):
            with open(self._data(index), "rb") as data:
                for number, pts, own in zip(chunk["numbers"], chunk["pts"], chunk["ranges"]):
                    array = np.fromfile(data, dtype=self.dtype, count=count).reshape(self.shape)
                    if self.raw:
                        yield number, pts, torch.from_numpy(array), None
                    else:
                        stored = QuantizedDepth(array, *own)
                        yield number, pts, stored.values(), stored.range

    def clip_range(self) -> DepthRange:
        shared = DepthRange()
        for chunk in self.chunks:
            for low, high in chunk["ranges"]:
                shared = shared.merge(DepthRange(low, high))
        return shared

    def remove(self) -> None:
        """Delete the store, and the folders above it that it leaves empty (up to the store root)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        if VIDEO_STORE_FOLDER not in self.folder.parts:
            return
        for parent in self.folder.parents:
            try:
                parent.rmdir()
            except OSError:  # not empty, or not ours
                break
            if parent.name == VIDEO_STORE_FOLDER:
                break


# --------------------------------------------------------------------------------------------- model pass


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


def _frame_by_frame(model, arrays: Iterator[np.ndarray], settings: InferenceSettings) -> Iterator[tuple]:
    """(depth, sky mask or None) of each frame, batch by batch, through the image path: tiled depth (`--tiled`)
    and families with a sky output, which see one frame at a time."""
    batch: list[np.ndarray] = []

    def run() -> Iterator[tuple]:
        for maps in predict(model, batch, settings):
            if isinstance(maps, Exception):
                raise maps
            yield maps

    for array in arrays:
        batch.append(array)
        if len(batch) == settings.batch_size:
            yield from run()
            batch = []
    if batch:
        yield from run()


def _depths(model, frames: Iterator[Frame], settings: InferenceSettings) -> Iterator[tuple]:
    """(frame, depth, sky mask or None) in order, through `infer_video` (or the per-frame image path)."""
    kept: queue.SimpleQueue = queue.SimpleQueue()  # frames the model has taken and not given back yet

    def arrays() -> Iterator[np.ndarray]:
        for frame in frames:
            kept.put(frame)
            yield frame.array

    temporal = model.family.temporal
    if (settings.tiled != "off" and not temporal) or model.has_sky:
        maps = _frame_by_frame(model, arrays(), settings)
    else:
        # (a temporal model tiles in time too, with --tiled: each tile position is a clip of its own)
        depths = model.infer_video(arrays(), batch_size=settings.batch_size, **settings.infer_kwargs())
        maps = ((depth, None) for depth in depths)
    for depth, sky in maps:
        frame = kept.get_nowait()
        frame.array = None  # the picture is no longer needed: bounded memory
        yield frame, depth, sky


class _Affine:
    """Least-squares scale and shift of new values onto stored ones, gathered frame by frame (sums only, so that
    the overlap is never held whole: 32 frames of 1080p depth would be a gigabyte in float64)."""

    def __init__(self) -> None:
        self.n = self.sx = self.sy = self.sxx = self.sxy = 0.0

    def add(self, new: torch.Tensor, stored: torch.Tensor) -> None:
        finite = torch.isfinite(new) & torch.isfinite(stored)
        x, y = new[finite].double(), stored[finite].double()
        self.n += x.numel()
        self.sx += float(x.sum())
        self.sy += float(y.sum())
        self.sxx += float((x * x).sum())
        self.sxy += float((x * y).sum())

    def solve(self) -> tuple[float, float]:
        if self.n < 2:
            return 1.0, 0.0
        variance = self.n * self.sxx - self.sx * self.sx
        if variance <= 1e-12 * max(1.0, self.n * self.sxx):
            return 1.0, (self.sy - self.sx) / self.n
        scale = (self.n * self.sxy - self.sx * self.sy) / variance
        return scale, (self.sy - scale * self.sx) / self.n


def _model_pass(model, source: Path, info: VideoInfo, store: DepthStore, settings: InferenceSettings,
                tick: Callable[[int], None]) -> list[str]:
    """Fill `store` with the depth of every frame not stored yet; returns notes on frames that were skipped."""
    kind = model.output_kind
    done = store.frames_done
    temporal = bool(getattr(model.family, "temporal", False))
    start = max(0, done - RESUME_OVERLAP) if temporal else done

    def values(depth: torch.Tensor, sky: torch.Tensor | None) -> torch.Tensor:
        if store.raw:
            return depth.float()
        bright = near_bright(depth, kind)
        return bright if sky is None else bright.masked_fill(sky > 0.5, torch.nan)  # NaN: far in every range

    reader = VideoReader(source, info)
    pairs = _depths(model, _background(_skip_to(reader.frames(start), start), 4), settings)
    try:
        scale, shift = 1.0, 0.0
        if start < done:  # a temporal model's resume: fit the re-run overlap onto what is stored
            affine = _Affine()
            stored = (kept for _, _, kept, _ in store.frames())
            for stored_values, (_, depth, sky) in zip(_take(_skip_to(stored, start), done - start), pairs):
                affine.add(values(depth, sky), stored_values)
            if kind != "metric_depth":  # metres already: Video Depth Anything does not rescale metric depth either
                scale, shift = affine.solve()

        def fitted() -> Iterator[tuple[Frame, torch.Tensor]]:
            for frame, depth, sky in pairs:
                out = values(depth, sky)
                if scale != 1.0 or shift != 0.0:
                    out = out * scale + shift
                yield frame, out
                tick(1)

        stream = fitted()
        while store.add_chunk(_take(stream, CHUNK_FRAMES)) == CHUNK_FRAMES:
            pass
    finally:  # stop the decoding thread at once when the run stops (an error, Ctrl-C)
        pairs.close()
    if not store.frames_done:
        raise VideoError("no frame of the video can be decoded")
    return [skip.describe() for skip in reader.skipped]


def _skip_to(items: Iterable, start: int) -> Iterator:
    for position, item in enumerate(items):
        if position >= start:
            yield item


def _take(iterator: Iterator, count: int) -> Iterator:
    for _ in range(count):
        item = next(iterator, _END)
        if item is _END:
            return
        yield item


# -------------------------------------------------------------------------------------------- output pass


def _value_range(store: DepthStore, options: RenderOptions) -> DepthRange | None:
    return store.clip_range() if options.normalize == "batch" else None


def _write_video(store: DepthStore, info: VideoInfo, source: Path, output: Path, options: RenderOptions) -> int:
    shared = replace(options, kind="disparity")  # stored values are near-bright
    clip_range = _value_range(store, options)
    side_by_side = options.format == "side-by-side"
    width = 2 * info.width + GAP if side_by_side else info.width
    written = 0

    def pictures() -> Iterator[tuple[np.ndarray, int | None]]:
        frames = _background(VideoReader(source, info).frames(), 4) if side_by_side else None
        for number, pts, values, _ in store.frames():
            image = None
            if frames is not None:
                frame = next((f for f in frames if f.number >= number), None)
                if frame is None or frame.number != number:
                    raise VideoError(f"frame {number} did not decode the second time; cannot finish")
                image = preview_rgb(frame.array)
            yield render(shared.unit(values, clip_range), image, options), pts

    def write(file: BinaryIO) -> None:
        nonlocal written
        writer = VideoWriter(file, info, width, info.height, audio_from=source)
        try:
            for picture, pts in pictures():
                writer.write(picture, pts)
        except BaseException:
            writer.abort()
            raise
        written = writer.close()

    write_atomic(output, write)
    return written


def _write_frames(store: DepthStore, output: Path, options: RenderOptions) -> int:
    """16-bit PNG frames named by frame number, gathered in the store and moved into place when complete."""
    shared = replace(options, format="png16", kind="disparity")  # stored values are near-bright
    clip_range = _value_range(store, options)
    folder = store.folder / "frames"
    folder.mkdir(exist_ok=True)
    remove_stale_partials([folder])
    written = 0
    for number, _, values, _ in store.frames():
        path = folder / f"{number:06d}.png"
        if not path.exists():  # frames of an interrupted output pass are complete and rendered the same way
            value_range = clip_range or shared.own_range(values)
            about = options.metadata(store.shape, value_range)  # the model's kind, the range the levels span
            data = encode(render(shared.unit(values, value_range), None, shared), ".png", about)
            write_atomic(path, lambda file: file.write(data))
        written += 1
    _move_into_place(folder, output)
    return written


def _move_into_place(folder: Path, output: Path) -> None:
    """Replace `output` (a folder) by `folder`; an old output is moved aside first and deleted after."""
    output.parent.mkdir(parents=True, exist_ok=True)
    old = output.with_name(f".{output.name}.old-{os.getpid()}")
    if output.exists():
        os.replace(output, old)
    os.replace(folder, output)
    shutil.rmtree(old, ignore_errors=True)


def _write_npy(store: DepthStore, output: Path, options: RenderOptions) -> int:
    """One float32 (T, H, W) .npy of the raw depth, streamed from the store, and first the .json beside it
    (`depth_anything.depth_files`: the model, the kind and, for one range over the clip, that range)."""
    count = store.frames_done
    clip_range = None
    if options.normalize == "batch":
        clip_range = DepthRange()
        for _, _, values, _ in store.frames():
            clip_range.update(values, options.kind)
    write_sidecar(output, options.metadata(store.shape, clip_range))
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
              "shape": (count, *store.shape)}

    def write(file: BinaryIO) -> None:
        np.lib.format.write_array_header_1_0(file, header)
        for _, _, values, _ in store.frames():
            file.write(values.numpy().astype("<f4", copy=False).tobytes())

    write_atomic(output, write)
    return count


# ---------------------------------------------------------------------------------------------------- job


def video_depth(
    model,
    source: Path,
    output: Path,
    settings: InferenceSettings,
    options: RenderOptions,
    *,
    store: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> VideoResult:
    """Write the depth of video `source` to `output` (atomically), resuming from `store` when a run stopped.

    `options.format`: "side-by-side" (frame | gap | depth) or "png8" (depth only) make an .mp4 with the
    source's timestamps and audio; "png16" a folder of 16-bit frames; "npy" one float32 (T, H, W) array of the
    raw depth. `options.normalize` "batch" gives the whole clip one range. `store` is the folder kept between
    the passes (default: beside the output); `progress(n)` is called as n more frames have their depth (the
    frames a resumed run finds stored come first, at once).

    Example:
        >>> settings, options = InferenceSettings(), RenderOptions(format="png8", normalize="batch")
        >>> video_depth(model, Path("clip.mp4"), Path("out/clip.mp4"), settings, options)  # doctest: +SKIP
        VideoResult(frames=240, resumed_from=0, notes=[])
    """
    tick = progress or (lambda n: None)
    info = probe(source)
    notes = []
    if info.variable_rate:
        notes.append("variable frame rate: every depth frame keeps its source frame's timestamp")
    if info.rotation % 360:
        notes.append(f"rotated {info.rotation} degrees as players show it")
    store_folder = store or output.with_name(f".{output.name}.store")
    checkpoint = Path(str(model.source)) if getattr(model, "source", None) else None
    identity = {
        "source": _signature(source),
        "frames": info.frames,
        "checkpoint": [str(checkpoint), _signature(checkpoint)] if checkpoint and checkpoint.is_file() else None,
        "family": model.family.name,
        "settings": asdict(settings),
        "raw": options.format == "npy",
        "chunk_frames": CHUNK_FRAMES,
    }
    kept = DepthStore(store_folder, identity, options.format == "npy", info.height, info.width)
    resumed_from = kept.frames_done
    if resumed_from:
        tick(resumed_from)  # the frames an interrupted run finished count as done
    if not kept.complete:
        notes += _model_pass(model, source, info, kept, settings, tick)
        kept.finish(notes)
    else:
        notes = list(kept.manifest.get("notes", []))
    if options.format == "npy":
        written = _write_npy(kept, output, options)
    elif options.format == "png16":
        written = _write_frames(kept, output, options)
    elif options.format in ("side-by-side", "png8"):
        written = _write_video(kept, info, source, output, options)
    else:
        raise VideoError(f"unknown video output format {options.format!r}")
    if written != kept.frames_done:
        raise VideoError(f"wrote {written} frames but computed depth for {kept.frames_done}")
    kept.remove()
    return VideoResult(written, resumed_from, notes)
