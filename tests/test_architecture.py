"""The architecture's promises, checked: one set of stages for every surface, families that plug in without
touching the surfaces, and no module reaching into another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from depth_anything import DepthModel, ModelFamily, condition, register_family
from depth_anything.families import unregister_family
from depth_anything.transforms import Preprocessing

REPO = Path(__file__).resolve().parents[1]


def private_uses(paths: list[Path]) -> list[str]:
    """`obj._name` where obj is not self / cls / super(), and `from module import _name`, in these files."""
    hits = []
    for path in paths:
        where = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = node.value
                if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                    continue
                if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                    continue
                hits.append(f"{where}:{node.lineno}: .{node.attr}")
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    if private and (node.module or "").split(".")[-1] != "_colormap_data":
                        hits.append(f"{where}:{node.lineno}: from {node.module} import {alias.name}")
    return hits


def test_no_module_calls_another_modules_private_names():
    sources = [*(REPO / "depth_anything").rglob("*.py"), *(REPO / "nodes").rglob("*.py"), REPO / "__init__.py"]
    assert len(sources) > 20
    assert private_uses(sources) == []


def test_the_check_finds_a_private_use(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom os import _exit\nvalue = os._Environ\nself._fine = cls._fine\n")
    assert sorted(private_uses([sample])) == ["sample.py:2: from os import _exit", "sample.py:3: ._Environ"]


# ------------------------------------------------------------------------------- a family that plugs in


class ToyNetwork(DepthModel):
    """Depth as a learned mix of the colour channels, so outputs depend on the weights."""

    def __init__(self, family: ModelFamily):
        super().__init__()
        self.family = family
        self.mix = torch.nn.Conv2d(3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.softplus(self.mix(x))[:, 0]  # relative depth: > 0, far = large


class HalfSizePreprocessing(Preprocessing):
    """The toy family's own rule: half the image, in multiples of 14."""

    def net_size(self, height, width, input_size=None, max_size=None):
        return max(14, height // 28 * 14), max(14, width // 28 * 14)


class ToyFamily(ModelFamily):
    name = "toy_depth"
    description = "a test family: relative depth from a 1x1 convolution"
    output_kind = "relative_depth"
    preprocessing = HalfSizePreprocessing(input_size=56)
    layout = "toy"

    def matches_layout(self, keys) -> bool:
        return set(keys) == {"mix.weight", "mix.bias"}

    def build(self, checkpoint, dtype):
        from depth_anything.loading import load_weights

        with torch.device("meta"):
            model = ToyNetwork(self)
        load_weights(model, checkpoint.state_dict(), checkpoint.weights_file, dtype)
        return model


@pytest.fixture
def toy_checkpoint(tmp_path):
    family = register_family(ToyFamily())
    path = tmp_path / "my_toy_model.pth"
    torch.save({"mix.weight": torch.tensor([[[[0.8]], [[-0.5]], [[0.3]]]]), "mix.bias": torch.tensor([0.1])}, path)
    yield path
    unregister_family(family.name)


def _photo(path: Path) -> Path:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:60, 0:84] / 84
    image = np.stack([np.sin(7 * x), np.cos(5 * y), x * y], -1) * 0.4 + 0.5 + rng.normal(0, 0.02, (60, 84, 3))
    Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


def test_a_new_family_works_on_every_surface_without_touching_them(toy_checkpoint, tmp_path, monkeypatch):
    from depth_anything.cli import main
    from depth_anything.diffusers import DepthAnythingDetector

    photo = _photo(tmp_path / "photo.png")
    model = DepthModel.from_pretrained(toy_checkpoint, device="cpu")  # the family comes from the weights' layout
    assert isinstance(model, ToyNetwork) and model.output_kind == "relative_depth"
    batch = next(model.prepare(photo))
    assert batch.net_size == (28, 42)  # the family's own pre-processing rule
    raw = model.infer(photo)[0]
    assert raw.shape == (60, 84) and raw.min() > 0

    # stages by hand = infer
    stages = model.restore(model.predict(batch), batch)[0]
    assert torch.equal(stages, raw)

    # tiling aligns relative depth as inverse depth and hands back depth, its global pass at the family's own
    # network size: on a smooth image a pointwise network tiles to what one pass gives
    y, x = torch.meshgrid(torch.linspace(0, 1, 224), torch.linspace(0, 1, 336), indexing="ij")
    smooth = torch.stack([x, y, x * y], -1)[None]
    tiled, single = model.infer(smooth, tiled=True, tile=112)[0], model.infer(smooth)[0]
    assert tiled.shape == (224, 336) and (tiled - single).abs().max() < 0.01 * single.mean()

    # conditioning: relative depth becomes near = white (inverse depth)
    control = condition(raw, kind=model.output_kind)
    assert control.flatten()[raw.flatten().argmin()] == 1.0 and control.flatten()[raw.flatten().argmax()] == 0.0

    monkeypatch.chdir(tmp_path)
    assert main(["--checkpoint", str(toy_checkpoint), "--img-path", "photo.png", "--outdir", "out", "--format",
                 "npy", "-q"]) == 0
    torch.testing.assert_close(torch.from_numpy(np.load(tmp_path / "out" / "photo.npy")), raw)

    detector = DepthAnythingDetector.from_pretrained(toy_checkpoint, device="cpu")
    detected = detector(Image.open(photo), output_type="pt")[0, 0]
    torch.testing.assert_close(detected, control, rtol=0, atol=1e-6)


def test_stages_by_hand_equal_infer_for_a_mixed_batch(v2_vits):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, shape, dtype=np.uint8) for shape in ((40, 60, 3), (80, 120, 3), (50, 50, 3))]
    expected = v2_vits.infer(images, input_size=56)
    batches = list(v2_vits.prepare(images, input_size=56))
    assert sorted(len(b) for b in batches) == [1, 2]  # 40x60 and 80x120 share a network size: one batch
    by_hand = [None] * 3
    for batch in batches:
        for index, depth in zip(batch.indices, v2_vits.restore(v2_vits.predict(batch), batch)):
            by_hand[index] = depth
    for got, want in zip(by_hand, expected):
        assert torch.equal(got, want)
