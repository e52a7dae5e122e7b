"""The image job: the library's stages spread over threads, read -> prepare | predict | restore -> write.

The same code runs in the local engine (one process) and inside each Ray worker. Reading threads decode and
run the prepare stage ahead of the model through a bounded window; this thread runs predict on batches of
images the network sees at one size (photos of one aspect ratio share a batch whatever their resolution:
640x480 and 4000x3000 both become 518x686); writing threads run restore and condition, encode and write, in a
bounded pool. Each image gets exactly the stages `DepthModel.infer` gives it; only the batching differs.

Runs that share one normalisation range over every image (`--normalize batch`) take two passes: the first
stores each map at 2 bytes per pixel, the second renders them all over the shared range (`run_images`).
"""

from __future__ import annotations

import shutil
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..conditioning import DepthRange
from ..files import remove_stale_partials, write_atomic
from ..images import exif_focal_px, image_size, preview_rgb, read_image
from ..pipeline import NetworkBatch, PreparedImage, prepare_image
from ..work import check_work, device_speed
from .budget import MemoryBudget, image_cost
from .outputs import QuantizedDepth, RenderOptions, output_array, render, save

STORE_FOLDER = ".depth-anything-store"  # quantized depth kept between the two passes of --normalize batch


@dataclass(frozen=True)
class InferenceSettings:
    """How depth is computed; passed unchanged to every worker."""

    input_size: int = 518
    max_size: int | None = None
    batch_size: int = 4
    tiled: str = "off"  # "off" | "on" | "auto"
    tile: int | None = None
    overlap: int | None = None
    focal_px: float | None = None  # the camera's focal length in pixels, for Depth Anything 3 metric
    resize_method: str | None = None  # Depth Anything 3's upper_bound / lower_bound (None: the family's)

    def infer_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(input_size=self.input_size, max_size=self.max_size)
        if self.tiled != "off":  # only tiling-aware versions of infer know these keywords
            kwargs.update(tiled=True if self.tiled == "on" else "auto", tile=self.tile, overlap=self.overlap)
        return kwargs

    def preprocessing(self, model):
        """The model's pre-processing rule with this run's resize method."""
        return model.family.preprocessing.with_method(self.resize_method)


@dataclass(frozen=True)
class ModelSpec:
    """What each worker needs to load the model itself (picklable, unlike the model)."""

    checkpoint: str
    family: str | None = None
    device: str | None = None
    dtype: str | None = None
    backend: str = "eager"

    def load(self):
        from ..model import DepthModel

        return DepthModel.from_pretrained(
            self.checkpoint, family=self.family, device=self.device, dtype=self.dtype, backend=self.backend
        )


@dataclass(frozen=True)
class Task:
    """One image to process: its source, its final output, and (two-pass runs) where its depth is stored."""

    source: Path
    output: Path
    store: Path | None = None


@dataclass(frozen=True)
class Outcome:
    task: Task
    error: str | None = None  # None: written
    note: str | None = None  # written, with something the user should know (e.g. a video frame skipped)

    @property
    def ok(self) -> bool:
        return self.error is None


def each_alone_on_failure(run: Callable[[list], list], items: Sequence) -> list:
    """run(items), one result per item; when the batch fails, each item is retried alone so that one bad input
    (or a batch too large for memory) fails only itself, its result being the exception."""
    try:
        return list(run(list(items)))
    except Exception as exc:  # noqa: BLE001 - reported per item below
        if len(items) == 1:
            return [exc]
    results: list = []
    for item in items:
        results.extend(each_alone_on_failure(run, [item]))
    return results


Maps = tuple  # (depth (H, W), sky mask (H, W) or None): what the model gives for one image


