"""`backend="compile"`: the network through torch.compile (inductor), one static graph per batch shape.

Inductor's compiled kernels are cached on disk by torch itself, keyed by the graph, the device, torch's version
and its settings; this backend points that cache into the backends cache folder (unless TORCHINDUCTOR_CACHE_DIR
is set), so a second process skips the compilation (measured here: 115 s the first time, 17 s the next, for
v2-S on the 2-core CPU; the rest is torch tracing the model again). The weights are inputs of the compiled
graph, not part of it, so one cache serves any weights of the same architecture.

Each new shape compiles (tens of seconds on a CPU, a few on a GPU), and is then compared once with the eager
network. Compile suits workloads of few shapes: video, ComfyUI batches, one-aspect-ratio folders. After
MAX_SHAPES shapes, new ones run eagerly with a warning instead of compiling again.
"""

from __future__ import annotations

import logging
import os
import time

import torch

from ..backends import GraphBackend, check_exact, relative_difference
from .artifacts import cache_root

log = logging.getLogger("depth_anything.backends")

# Compiled (batch, height, width) shapes; more run eagerly. torch itself recompiles a function for at most 8
# shapes, then runs it uncompiled without a word: this makes that limit explicit, with a warning.
MAX_SHAPES = 8


def use_cache_folder() -> str:
    """Point inductor's on-disk cache into the backends cache folder, unless the user chose another one.

    torch fills in TORCHINDUCTOR_CACHE_DIR with its default (a folder in /tmp, lost at reboot) when it first
    needs it, which importing torch's compiler may already have done: that value is not a user's choice.
    """
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is None or os.path.abspath(current) == os.path.abspath(default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_root() / "inductor")
    folder = os.environ["TORCHINDUCTOR_CACHE_DIR"]
    os.makedirs(folder, exist_ok=True)
    return folder


class TooManyShapes(RuntimeError):
    """More shapes than MAX_SHAPES: the next ones run eagerly."""


class TorchCompileBackend(GraphBackend):
    """Runs the network compiled by torch.compile (default mode, static shapes)."""

    name = "compile"

    def __init__(self, model: torch.nn.Module, mode: str | None = None):
        super().__init__(model)
        self.mode = mode
        self.cache_folder = use_cache_folder()
        self._compiled = None
        self._shapes: set[tuple[int, ...]] = set()

    def compiled(self):
        if self._compiled is None:
            self._compiled = torch.compile(self.model, dynamic=False, mode=self.mode)
        return self._compiled

    def run(self, pixels: torch.Tensor) -> torch.Tensor:
        shape = tuple(pixels.shape)
        x = pixels.to(self.dtype)
        if shape in self._shapes:
            return self.compiled()(x).float()
        if len(self._shapes) >= MAX_SHAPES:
            raise TooManyShapes(f"already {MAX_SHAPES} compiled shapes")
        log.info("backend 'compile': compiling for input %s (first time for this shape; cached in %s)",
                 "x".join(map(str, shape)), self.cache_folder)
        start = time.perf_counter()
        result = self.compiled()(x).float()
        reference = self._eager(pixels)
        check_exact("compile", relative_difference(result, reference), self.dtype, f"the graph for shape {shape}")
        log.info("backend 'compile': ready for %s in %.1f s", "x".join(map(str, shape)), time.perf_counter() - start)
        self._shapes.add(shape)
        return result

    def reset(self) -> None:
        super().reset()
        self._compiled = None  # guards hold the old weights' devices and dtypes
        self._shapes.clear()

