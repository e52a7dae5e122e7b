"""Checkpoint loading: every format, strictness, family detection, safety and known names offline."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from checkpoints import official_shapes, random_state_dict, write_checkpoint

from depth_anything import CheckpointError, DepthAnything, ModelNotAvailableError, list_models
from depth_anything.hf_format import save_transformers
from depth_anything.loading import family_from_name

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("encoder", ["vits", "vitb", "vitl", "vitg"])
def test_model_has_the_official_key_layout(encoder):
    with torch.device("meta"):
        model = DepthAnything(encoder, "v2")
    ours = {k.replace(".mlp.fc1.", ".mlp.w12.").replace(".mlp.fc2.", ".mlp.w3.") if encoder == "vitg" else k: tuple(v.shape)
            for k, v in model.state_dict().items()}
    assert ours == official_shapes(encoder)


@pytest.mark.parametrize("encoder", ["vitb", "vitl"])
def test_larger_encoders_load_from_official_files(tmp_path, encoder):
    path = write_checkpoint(tmp_path / f"depth_anything_v2_{encoder}.pth", encoder)
    model = DepthAnything.from_pretrained(path, device="cpu")
    assert model.encoder == encoder and model.family.name == "v2"
    out = model.infer(torch.rand(1, 28, 42, 3), input_size=28)
    assert out.shape == (1, 28, 42) and torch.isfinite(out).all()


@pytest.mark.slow
def test_giant_builds_and_loads(tmp_path):
    path = write_checkpoint(tmp_path / "depth_anything_v2_vitg.safetensors", "vitg", dtype=torch.float16)
    model = DepthAnything.from_pretrained(path, device="cpu", dtype="fp16")
    assert model.encoder == "vitg" and model.dtype == torch.float16
    assert sum(p.numel() for p in model.parameters()) == 1_258_132_225
    reference = random_state_dict("vitg")["pretrained.blocks.39.mlp.w3.weight"].half()
    assert torch.equal(model.pretrained.blocks[39].mlp.fc2.weight, reference)


def _same_outputs(a, b, image):
    # Same weights; oneDNN may still pick kernels by memory alignment, so allow float32 kernel round-off only
    # (the bound of the parity tests). Usually the two agree bit for bit.
    x, y = a.infer(image, input_size=70), b.infer(image, input_size=70)
    error = ((x - y).abs().max() / y.abs().max()).item()
    assert error < 1e-4, f"relative difference {error:.2e}"
    return True


def test_every_format_gives_identical_outputs(tmp_path, v2_vits, v2_vits_path):
    image = torch.rand(1, 50, 60, 3)
    state = torch.load(v2_vits_path, weights_only=True)
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "depth_anything_v2_vits.safetensors"))
    torch.save(state, tmp_path / "depth_anything_v2_vits.bin")
    hf_folder = save_transformers(v2_vits, tmp_path / "Depth-Anything-V2-Small-hf")
    for source in (tmp_path / "depth_anything_v2_vits.safetensors", tmp_path / "depth_anything_v2_vits.bin", hf_folder):
        assert _same_outputs(v2_vits, DepthAnything.from_pretrained(source, device="cpu"), image), source

    # an fp16 repack gives exactly what its (rounded) weights give in an fp32 file
    half = {k: v.half() for k, v in state.items()}
    fp16_dir = tmp_path / "fp16"
    fp16_dir.mkdir()
    save_file(half, str(fp16_dir / "depth_anything_v2_vits_fp16.safetensors"))
    torch.save({k: v.float() for k, v in half.items()}, fp16_dir / "depth_anything_v2_vits.pth")
    from_fp16 = DepthAnything.from_pretrained(fp16_dir / "depth_anything_v2_vits_fp16.safetensors", device="cpu")
    assert from_fp16.dtype == torch.float32
    rounded = DepthAnything.from_pretrained(fp16_dir / "depth_anything_v2_vits.pth", device="cpu")
    assert _same_outputs(from_fp16, rounded, image)


def test_transformers_folder_tells_the_family(tmp_path):
    for name, family in [("depth_anything_vits14.pth", "v1"), ("depth_anything_v2_metric_vkitti_vits.pth", "metric_outdoor")]:
        model = DepthAnything.from_pretrained(write_checkpoint(tmp_path / name), device="cpu")
        folder = save_transformers(model, tmp_path / f"hf-{family}")
        loaded = DepthAnything.from_pretrained(folder, device="cpu")
        assert loaded.family.name == family
        assert json.loads((folder / "config.json").read_text())["model_type"] == "depth_anything"


@pytest.mark.parametrize(
    "name, family",
    [
        ("depth_anything_v2_vitl.pth", "v2"),
        ("depth_anything_v2_vitl_fp16.safetensors", "v2"),
        ("Depth-Anything-V2-Small", "v2"),
        ("depth_anything_vitb14.pth", "v1"),
        ("depth_anything_v2_metric_hypersim_vitb.pth", "metric_indoor"),
        ("depth_anything_v2_metric_vkitti_vits.pth", "metric_outdoor"),
        ("depth_anything_metric_depth_indoor.pt", "metric_indoor"),
        ("my_depth_model.pth", None),
        ("depth_anything_vitl.safetensors", None),
        ("depth_anything_v2_metric_vitl.pth", None),
    ],
)
def test_family_from_file_name(name, family):
    assert getattr(family_from_name(name), "name", None) == family


def test_ambiguous_file_is_an_error_that_says_how_to_choose(tmp_path, v2_vits_path):
    path = tmp_path / "my_depth.pth"
    path.write_bytes(v2_vits_path.read_bytes())
    with pytest.raises(CheckpointError, match=r"family='v1'.*'v2'") as info:
        DepthAnything.from_pretrained(path, device="cpu")
    assert str(path) in str(info.value)
    assert DepthAnything.from_pretrained(path, family="v1", device="cpu").taps == (8, 9, 10, 11)
    assert DepthAnything.from_pretrained(path, family="v2", device="cpu").taps == (2, 5, 8, 11)
    assert DepthAnything.from_pretrained(path, family="hypersim", device="cpu").max_depth == 20


def test_families_change_the_output(v2_vits_path):
    image = torch.rand(1, 42, 42, 3)
    v1 = DepthAnything.from_pretrained(v2_vits_path, family="v1", device="cpu").infer(image, input_size=42)
    v2 = DepthAnything.from_pretrained(v2_vits_path, family="v2", device="cpu").infer(image, input_size=42)
    metric = DepthAnything.from_pretrained(v2_vits_path, family="metric_outdoor", device="cpu").infer(image, input_size=42)
    assert not torch.allclose(v1, v2)
    assert 0 < metric.min() and metric.max() < 80


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda s: s.pop("depth_head.scratch.output_conv1.weight"), "1 missing"),
        (lambda s: s.update(extra=torch.zeros(1)), "1 unexpected"),
        (lambda s: s.update({"depth_head.projects.0.bias": torch.zeros(7)}), "shape"),
        (lambda s: s.pop("pretrained.cls_token"), "not a Depth Anything checkpoint"),
        (lambda s: [s.pop(k) for k in list(s) if k.startswith("pretrained.blocks.11.")], "11 encoder blocks"),
    ],
)
def test_checkpoint_that_does_not_fit_is_refused_with_the_file_name(tmp_path, damage, message):
    state = random_state_dict("vits")
    damage(state)
    path = tmp_path / "depth_anything_v2_vits.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=message) as info:
        DepthAnything.from_pretrained(path, device="cpu")
    assert str(path) in str(info.value)


def test_truncated_and_foreign_files_give_one_clear_error(tmp_path, v2_vits_path):
    data = v2_vits_path.read_bytes()
    truncated = tmp_path / "depth_anything_v2_vits.pth"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        DepthAnything.from_pretrained(truncated, device="cpu")

    from safetensors.torch import save_file

    st = tmp_path / "depth_anything_v2_vits.safetensors"
    save_file(random_state_dict("vits"), str(st))
    st.write_bytes(st.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="safetensors"):
        DepthAnything.from_pretrained(st, device="cpu")

    text = tmp_path / "depth_anything_v2_notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        DepthAnything.from_pretrained(text, device="cpu")

    listing = tmp_path / "depth_anything_v2_list.pth"
    torch.save([1, 2, 3], listing)
    with pytest.raises(CheckpointError, match="state dict"):
        DepthAnything.from_pretrained(listing, device="cpu")


class _Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "depth_anything_v2_vits.pth"
    torch.save({"pretrained.cls_token": torch.zeros(1, 1, 384), "payload": _Planted(marker)}, path)
    with pytest.raises(CheckpointError, match="arbitrary code"):
        DepthAnything.from_pretrained(path, device="cpu")
    assert not marker.exists()


def test_list_models_tells_names_sources_and_licences():
    models = {m.name: m for m in list_models()}
    assert {"depth_anything_vits14", "depth_anything_v2_vits", "depth_anything_v2_metric_hypersim_vitb"} <= set(models)
    small = models["depth_anything_v2_vits"]
    assert small.license == "Apache-2.0" and small.repo_id == "depth-anything/Depth-Anything-V2-Small"
    assert models["depth_anything_v2_vitl"].license == "CC-BY-NC-4.0"
    assert models["depth_anything_v2_metric_vkitti_vitl"].family == "metric_outdoor"
    assert all(m.encoder != "vitg" for m in models.values())  # giant was never released


def test_known_name_loads_from_the_cache_folder_without_network(tmp_path, v2_vits_path):
    (tmp_path / "depth_anything_v2_vits.pth").write_bytes(v2_vits_path.read_bytes())
    model = DepthAnything.from_pretrained("depth_anything_v2_vits", cache_dir=tmp_path, device="cpu")
    assert model.family.name == "v2"


def _load_in_subprocess(env_extra, cache):
    code = (
        "from depth_anything import DepthAnything, ModelNotAvailableError\n"
        "try:\n"
        "    DepthAnything.from_pretrained('depth_anything_v2_metric_hypersim_vits')\n"
        "except ModelNotAvailableError as e:\n"
        "    print('ERROR:', e)\n"
    )
    env = {**os.environ, "DEPTH_ANYTHING_CACHE": str(cache), "PYTHONPATH": str(ROOT), **env_extra}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120).stdout


@pytest.mark.parametrize(
    "env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_ETAG_TIMEOUT": "2"}], ids=["offline", "no-network"]
)
def test_known_name_offline_says_which_file_from_where_to_where(tmp_path, env):
    out = _load_in_subprocess(env, tmp_path / "models")
    assert "depth_anything_v2_metric_hypersim_vits.pth" in out
    assert "https://huggingface.co/depth-anything/Depth-Anything-V2-Metric-Hypersim-Small" in out
    assert str(tmp_path / "models") in out


def test_unknown_name_suggests_close_names():
    with pytest.raises(FileNotFoundError, match="depth_anything_v2_vits"):
        DepthAnything.from_pretrained("depth_anything_v2_vit_s")
    with pytest.raises(FileNotFoundError, match="neither an existing file"):
        DepthAnything.from_pretrained("no-such-model")


def test_bad_options_are_clear(v2_vits_path):
    with pytest.raises(ValueError, match="Unknown dtype"):
        DepthAnything.from_pretrained(v2_vits_path, dtype="int8")
    with pytest.raises(ValueError, match="Unknown model family"):
        DepthAnything.from_pretrained(v2_vits_path, family="v3")