def predict(
    model, arrays: Sequence[np.ndarray], settings: InferenceSettings, focals: Sequence[float | None] | None = None
) -> list[Maps | Exception]:
    """(depth, sky mask or None) at full size for same-size images through `DepthModel.infer` (tiled or not);
    `focals`: each image's focal length in pixels (default: the run's)."""
    focals = [settings.focal_px] * len(arrays) if focals is None else list(focals)

    def run(items: list[tuple[np.ndarray, float | None]]) -> list[Maps]:
        images, focal_px = [a for a, _ in items], [f for _, f in items]
        out = model.infer(
            images, batch_size=settings.batch_size, focal_px=focal_px, return_sky=model.has_sky,
            preprocessing=settings.preprocessing(model), **settings.infer_kwargs(),
        )
        depth, sky = out if model.has_sky else (out, [None] * len(images))
        return list(zip(depth, sky))

    return each_alone_on_failure(run, list(zip(arrays, focals)))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 500 else text[:500] + "..."


def run_tasks(
    tasks: Iterable[Task],
    load: Callable[[Task], tuple[Any, Any]],
    compute: Callable[[list[Any]], list[Any]] | None,
    finish: Callable[[Task, Any, Any], None],
    *,
    batch_size: int,
    on_outcome: Callable[[Outcome], None] | None = None,
    readers: int = 2,
    writers: int = 2,
    cost: Callable[[Task], int] | None = None,
    budget: MemoryBudget | None = None,
) -> list[Outcome]:
    """Run `load` (threads) -> `compute` (this thread, batched by key) -> `finish` (threads) over tasks.

    `load(task)` returns (group key, payload); payloads with equal keys are computed together, up to
    `batch_size` at a time. `compute(payloads)` returns one result (or Exception) per payload; None passes the
    payloads through. Errors anywhere fail only that task. Outcomes come back in completion order.

    Memory is bounded in bytes as well as in images: each task reserves `cost(task)` bytes of `budget` (default
    `MemoryBudget()`) before it is read and gives them back when its outcome is recorded (see `budget`).
    """
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    budget = MemoryBudget() if budget is None else budget
    read_ahead = batch_size + 2 * readers  # images decoded ahead of the model
    window = 4 * batch_size  # decoded images waiting for others of their size before a part-full batch runs
    write_slots = threading.BoundedSemaphore(2 * batch_size + writers)  # images rendered behind it

    def record(outcome: Outcome, reserved: int) -> None:
        with lock:
            outcomes.append(outcome)
        budget.release(reserved)
        if on_outcome is not None:
            on_outcome(outcome)

    def finish_one(task: Task, payload: Any, result: Any, reserved: int) -> None:
        try:
            finish(task, payload, result)
        except Exception as exc:  # noqa: BLE001 - a failed write fails this task only
            outcome = Outcome(task, f"cannot write {task.output}: {_describe(exc)}")
        else:
            outcome = Outcome(task)
        del payload, result  # the memory goes back with the reservation
        write_slots.release()
        record(outcome, reserved)

    with ThreadPoolExecutor(readers, thread_name_prefix="read") as read_pool, ThreadPoolExecutor(
        writers, thread_name_prefix="write"
    ) as write_pool:
        pending_writes: list[Future] = []
        groups: dict[Any, list[tuple[Task, Any, int]]] = {}
        waiting = 0

        def run_group(group: list[tuple[Task, Any, int]]) -> None:
            payloads = [payload for _, payload, _ in group]
            if compute is None:
                results = payloads
            else:
                try:
                    results = compute(payloads)
                except Exception as exc:  # noqa: BLE001
                    results = [exc] * len(payloads)
            del payloads
            for (task, payload, reserved), result in zip(group, results):
                if isinstance(result, Exception):
                    record(Outcome(task, f"depth failed: {_describe(result)}"), reserved)
                    continue
                write_slots.acquire()  # blocks while the writers are behind: bounded memory
                pending_writes.append(write_pool.submit(finish_one, task, payload, result, reserved))
            group.clear()
            if len(pending_writes) > 1024:  # long runs: keep only the writes still in flight
                pending_writes[:] = [f for f in pending_writes if not f.done()]

        def run_fullest() -> bool:
            """Run the fullest waiting group (to free memory for the next read); False when none waits."""
            nonlocal waiting
            if not groups:
                return False
            fullest = max(groups, key=lambda k: len(groups[k]))
            waiting -= len(groups[fullest])
            run_group(groups.pop(fullest))
            return True

        reader = _read_ahead(read_pool, load, tasks, read_ahead, _Reservations(budget, cost, run_fullest))
        try:
            for task, future, reserved in reader:
                try:
                    key, payload = future.result()
                except Exception as exc:  # noqa: BLE001 - unreadable input: report, go on
                    record(Outcome(task, _describe(exc)), reserved)
                    continue
                finally:
                    del future  # it holds the payload: the writer must be the last to hold it
                group = groups.setdefault(key, [])
                group.append((task, payload, reserved))
                del payload
                waiting += 1
                if len(group) >= batch_size:
                    waiting -= len(groups.pop(key))
                    run_group(group)
                elif waiting >= window:
                    run_fullest()  # many sizes in flight: run the fullest rather than hold more images
            while run_fullest():
                pass
        finally:
            reader.close()  # on Ctrl-C or an error: loads not started yet are cancelled, not run
            for future in pending_writes:
                future.exception()  # wait: a write in progress completes (or leaves nothing); errors are recorded
    return outcomes


