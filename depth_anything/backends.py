"""Where the network runs: backends behind one small interface, chosen when a model is loaded.

A backend takes the prepare stage's output, (N, 3, h, w) normalised float32 on the model's device, and returns
the family's raw prediction (N, h, w) as float32. Everything before and after (prepare, restore, condition) is
the same whatever the backend, so a backend can only change where and how fast the network runs.

`eager` runs the PyTorch module as it is. The built-in fast backends live in `depth_anything.runtimes` and are
imported only when chosen: `compile` (torch.compile), `onnx` (ONNX Runtime), `tensorrt` (NVIDIA GPUs) and `auto`
(the fastest of them that is installed and measured exact here). Further backends register a factory with
`register_backend`.

A backend must not change results silently: each fast backend compares its compiled form with the eager network
when it builds it (`check_exact`) and refuses one that differs by more than float rounding.
"""

from __future__ import annotations

import copy
import importlib
import logging
from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch.nn as nn

log = logging.getLogger("depth_anything.backends")

PACKAGE = "depth-anything-preprocessor"
EXACT_TOLERANCE = 1e-4  # float32 backends: max |difference| / max |eager|
HALF_TOLERANCE = 2e-2  # float16 / bfloat16 backends against the eager network in the same precision


class BackendUnavailableError(RuntimeError):
    """A backend that cannot run here: its package is missing, or it needs a device the model is not on."""


class BackendMismatchError(RuntimeError):
    """A compiled network whose output differs from the eager network's: refused rather than used."""


def require(module: str, backend: str, extra: str, package: str | None = None):
    """Import `module` for `backend`, or raise one BackendUnavailableError that names the pip command."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend {backend!r} needs {package or module}, which is not installed here ({exc}). "
            f"Install it with: pip install '{PACKAGE}[{extra}]'"
        ) from exc


@contextmanager
def without_tf32():
    """PyTorch's CUDA convolutions may use TF32 (10-bit mantissas) by default; references for float32 backends,
    which are built without it, are computed without it too."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def relative_difference(result: torch.Tensor, reference: torch.Tensor) -> float:
    """max |result - reference| / max |reference|, in float32 (inf when shapes differ or values are not finite)."""
    if result.shape != reference.shape:
        return float("inf")
    result, reference = result.float(), reference.float()
    scale = reference.abs().max().clamp_min(1e-12)
    difference = float(((result - reference).abs().max() / scale).item())
    return difference if difference == difference else float("inf")  # NaN -> inf


def check_exact(backend: str, difference: float, dtype: torch.dtype, what: str) -> float:
    """`difference` (a `relative_difference` from the eager network) when it is float rounding (EXACT_TOLERANCE,
    HALF_TOLERANCE in half precision); else a BackendMismatchError."""
    tolerance = EXACT_TOLERANCE if dtype == torch.float32 else HALF_TOLERANCE
    if not difference <= tolerance:
        raise BackendMismatchError(
            f"backend {backend!r}: {what} differs from the eager network by {difference:.3g} (relative; allowed "
            f"{tolerance:g}), so it is not used. Use backend='eager', and please report this with your torch and "
            "runtime versions."
        )
    return difference


class Backend:
    """Runs a model's network. Subclasses implement `__call__`; `float32` gives the fp16-overflow fallback."""

    name = "backend"

    def __init__(self, model: nn.Module):
        self.model = model
        self._eager_float32: Backend | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def float32(self) -> "Backend":
        """The same network in float32, for batches whose half-precision result overflowed (default: eager)."""
        if self._eager_float32 is None:
            self._eager_float32 = EagerBackend(self.model).float32()
        return self._eager_float32

    def reset(self) -> None:
        """Forget anything derived from the weights (they were moved or changed). Subclasses call super()."""
        self._eager_float32 = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device}, dtype={self.dtype})"


class EagerBackend(Backend):
    """The PyTorch module itself, in its own device and dtype."""

    name = "eager"

    def __init__(self, model: nn.Module):
        super().__init__(model)
        self._float32: EagerBackend | None = None

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels.to(self.dtype)).float()

    def float32(self) -> "EagerBackend":
        if self.dtype == torch.float32:
            return self
        if self._float32 is None:
            self._float32 = EagerBackend(copy.deepcopy(self.model).float())
        return self._float32

    def reset(self) -> None:
        super().reset()
        self._float32 = None


class GraphBackend(Backend):
    """Base of backends that run a compiled form of the network, prepared (exported, built, compiled) lazily.

    A subclass implements `run(pixels)`. The first batch of each shape is where the compiled form is prepared for
    it; if that fails (a shape the runtime cannot take, a build error) the shape runs on the eager network from
    then on, with one warning, so that a new shape never fails. Later failures are real errors and propagate.
    A backend that cannot run here at all raises BackendUnavailableError when it is made.
    """

    def __init__(self, model: nn.Module):
        super().__init__(model)
        self._ran: set[tuple[int, ...]] = set()
        self._on_eager: set[tuple[int, ...]] = set()
        self._eager = EagerBackend(model)

    def run(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        shape = tuple(pixels.shape)
        if shape in self._on_eager:
            return self._eager(pixels)
        if shape in self._ran:
            return self.run(pixels)
        try:
            result = self.run(pixels)
        except BackendUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to prepare a new shape: run it eagerly instead
            import warnings

            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            warnings.warn(
                f"backend {self.name!r} could not run a batch of shape {shape} ({message}); this shape runs on "
                "the eager network instead (same results, eager speed).",
                RuntimeWarning,
                stacklevel=3,
            )
            self._on_eager.add(shape)
            return self._eager(pixels)
        self._ran.add(shape)
        return result

    def reset(self) -> None:
        super().reset()
        self._ran.clear()
        self._on_eager.clear()
        self._eager.reset()


BackendFactory = Callable[[nn.Module], Backend]


def _builtin(module: str, name: str) -> BackendFactory:
    """A factory that imports `depth_anything.runtimes.<module>` only when the backend is chosen."""

    def factory(model: nn.Module) -> Backend:
        return getattr(importlib.import_module(f"depth_anything.runtimes.{module}"), name)(model)

    return factory


BACKENDS: dict[str, BackendFactory] = {
    "eager": EagerBackend,
    "auto": _builtin("auto", "choose_backend"),
    "compile": _builtin("torch_compile", "TorchCompileBackend"),
    "onnx": _builtin("onnx_runtime", "OnnxRuntimeBackend"),
    "tensorrt": _builtin("tensorrt", "TensorRTBackend"),
}
DEFAULT_BACKEND = "eager"  # every surface's default: results exactly those of the PyTorch model
BACKEND_HELP = (
    "What runs the network: eager (PyTorch as it is), compile (torch.compile), onnx (ONNX Runtime), tensorrt "
    "(NVIDIA GPUs) or auto (the fastest installed here that is measured exact; decided once and remembered). "
    "Compiled forms are cached on disk; results equal eager's to float rounding."
)


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make `backend=name` available to `from_pretrained`, the command line and the nodes."""
    BACKENDS[name] = factory


def backend_problem(name: str) -> str | None:
    """None for a registered backend name, else the message that lists them."""
    if name in BACKENDS:
        return None
    return f"Unknown backend {name!r}; use one of {', '.join(BACKENDS)}."


def make_backend(name: str, model: nn.Module) -> Backend:
    """The backend `name` for `model`; an unknown name is a ValueError that lists the known ones."""
    problem = backend_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return BACKENDS[name](model)
