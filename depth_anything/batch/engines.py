"""Where the work runs: in this process (`LocalEngine`) or on a Ray cluster (`RayEngine`).

Both take the same tasks and write the same files through the same `ImageJob` / `video_depth` code; Ray
only decides which worker runs which tasks. Each Ray worker loads the model once (a callable class in
`map_batches`) and reads inputs / writes outputs itself, so paths must be on storage every worker sees.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from .outputs import RenderOptions
from .pipeline import ImageJob, InferenceSettings, ModelSpec, Outcome, Task, render_stored
from .video import VideoResult, video_depth

OnOutcome = Callable[[Outcome], None]


def _describe(exc: BaseException) -> str:
    return (str(exc).strip() or type(exc).__name__)[:500]


def _video_note(result: VideoResult) -> str | None:
    notes = list(result.notes)
    if result.resumed_from:
        notes.insert(0, f"resumed after frame {result.resumed_from} of an interrupted run")
    return "; ".join(notes) or None


def run_videos(model, tasks: Sequence[Task], settings: InferenceSettings, options: RenderOptions,
               on_outcome: OnOutcome | None = None, progress: Callable[[int], None] | None = None) -> list[Outcome]:
    """Depth for videos one after the other; a video that fails is reported and the next one goes on."""
    outcomes = []
    for task in tasks:
        try:
            result = video_depth(model, task.source, task.output, settings, options, store=task.store,
                                 progress=progress)
        except Exception as exc:  # noqa: BLE001 - reported per video
            outcome = Outcome(task, _describe(exc))
        else:
            outcome = Outcome(task, note=_video_note(result))
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return outcomes


class LocalEngine:
    """Runs everything in this process with one model."""

    def __init__(self, spec: ModelSpec, settings: InferenceSettings):
        self.model = spec.load()
        self.settings = settings

    def images(self, tasks: Sequence[Task], options: RenderOptions, *, store: bool = False,
               on_outcome: OnOutcome | None = None) -> list[Outcome]:
        return ImageJob(self.model, self.settings, options).run(tasks, store=store, on_outcome=on_outcome)

    def render_stored(self, tasks: Sequence[Task], options: RenderOptions, value_range: tuple[float, float],
                      on_outcome: OnOutcome | None = None) -> list[Outcome]:
        return render_stored(tasks, options, value_range, on_outcome=on_outcome)

    def videos(self, tasks: Sequence[Task], options: RenderOptions, on_outcome: OnOutcome | None = None,
               progress: Callable[[int], None] | None = None) -> list[Outcome]:
        return run_videos(self.model, tasks, self.settings, options, on_outcome, progress)

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------------------------ Ray


def _task_rows(tasks: Sequence[Task]) -> list[dict[str, str]]:
    return [{"source": str(t.source), "output": str(t.output), "store": str(t.store or "")} for t in tasks]


def _tasks_from(batch: dict[str, np.ndarray]) -> list[Task]:
    return [
        Task(Path(source), Path(output), Path(store) if store else None)
        for source, output, store in zip(batch["source"], batch["output"], batch["store"])
    ]


def _outcome_rows(tasks: list[Task], outcomes: list[Outcome]) -> dict[str, np.ndarray]:
    errors = {o.task: o.error or "" for o in outcomes}
    notes = {o.task: o.note for o in outcomes}
    rows = _task_rows(tasks)
    return {
        "source": np.array([r["source"] for r in rows], dtype=object),
        "output": np.array([r["output"] for r in rows], dtype=object),
        "store": np.array([r["store"] for r in rows], dtype=object),
        # a task with no outcome cannot happen; count it as failed rather than as written if it ever does
        "error": np.array([errors.get(t, "no result from the worker") for t in tasks], dtype=object),
        "note": np.array([notes.get(t) or "" for t in tasks], dtype=object),
    }


class _Worker:
    """One Ray actor: loads the model once, then processes the batches of tasks it is given."""

    def __init__(self, spec: ModelSpec, settings: InferenceSettings, options: RenderOptions, mode: str, threads: int,
                 frames_done=None):
        import torch

        torch.set_num_threads(max(1, threads))
        self.settings, self.options, self.mode = settings, options, mode
        self.frames_done = frames_done  # a Ray queue the driver's progress bar reads, or None
        self.model = spec.load()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tasks = _tasks_from(batch)
        if self.mode == "videos":
            counter = _FrameCounter(self.frames_done)
            try:
                outcomes = run_videos(self.model, tasks, self.settings, self.options, progress=counter)
            finally:
                counter.flush()
        else:
            outcomes = ImageJob(self.model, self.settings, self.options).run(tasks, store=self.mode == "store")
        return _outcome_rows(tasks, outcomes)


class _FrameCounter:
    """Counts a worker's finished frames into a Ray queue, a few times a second rather than for every frame."""

    def __init__(self, frames_done, interval: float = 0.25):
        self.queue, self.interval = frames_done, interval
        self.pending, self.sent_at = 0, time.monotonic()

    def __call__(self, count: int) -> None:
        self.pending += count
        if time.monotonic() - self.sent_at >= self.interval:
            self.flush()

    def flush(self) -> None:
        if self.queue is not None and self.pending:
            self.queue.put(self.pending)
        self.pending, self.sent_at = 0, time.monotonic()