@dataclass
class _Reservations:
    """How `_read_ahead` makes room in the budget before reading a task: it hands out what it has read, then
    runs waiting groups, and only then waits for writers to give memory back."""

    budget: MemoryBudget
    cost: Callable[[Task], int] | None
    make_room: Callable[[], bool]

    def amount(self, task: Task) -> int:
        if self.cost is None:
            return 0
        try:
            return max(0, int(self.cost(task)))
        except Exception:  # noqa: BLE001 - an unreadable header: the read itself reports the problem
            return 0


def _read_ahead(
    pool: ThreadPoolExecutor, load, tasks: Iterable[Task], window: int, reservations: _Reservations
) -> Iterator[tuple[Task, Future, int]]:
    """(task, future of load(task), bytes reserved) in task order, with at most `window` loads submitted ahead
    and each load's memory reserved before it is submitted."""
    queue: deque[tuple[Task, Future, int]] = deque()
    budget = reservations.budget
    try:
        for task in tasks:
            amount = reservations.amount(task)
            while not budget.try_reserve(amount):
                if queue:
                    yield queue.popleft()  # what was read goes on to the model and its writers
                elif not reservations.make_room():
                    budget.reserve(amount)  # only writes hold memory now: they will give it back
                    break
            queue.append((task, pool.submit(load, task), amount))
            if len(queue) >= window:
                yield queue.popleft()
        while queue:
            yield queue.popleft()
    finally:
        for _, future, amount in queue:
            future.cancel()
            budget.release(amount)


# ------------------------------------------------------------------------------------------- the image job


@dataclass
class _Loaded:
    """A decoded image on its way through the job."""

    array: np.ndarray | None  # as read; kept for side-by-side output and for tiling
    size: tuple[int, int]  # (H, W) the depth is returned at
    prepared: PreparedImage | None = None  # the prepare stage's output; None when tiling
    focal_px: float | None = None  # the run's focal length, else the photo's EXIF one


