"""Where the network runs: backends behind one small interface, chosen when a model is loaded.

A backend takes the prepare stage's output, (N, 3, h, w) normalised float32 on the model's device, and returns
the family's raw prediction (N, h, w) as float32. Everything before and after (prepare, restore, condition) is
the same whatever the backend, so a backend can only change where and how fast the network runs.

`eager` runs the PyTorch module as it is. Further backends register a factory with `register_backend`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn as nn


class Backend:
    """Runs a model's network. Subclasses implement `__call__`; `float32` gives the fp16-overflow fallback."""

    name = "backend"

    def __init__(self, model: nn.Module):
        self.model = model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def float32(self) -> "Backend":
        """The same network in float32, for batches whose half-precision result overflowed."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget anything derived from the weights (they were moved or changed)."""

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
        self._float32 = None


BackendFactory = Callable[[nn.Module], Backend]
BACKENDS: dict[str, BackendFactory] = {"eager": EagerBackend}


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make `backend=name` available to `from_pretrained`, the command line and the nodes."""
    BACKENDS[name] = factory


def make_backend(name: str, model: nn.Module) -> Backend:
    """The backend `name` for `model`; an unknown name is a ValueError that lists the known ones."""
    if name not in BACKENDS:
        raise ValueError(f"Unknown backend {name!r}; use one of {', '.join(BACKENDS)}.")
    return BACKENDS[name](model)
