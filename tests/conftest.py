import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/checkpoints.py is shared by every test module

from checkpoints import write_checkpoint  # noqa: E402


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
