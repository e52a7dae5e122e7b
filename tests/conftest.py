import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # tests/checkpoints.py is shared by every test module

from checkpoints import random_da3_state_dict, write_checkpoint, write_da3_checkpoint  # noqa: E402


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
def da3_mono_state():
    """Seeded random DA3MONO-LARGE weights in the official names, rounded to fp16 (the file's precision)."""
    return {k: v.half().float() for k, v in random_da3_state_dict("mono_large", seed=5).items()}


@pytest.fixture(scope="session")
def da3_mono_path(checkpoint_dir, da3_mono_state) -> Path:
    """Those weights as Comfy-Org's repack (ComfyUI core's layout and file name), in fp16: 0.67 GB."""
    path = checkpoint_dir / "depth_anything_3_mono_large.safetensors"
    return write_da3_checkpoint(path, state=da3_mono_state, layout="comfyui", dtype=torch.float16)