class ImageJob:
    """Depth for image tasks with one loaded model: the unit of work of both engines.

    Example:
        >>> job = ImageJob(model, InferenceSettings(input_size=518), RenderOptions())  # doctest: +SKIP
        >>> outcomes = job.run([Task(Path("in.jpg"), Path("out/in.png"))])  # doctest: +SKIP
    """

    def __init__(self, model, settings: InferenceSettings, options: RenderOptions):
        self.model = model
        self.settings = settings
        self.options = options

    def _cost(self, task: Task) -> int:
        """The bytes this task's image holds on its way, from the file's header (see `budget.image_cost`)."""
        height, width = image_size(task.source)
        return image_cost(height, width, side_by_side=self.options.needs_image, tiled=self.settings.tiled != "off")

    def _load(self, task: Task) -> tuple[tuple, _Loaded]:
        array = read_image(task.source)
        focal = self.settings.focal_px or exif_focal_px(task.source)
        if self.settings.tiled != "off":  # the tiling engine takes whole images, grouped by their size
            return ("image", *array.shape[:2]), _Loaded(array, array.shape[:2], focal_px=focal)
        settings = dict(input_size=self.settings.input_size, max_size=self.settings.max_size)
        check_work(self.model, [array.shape[:2]], **settings)  # tiled runs are checked by infer
        prepared = prepare_image(
            array, self.settings.preprocessing(self.model), device=self.model.device, focal_px=focal, **settings
        )
        keep = array if self.options.needs_image else None  # the side-by-side picture shows it
        return ("network", *prepared.net_size), _Loaded(keep, prepared.size, prepared)

    def _compute(self, loaded: list[_Loaded]) -> list[Maps | Exception]:
        if loaded[0].prepared is None:
            return predict(self.model, [item.array for item in loaded], self.settings, [i.focal_px for i in loaded])

        def run(items: list[_Loaded]) -> list[Maps]:
            depth, sky = self.model.predict_maps(NetworkBatch.collate([item.prepared for item in items]))
            return list(zip(depth, [None] * len(items) if sky is None else sky))

        return each_alone_on_failure(run, loaded)

    def _maps(self, loaded: _Loaded, prediction: Maps) -> Maps:
        """(depth, sky mask or None) at the image's size."""
        depth, sky = prediction
        if loaded.prepared is None:  # tiled: already at full size
            return depth, sky
        depth = self.model.restore(depth[None], [loaded.size])[0]
        if sky is not None:
            sky = self.model.sky_mask(self.model.restore(sky[None], [loaded.size])[0])
        return depth, sky

    def _write_output(self, task: Task, loaded: _Loaded, prediction: Maps) -> None:
        image = preview_rgb(loaded.array) if self.options.needs_image else None
        depth, sky = self._maps(loaded, prediction)
        own = self.options.own_range(depth, far_mask=sky)
        output = output_array(depth, image, self.options, own, far_mask=sky)
        save(task.output, output, self.options.metadata(depth.shape, own))

    def _write_store(self, task: Task, loaded: _Loaded, prediction: Maps) -> None:
        depth, sky = self._maps(loaded, prediction)
        stored = QuantizedDepth.from_depth(depth, self.options.kind, far_mask=sky)
        write_atomic(task.store, stored.save)

    def run(
        self, tasks: Iterable[Task], *, store: bool = False, on_outcome=None, budget: MemoryBudget | None = None
    ) -> list[Outcome]:
        """Compute depth for `tasks` and write their outputs (or, with `store`, their stored depth), holding at
        most `budget` bytes of images (default `MemoryBudget()`)."""
        finish = self._write_store if store else self._write_output
        device_speed(self.model.device, self.model.dtype)  # measured once, before the readers estimate work
        return run_tasks(
            tasks, self._load, self._compute, finish, batch_size=self.settings.batch_size, on_outcome=on_outcome,
            cost=self._cost, budget=budget,
        )


def render_stored(
    tasks: Iterable[Task], options: RenderOptions, value_range: DepthRange, *, on_outcome=None
) -> list[Outcome]:
    """Second pass of a shared-range run: stored depth -> outputs over `value_range`, no model needed."""
    shared = replace(options, normalize="per_image", kind="disparity")  # stored values are near-bright

    def load(task: Task) -> tuple[None, tuple[QuantizedDepth, np.ndarray | None]]:
        stored = QuantizedDepth.load(task.store)
        image = preview_rgb(read_image(task.source)) if options.needs_image else None
        return None, (stored, image)

    def finish(task: Task, payload, _result) -> None:
        stored, image = payload
        picture = render(shared.unit(stored.values(), value_range), image, options)
        save(task.output, picture, options.metadata(stored.levels.shape, value_range))  # the shared range

    def cost(task: Task) -> int:
        return image_cost(*image_size(task.source), side_by_side=options.needs_image, tiled=False)

    return run_tasks(tasks, load, None, finish, batch_size=8, on_outcome=on_outcome, cost=cost)