class _ProgressRelay:
    """The driver's end of `_FrameCounter`: a Ray queue read by a thread that advances the progress bar."""

    def __init__(self, progress: Callable[[int], None]):
        from ray.util.queue import Empty, Queue

        self.queue, self.empty, self.progress = Queue(actor_options={"num_cpus": 0}), Empty, progress
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._pump, daemon=True, name="ray-progress")
        self.thread.start()

    def _pump(self) -> None:
        while True:
            try:
                self.progress(self.queue.get(timeout=0.2))
            except self.empty:
                if self.stopping.is_set():
                    return

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.queue.shutdown()


def _render_batch(batch: dict[str, np.ndarray], options: RenderOptions, value_range: tuple[float, float]):
    tasks = _tasks_from(batch)
    return _outcome_rows(tasks, render_stored(tasks, options, value_range))


class RayEngine:
    """Runs the tasks on Ray Data: `workers` actors, each with its own model.

    Without `address` a small local Ray is started (workers x cpus_per_worker CPUs, no dashboard) and shut
    down at the end; with one (e.g. "auto" or "ray://head:10001") the job joins that cluster.
    """

    def __init__(self, spec: ModelSpec, settings: InferenceSettings, *, address: str | None = None,
                 workers: int = 2, cpus_per_worker: float = 1, gpus_per_worker: float = 0):
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - ray is the ray extra
            raise RuntimeError("--engine ray needs Ray Data: pip install 'depth-anything-preprocessor[ray]'") from exc
        import depth_anything

        self.ray = ray
        if spec.device is None:  # a worker holds a GPU only when asked for one
            spec = replace(spec, device="cuda" if gpus_per_worker else "cpu")
        self.spec, self.settings = spec, settings
        self.workers, self.cpus, self.gpus = workers, cpus_per_worker, gpus_per_worker
        self.started = not ray.is_initialized()
        if self.started:
            # Ship this package to the workers, so that a cluster without it installed runs the same code.
            runtime_env = {"py_modules": [os.path.dirname(depth_anything.__file__)]}
            quiet = dict(runtime_env=runtime_env, log_to_driver=False, logging_level=logging.WARNING)
            if address:
                ray.init(address=address, **quiet)
            else:
                cpus = max(2, int(np.ceil(workers * cpus_per_worker)))
                ray.init(num_cpus=cpus, include_dashboard=False, **quiet)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # our own bar counts images
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)

    def _map(self, tasks: Sequence[Task], fn, on_outcome: OnOutcome | None, batch_size: int, **kwargs) -> list[Outcome]:
        if not tasks:
            return []
        dataset = self.ray.data.from_items(_task_rows(tasks))
        mapped = dataset.map_batches(fn, batch_size=batch_size, batch_format="numpy", **kwargs)
        outcomes = []
        for row in mapped.iter_rows():
            task = Task(Path(row["source"]), Path(row["output"]), Path(row["store"]) if row["store"] else None)
            outcome = Outcome(task, row["error"] or None, row.get("note") or None)
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
        return outcomes

    def _actors(self, options: RenderOptions, mode: str, frames_done=None) -> dict:
        return dict(
            fn_constructor_kwargs=dict(
                spec=self.spec, settings=self.settings, options=options, mode=mode, threads=int(max(1, self.cpus)),
                frames_done=frames_done,
            ),
            compute=self.ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=self.cpus,
            num_gpus=self.gpus or None,
        )

    def images(self, tasks, options, *, store=False, on_outcome=None):
        mode = "store" if store else "images"
        return self._map(tasks, _Worker, on_outcome, self.settings.batch_size, **self._actors(options, mode))

    def render_stored(self, tasks, options, value_range, on_outcome=None):
        return self._map(tasks, _render_batch, on_outcome, 16, fn_kwargs=dict(options=options, value_range=value_range),
                         num_cpus=1)

    def videos(self, tasks, options, on_outcome=None, progress=None):
        relay = _ProgressRelay(progress) if progress is not None and tasks else None
        try:
            frames_done = relay.queue if relay is not None else None
            return self._map(tasks, _Worker, on_outcome, 1, **self._actors(options, "videos", frames_done))
        finally:
            if relay is not None:
                relay.close()

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
