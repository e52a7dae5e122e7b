import ctypes
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # tests/checkpoints.py is shared by every test module

from checkpoints import da3_mono_state, write_checkpoint, write_da3_checkpoint  # noqa: E402


def return_freed_tensors_to_the_system() -> None:
    """Keep every allocation over 1 MiB in its own mapping (glibc's M_MMAP_THRESHOLD, fixed).

    The suite builds and drops several 1.3 GB models in turn (DA3-Large, the release's and ours); glibc raises its
    threshold as large blocks are freed and then keeps the next models' freed weights in its heap, which more than
    doubled the test process's memory. Elsewhere than glibc this does nothing.
    """
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


return_freed_tensors_to_the_system()

_CACHE = None


def pytest_configure(config):
    # Known-model downloads and the backends' compiled files go to a folder of this run, never the user's cache;
    # subprocesses (the command line, the ComfyUI server) inherit it.
    global _CACHE
    if "DEPTH_ANYTHING_CACHE" not in os.environ:
        _CACHE = tempfile.mkdtemp(prefix="depth_anything_test_cache_")
        os.environ["DEPTH_ANYTHING_CACHE"] = _CACHE


def pytest_unconfigure(config):
    if _CACHE is not None:
        os.environ.pop("DEPTH_ANYTHING_CACHE", None)
        shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="session")
def v2_vits_path(checkpoint_dir) -> Path:
    """A random v2-Small checkpoint in the official .pth layout and name."""
    return write_checkpoint(checkpoint_dir / "depth_anything_v2_vits.pth", "vits", seed=1)


@pytest.fixture(scope="session")
def v2_vits(v2_vits_path):
    from depth_anything import DepthAnything

    return DepthAnything.from_pretrained(v2_vits_path, device="cpu")


@pytest.fixture(scope="session")
def da3_mono_path(checkpoint_dir) -> Path:
    """The tests' DA3MONO-LARGE weights (`checkpoints.da3_mono_state`) as Comfy-Org's repack (ComfyUI core's layout
    and file name), in fp16: 0.67 GB on disk, none of it kept in memory."""
    path = checkpoint_dir / "depth_anything_3_mono_large.safetensors"
    return write_da3_checkpoint(path, state=da3_mono_state(), layout="comfyui", dtype=torch.float16)
