"""`backend="auto"`: the fastest backend that is installed here and measured exact, decided once per setup.

The candidates for the model's device are each made (those not installed, or that cannot run on this device,
drop out with their reason), run on one probe batch at the family's input size and compared with the eager
network (more than float rounding apart: dropped), then timed. The fastest wins. The decision is kept in the
backends cache, keyed by the architecture, precision, device and the installed runtimes' versions, so later
loads take it without measuring; installing or upgrading a runtime measures again.

Candidates: CUDA: tensorrt, compile, onnx, eager. CPU: onnx, eager. torch.compile is not a CPU candidate: it
compiles each new network size for tens of seconds on a CPU (a folder of mixed aspect ratios meets a new size
at nearly every photo), and ONNX Runtime, which takes any size at once, was as fast or faster there (measured:
1.29x vs 1.25x the eager model on v2-S). Choose backend="compile" explicitly for one-size CPU workloads.
"""

from __future__ import annotations

import json
import logging
import statistics
import time

import torch

from ..backends import Backend, BackendMismatchError, BackendUnavailableError, EagerBackend, GraphBackend, make_backend
from ..backends import check_exact, relative_difference
from .artifacts import artifact, device_description, versions
from .onnx_export import probe_pixels

log = logging.getLogger("depth_anything.backends")

CANDIDATES = {"cuda": ("tensorrt", "compile", "onnx", "eager"), "cpu": ("onnx", "eager")}
REPEATS = 3
PROBE_SIZE: tuple[int, int] | None = None  # (height, width) of the timing batch; None: the family's input size


def decision_key(model) -> dict:
    """What the decision depends on: the architecture, precision, device and the runtimes installed."""
    return {
        "network": type(model).__qualname__, "family": model.family.name, "encoder": model.encoder,
        "dtype": str(model.dtype).replace("torch.", ""), "device": device_description(model.device),
        "candidates": list(candidates(model.device)), "probe": list(probe_size(model)),
        **versions("onnxruntime", "onnxruntime-gpu", "tensorrt", "onnx"),
    }


def candidates(device: torch.device) -> tuple[str, ...]:
    return CANDIDATES.get(torch.device(device).type, ("eager",))


def probe_size(model) -> tuple[int, int]:
    if PROBE_SIZE is not None:
        return PROBE_SIZE
    side = model.family.preprocessing.input_size
    return (side, side)


def choose_backend(model) -> Backend:
    """The backend "auto" stands for on this model's device: remembered, or measured now and remembered."""
    item = artifact("auto", decision_key(model), "json")
    remembered = _remembered(item)
    if remembered is not None:
        try:
            backend = make_backend(remembered, model)
            log.info("backend 'auto': %s (measured before on this device; kept in %s)", remembered, item.record)
            return backend
        except BackendUnavailableError as exc:  # e.g. a runtime uninstalled since: measure again
            log.warning("backend 'auto': the remembered %r cannot run now (%s); measuring again", remembered, exc)
    chosen, timings, dropped = measure(model)
    item.write_record(chosen=chosen.name, seconds=timings, dropped=dropped)
    log.info("backend 'auto': chose %s (%s)", chosen.name,
             ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in timings.items()))
    return chosen


def _remembered(item) -> str | None:
    if not item.record.is_file() or item.mismatch() is not None:
        return None
    try:
        return json.loads(item.record.read_text())["chosen"]
    except (OSError, ValueError, KeyError):
        return None


def measure(model) -> tuple[Backend, dict[str, float], dict[str, str]]:
    """(the fastest exact backend, seconds per probe batch of each measured one, why the others dropped out)."""
    height, width = probe_size(model)
    pixels = probe_pixels(1, height, width).to(model.device)
    eager = EagerBackend(model)
    with torch.inference_mode():
        reference = eager(pixels)
    timings: dict[str, float] = {}
    dropped: dict[str, str] = {}
    made: dict[str, Backend] = {}
    log.info("backend 'auto': measuring %s on %s (once for this setup)", ", ".join(candidates(model.device)),
             model.device)
    for name in candidates(model.device):
        try:
            backend = eager if name == "eager" else make_backend(name, model)
            with torch.inference_mode():
                # The first run builds, exports or compiles, and checks itself against eager; `run` rather than the
                # call, so that a failure drops the candidate instead of quietly falling back to eager.
                result = backend.run(pixels) if isinstance(backend, GraphBackend) else backend(pixels)
                check_exact(name, relative_difference(result, reference), model.dtype, "its output")
                timings[name] = _median_time(backend, pixels)
            made[name] = backend
        except (BackendUnavailableError, BackendMismatchError) as exc:
            dropped[name] = str(exc)
        except Exception as exc:  # noqa: BLE001 - a backend that fails here is not chosen
            dropped[name] = f"{type(exc).__name__}: {exc}"
    best = min(timings, key=timings.get)
    return made[best], timings, dropped


def _median_time(backend: Backend, pixels: torch.Tensor) -> float:
    times = []
    for _ in range(REPEATS):
        if pixels.device.type == "cuda":
            torch.cuda.synchronize(pixels.device)
        start = time.perf_counter()
        backend(pixels)
        if pixels.device.type == "cuda":
            torch.cuda.synchronize(pixels.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
