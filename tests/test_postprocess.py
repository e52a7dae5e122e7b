"""normalize and colorize: conditioning conventions and the official colour maps."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from depth_anything import colorize, normalize
from depth_anything.postprocess import to_uint8, to_uint16

ROOT = Path(__file__).resolve().parents[1]


def test_per_image_maps_each_range_to_0_1_with_near_bright():
    disparity = torch.stack([torch.linspace(1, 5, 12).view(3, 4), torch.linspace(10, 100, 12).view(3, 4)])
    out = normalize(disparity)
    for frame in out:
        assert frame.min() == 0 and frame.max() == 1
    assert out[0, -1, -1] == 1  # largest disparity = nearest = white


def test_batch_mode_uses_one_range_for_all_frames():
    frames = torch.stack([torch.full((2, 2), 1.0), torch.full((2, 2), 3.0)])
    frames[1, 0, 0] = 5.0
    out = normalize(frames, "batch")
    assert out[0].max() == 0 and out[1, 0, 0] == 1 and torch.isclose(out[1, 1, 1], torch.tensor(0.5))
    per_image = normalize(frames, "per_image")
    assert per_image[0].max() == 0  # a constant frame has no order: black, not NaN


def test_percentile_ignores_outliers():
    depth = torch.linspace(0, 1, 10_000).view(100, 100).clone()
    depth[0, 0] = 1000.0
    robust, plain = normalize(depth, "percentile"), normalize(depth)
    assert robust.median() > 0.45 and plain.median() < 0.01
    assert robust.shape == (100, 100)


def test_invert_gamma_and_metric():
    depth = torch.tensor([[1.0, 2.0, 4.0]])
    assert torch.allclose(normalize(depth, invert=True), torch.tensor([[1.0, 2 / 3, 0.0]]))
    assert torch.allclose(normalize(depth, gamma=2.0), torch.tensor([[0.0, 1 / 9, 1.0]]))
    metres = normalize(depth, metric=True)  # 1 m is nearest: brightest
    assert metres[0, 0] == 1 and metres[0, 2] == 0 and torch.isclose(metres[0, 1], torch.tensor(1 / 3))


def test_normalize_errors_and_non_finite_values():
    with pytest.raises(ValueError, match="per_image"):
        normalize(torch.zeros(2, 2), "minmax")
    with pytest.raises(ValueError, match="gamma"):
        normalize(torch.zeros(2, 2), gamma=0)
    out = normalize(torch.tensor([[float("nan"), 1.0, float("inf")]]))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("cmap", ["Spectral_r", "inferno", "turbo"])
def test_colorize_matches_run_py(cmap):
    import matplotlib

    depth = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    official = (matplotlib.colormaps.get_cmap(cmap)((depth * 255.0).astype(np.uint8))[:, :, :3] * 255).astype(np.uint8)
    ours = colorize(torch.from_numpy(depth), cmap)
    assert ours.shape == (16, 16, 3)
    assert np.array_equal(to_uint8(ours), official)


def test_grayscale_and_errors():
    gray = colorize(torch.tensor([[[0.0, 0.5, 1.0]]]), "grayscale")
    assert gray.shape == (1, 1, 3, 3) and torch.equal(gray[..., 0], gray[..., 2])
    with pytest.raises(ValueError, match="Spectral_r"):
        colorize(torch.zeros(2, 2), "jet")


def test_16_bit_keeps_more_than_8_bits():
    ramp = torch.linspace(0, 1, 4096)
    assert len(np.unique(to_uint16(ramp))) == 4096
    assert len(np.unique(to_uint8(ramp))) == 256


def test_comfyui_entry_point_imports_as_a_package():
    spec = importlib.util.spec_from_file_location(
        "depth_anything_pack", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        assert isinstance(module.NODE_CLASS_MAPPINGS, dict)
        assert isinstance(module.NODE_DISPLAY_NAME_MAPPINGS, dict)
    finally:
        sys.modules.pop(spec.name, None)
