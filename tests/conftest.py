import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/checkpoints.py is shared by every test module

from checkpoints import write_checkpoint  # noqa: E402

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