def stored_range(paths: Iterable[Path]) -> DepthRange:
    """The range shared by all stored depth maps."""
    shared = DepthRange()
    for path in paths:
        with np.load(path) as data:
            low, high = data["range"].tolist()
        shared = shared.merge(DepthRange(low, high))
    return shared


@dataclass
class ImageRun:
    """What `run_images` did: outcomes of the tasks it ran, and how many were already done."""

    outcomes: list[Outcome]
    skipped: int
    removed_partials: int


def tasks_for(sources: Iterable, outdir: Path, suffix: str, *, store: bool = False) -> list[Task]:
    """One task per source (`batch.inputs.Source`), its output mirrored under `outdir` with `suffix`; with
    `store`, where its depth is kept between the passes of a shared-range run."""
    tasks = []
    for source in sources:
        output = outdir / source.relative.with_name(source.relative.name + suffix)
        kept = outdir / STORE_FOLDER / source.relative.with_name(source.relative.name + ".npz") if store else None
        tasks.append(Task(source.path, output, kept))
    return tasks


def run_images(
    engine,
    sources: Iterable,
    outdir: Path,
    options: RenderOptions,
    *,
    overwrite: bool = False,
    progress: Callable[[int, str], Any] | None = None,
) -> ImageRun:
    """Write the outputs of `sources` under `outdir` on `engine`, resuming: finished outputs are kept unless
    `overwrite`.

    With one range for all (`options.two_pass`), every image's depth (finished ones too, for the range) is
    stored first, then all outputs are rendered over the shared range; the store is deleted once every
    readable input has its output. `progress(total, description)` returns a per-outcome callback with
    `close()` (the command line's progress bar).
    """
    tasks = tasks_for(sources, outdir, options.suffix, store=options.two_pass)
    todo = [t for t in tasks if overwrite or not t.output.exists()]
    folders = {t.output.parent for t in todo} | {t.store.parent for t in todo if t.store is not None}
    run = ImageRun([], len(tasks) - len(todo), remove_stale_partials(folders))
    if not todo:
        return run

    def with_progress(items: Sequence[Task], description: str, work: Callable[[Callable | None], list[Outcome]]):
        bar = progress(len(items), description) if progress is not None else None
        try:
            return work(bar)
        finally:
            if bar is not None:
                bar.close()

    if not options.two_pass:
        run.outcomes = with_progress(todo, "depth", lambda bar: engine.images(todo, options, on_outcome=bar))
        return run

    store_root = outdir / STORE_FOLDER
    if overwrite and store_root.exists():
        shutil.rmtree(store_root)
    need_depth = [t for t in tasks if not t.store.exists()]
    first = with_progress(
        need_depth, "depth 1/2", lambda bar: engine.images(need_depth, options, store=True, on_outcome=bar)
    )
    failed = {o.task for o in first if not o.ok}
    run.outcomes = [o for o in first if not o.ok]
    stored = [t for t in tasks if t not in failed and t.store.exists()]
    if not stored:
        return run
    shared = stored_range(t.store for t in stored)
    ready = [t for t in todo if t not in failed]
    second = with_progress(
        ready, "write 2/2", lambda bar: engine.render_stored(ready, options, shared, on_outcome=bar)
    )
    run.outcomes += second
    if all(o.ok for o in second):  # every readable input has its output: the stored depth has done its job
        shutil.rmtree(store_root, ignore_errors=True)
    return run
