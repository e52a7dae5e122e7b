"""A hostile but fair user: bad checkpoints, bad folders, link loops, huge settings, images on the wrong scale,
NaN depth, Ctrl-C and Cancel, through the library, the command line (a real subprocess: exit codes, nothing
half-written) and the real ComfyUI server (the next good prompt still runs).

Each rule is the library's, checked once where it lives and then seen from every surface.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from depth_anything import DepthAnything, colorize, normalize
from depth_anything.batch.budget import MemoryBudget, image_cost
from depth_anything.batch.inputs import IMAGE_EXTENSIONS, discover
from depth_anything.batch.outputs import RenderOptions
from depth_anything.batch.pipeline import ImageJob, InferenceSettings, Task
from depth_anything.conditioning import condition, invalid_mask
from depth_anything.depth_files import DepthFileError, load_depth, save_depth
from depth_anything.files import output_folder_problem
from depth_anything.images import to_tensor
from depth_anything.loading import CheckpointError, resolve_checkpoint
from depth_anything.options import MAX_TILES, check, input_size_problem, tile_problem
from depth_anything.pipeline import prepare_image
from depth_anything.tiling import tile_grid
from depth_anything.transforms import Preprocessing
from depth_anything.work import LIMIT_VARIABLE, WorkLimitError, WorkWarning, estimate

from checkpoints import random_state_dict, write_checkpoint
from comfyui_server import comfyui, execution_error  # noqa: F401  (comfyui: the server fixture)

REPO = Path(__file__).resolve().parents[1]
SIZE = 56  # network input for the quick runs


def scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 RGB with gradients and a disc, so depth maps are not flat."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    disc = ((x - width * (0.3 + 0.1 * seed % 3)) ** 2 + (y - height / 2) ** 2 < (min(height, width) / 3) ** 2)
    rgb = np.stack([x / width, y / height, 0.2 + 0.7 * disc], -1)
    return (rgb * 255).round().astype(np.uint8)


# ---------------------------------------------------------------------------------------- bad checkpoints


def _transformers_folder(folder: Path, config) -> Path:
    folder.mkdir(parents=True)
    write_checkpoint(folder / "model.safetensors", "vits")
    (folder / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    return folder


def _nan_weights(path: Path) -> Path:
    state = random_state_dict("vits")
    state["depth_head.scratch.output_conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, path)
    return path


def _inf_weights(path: Path) -> Path:
    state = random_state_dict("vits")
    state["pretrained.blocks.3.attn.qkv.weight"][5, 7] = float("inf")
    torch.save(state, path)
    return path


BAD_CHECKPOINTS = {
    # name: (make it under a folder, what the message says, the file it names)
    "empty .pth": (lambda d: (d / "depth_anything_v2_vits.pth").write_bytes(b""), "empty (0 bytes)", "depth_anything_v2_vits.pth"),
    "text hello": (lambda d: (d / "depth_anything_v2_vits.pth").write_text("hello"), "holds text", "depth_anything_v2_vits.pth"),
    "text abc": (lambda d: (d / "depth_anything_v2_vits.pth").write_text("abc"), "holds text", "depth_anything_v2_vits.pth"),
    "HTML page": (lambda d: (d / "depth_anything_v2_vits.pth").write_text("<!DOCTYPE html><html>404</html>"),
                  "holds text", "depth_anything_v2_vits.pth"),
    "empty .safetensors": (lambda d: (d / "depth_anything_v2_vits.safetensors").write_bytes(b""), "empty",
                           "depth_anything_v2_vits.safetensors"),
    "text .safetensors": (lambda d: (d / "depth_anything_v2_vits.safetensors").write_text("version https://git-lfs"),
                          "not a readable safetensors file", "depth_anything_v2_vits.safetensors"),
    "config is a list": (lambda d: _transformers_folder(d / "da2", "[1, 2]"), "not an object", "config.json"),
    "config not JSON": (lambda d: _transformers_folder(d / "da2", "{model_type: oops"), "not readable JSON", "config.json"),
    "max_depth x": (lambda d: _transformers_folder(d / "da2", {"model_type": "depth_anything",
                    "depth_estimation_type": "metric", "max_depth": "x"}), "max_depth must be a positive number", "config.json"),
    "max_depth -5": (lambda d: _transformers_folder(d / "da2", {"model_type": "depth_anything",
                     "depth_estimation_type": "metric", "max_depth": -5}), "max_depth must be a positive number", "config.json"),
    "model_type bert": (lambda d: _transformers_folder(d / "da2", {"model_type": "bert"}), "'bert' model", "config.json"),
    "NaN weights": (lambda d: _nan_weights(d / "depth_anything_v2_vits.pth"), "NaN or infinite", "depth_anything_v2_vits.pth"),
    "inf weights": (lambda d: _inf_weights(d / "depth_anything_v2_vits.pth"), "NaN or infinite", "depth_anything_v2_vits.pth"),
    "ONNX file": (lambda d: (d / "depth_anything_v2_vits.onnx").write_bytes(b"\x08\x07\x12\x07pytorch"), "an ONNX file",
                  "depth_anything_v2_vits.onnx"),
}  # fmt: skip


def make_bad_checkpoint(folder: Path, case: str) -> Path:
    """The bad checkpoint of `case` in its own folder; returns what a user would pass (the file or folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    BAD_CHECKPOINTS[case][0](folder)
    (made,) = list(folder.iterdir())
    return made


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_every_bad_checkpoint_is_one_checkpoint_error_naming_the_file(tmp_path, case):
    source = make_bad_checkpoint(tmp_path / "models", case)
    _, message, named = BAD_CHECKPOINTS[case]
    with pytest.raises(CheckpointError) as info:
        DepthAnything.from_pretrained(source, device="cpu")
    text = str(info.value)
    assert message in text and named in text and str(tmp_path) in text, text
    assert any(fix in text for fix in ("again", "fix", "remove", "set the family", "Use", "use")), text


def test_explicit_family_overrides_a_wrong_model_type_but_not_a_broken_value(tmp_path):
    folder = _transformers_folder(tmp_path / "da2", {"model_type": "bert"})
    assert resolve_checkpoint(folder, family="v2").family.name == "v2"  # the user's word, not a guess
    from safetensors.torch import save_file

    from depth_anything.hf_format import to_transformers_state

    broken = tmp_path / "metric"
    broken.mkdir()
    save_file(to_transformers_state(random_state_dict("vits")), str(broken / "model.safetensors"))
    (broken / "config.json").write_text(json.dumps({"model_type": "bert", "max_depth": "far"}))
    with pytest.raises(CheckpointError, match="max_depth must be a positive number") as info:
        DepthAnything.from_pretrained(broken, family="metric_indoor", device="cpu")
    assert str(broken / "config.json") in str(info.value)


# ------------------------------------------------------------------------------------ images and depth


def test_exif_orientation_is_applied_for_pil_images_paths_and_arrays_alike(tmp_path, v2_vits):
    stored = scene(42, 70)  # as the sensor wrote it: landscape
    path = tmp_path / "portrait.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(stored).save(path, exif=exif, quality=100)
    shown = np.asarray(Image.open(path).transpose(Image.Transpose.ROTATE_270))  # what viewers show: portrait
    assert shown.shape[:2] == (70, 42)
    from_pil = v2_vits.infer(Image.open(path), input_size=SIZE)
    from_path = v2_vits.infer(path, input_size=SIZE)
    from_array = v2_vits.infer(shown, input_size=SIZE)
    assert from_pil.shape == from_path.shape == from_array.shape == (1, 70, 42)
    assert torch.equal(from_pil, from_path) and torch.equal(from_pil, from_array)


@pytest.mark.parametrize(
    "image, fix",
    [
        (np.full((20, 30, 3), 200.0, np.float32), "Divide by 255"),
        (torch.full((1, 20, 30, 3), 180.0), "Divide by 255"),  # a ComfyUI-style batch on the wrong scale
        (np.full((20, 30), 30000.0, np.float32), "Divide by 65535"),
        (np.full((20, 30, 3), -2.1, np.float32), "normalisation"),
    ],
)
def test_float_images_on_another_scale_are_refused_not_clamped_white(image, fix, v2_vits):
    with pytest.raises(ValueError, match=fix) as info:
        v2_vits.infer(image, input_size=SIZE)
    assert "[0, 1]" in str(info.value)


def test_float_overshoot_of_a_resize_is_clamped():
    image = np.clip(np.random.default_rng(0).normal(0.5, 0.3, (20, 30, 3)), -0.2, 1.3).astype(np.float32)
    assert torch.equal(to_tensor(image), to_tensor(np.clip(image, 0, 1)))


def test_integer_images_are_prepared_without_a_float_copy_and_give_the_same_values(tmp_path):
    rule = Preprocessing()
    rng = np.random.default_rng(1)
    images = [
        rng.integers(0, 256, (300, 450, 3), dtype=np.uint8),
        rng.integers(0, 65536, (200, 260, 3), dtype=np.uint16),
        rng.integers(0, 256, (210, 150), dtype=np.uint8),
        rng.integers(0, 256, (140, 170, 4), dtype=np.uint8),
    ]
    for image in images:
        size = rule.net_size(*image.shape[:2])
        expected = rule(to_tensor(image)[None], size)[0]  # the float image, resized at once
        assert torch.equal(prepare_image(image, rule).pixels, expected), image.shape
    path = tmp_path / "photo.png"
    Image.fromarray(images[0]).save(path)
    assert torch.equal(prepare_image(path, rule).pixels, prepare_image(Image.open(path), rule).pixels)


def test_non_finite_depth_never_moves_the_range_and_is_far_with_a_mask():
    depth = torch.linspace(5, 6, 64).reshape(8, 8)
    clean = normalize(depth)
    for bad in (float("nan"), float("inf"), -float("inf")):
        damaged = depth.clone()
        damaged[3, 3] = bad
        out = normalize(damaged)
        keep = torch.ones_like(depth, dtype=torch.bool)
        keep[3, 3] = False
        assert torch.equal(out[keep], clean[keep]), bad  # one bad pixel changes no other
        assert out[3, 3] == 0  # far
        assert normalize(damaged, invert=True)[3, 3] == 1  # far, inverted
        assert invalid_mask(damaged).sum() == 1 and invalid_mask(damaged)[3, 3]
    metres = torch.linspace(1, 10, 64).reshape(8, 8)
    metres[0, 0] = float("nan")
    out = normalize(metres, metric=True)
    assert out[0, 0] == 0 and out[0, 1] == 1 and out[7, 7] == 0  # the NaN is far; 1 m stays the nearest
    assert torch.equal(condition([depth, depth.clone().fill_(float("nan"))])[1], torch.zeros(8, 8))  # all-NaN: far


def test_colorize_and_grayscale_give_nan_the_far_colour():
    unit = torch.tensor([[float("nan"), 0.0, 0.5, 1.0]])
    for colormap in ("Spectral_r", "inferno", "turbo", "grayscale"):
        colours = colorize(unit, colormap)
        assert torch.isfinite(colours).all() and torch.equal(colours[0, 0], colours[0, 1]), colormap


def test_normalize_of_an_empty_map_is_clear_and_of_extreme_values_finite():
    with pytest.raises(ValueError, match="empty.*at least one pixel"):
        normalize(torch.zeros(0, 4))
    out = normalize(torch.tensor([[-3e38, 0.0, 3e38]]))
    assert torch.isfinite(out).all() and out.tolist() == [[0.0, 0.5, 1.0]]


# ------------------------------------------------------------------------------------------ option hints


def test_hints_are_valid_values():
    problem = input_size_problem(99999)
    assert "use 4088" in problem and input_size_problem(4088) is None
    problem = tile_problem(16384)
    assert "use 16380" in problem and tile_problem(16380) is None
    with pytest.raises(TypeError, match="must be an int"):
        check(input_size_problem("518"))


def test_infer_rejects_a_non_number_input_size_with_a_type_error(v2_vits):
    with pytest.raises(TypeError, match="input_size must be an int"):
        v2_vits.infer(scene(28, 28), input_size="big")


# -------------------------------------------------------------------------------------- bounded work


@pytest.mark.parametrize("height, width, tile, overlap", [(300, 400, 182, 181), (1080, 1920, 14, 13)])
def test_tile_plans_beyond_the_cap_are_refused_with_a_setting_that_fits(height, width, tile, overlap):
    with pytest.raises(ValueError, match=f"more than the {MAX_TILES} allowed") as info:
        tile_grid(height, width, tile=tile, overlap=overlap)
    words = str(info.value).split()
    suggested_tile, suggested_overlap = int(words[words.index("use") + 2]), int(words[words.index("use") + 5])
    grid = tile_grid(height, width, tile=suggested_tile, overlap=suggested_overlap)
    assert grid is not None and len(grid) <= MAX_TILES


def _layer_calls(model):
    """A counter of the network's layers run, and a way to stop counting."""
    calls = []
    handles = [m.register_forward_pre_hook(lambda *_: calls.append(1)) for m in model.modules()]
    return calls, handles


def test_practically_endless_work_is_refused_before_any_pass_with_an_estimate(v2_vits, monkeypatch):
    (endless,) = estimate(v2_vits, [(64, 64)], input_size=4088)
    # The default limit is 15 minutes; 4088 px is about 25 minutes on the 2-core CPU this was written on, so a
    # limit of a tenth of the estimate keeps the test the same on a machine up to ten times faster.
    monkeypatch.setenv(LIMIT_VARIABLE, str(endless.seconds / 10))
    calls, handles = _layer_calls(v2_vits)
    try:
        with pytest.raises(WorkLimitError) as info:
            v2_vits.infer(scene(64, 64), input_size=4088)
    finally:
        for handle in handles:
            handle.remove()
    assert not calls  # refused before the network ran at all
    text = str(info.value)
    assert "85,264 tokens" in text and "TFLOP" in text and "limit" in text and LIMIT_VARIABLE in text
    suggested = int(text.split("input_size ")[1].split()[0])
    (work,) = estimate(v2_vits, [(64, 64)], input_size=suggested)
    assert suggested % 14 == 0 and work.seconds <= 60  # the suggestion does fit


def test_long_work_warns_and_the_limit_can_be_set(v2_vits, monkeypatch):
    import depth_anything.work as work

    monkeypatch.setattr(work, "WARN_SECONDS", 0.0)
    with pytest.warns(WorkWarning, match="will take a while"):
        v2_vits.infer(scene(28, 28), input_size=28)
    monkeypatch.setenv(LIMIT_VARIABLE, "1e-9")
    with pytest.raises(WorkLimitError, match="limit"):
        v2_vits.infer(scene(28, 28), input_size=28)
    monkeypatch.setenv(LIMIT_VARIABLE, "0")  # no limit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WorkWarning)
        assert v2_vits.infer(scene(28, 28), input_size=28).shape == (1, 28, 28)


def test_interrupt_stops_inside_one_pass_between_layers_and_leaves_no_hooks(v2_vits):
    calls, handles = _layer_calls(v2_vits)
    v2_vits.infer(scene(56, 56), input_size=SIZE)
    per_pass = len(calls)
    calls.clear()

    class Stop(Exception):
        pass

    def interrupt():
        if len(calls) >= per_pass // 3:
            raise Stop

    with pytest.raises(Stop):
        v2_vits.infer(scene(56, 56), input_size=SIZE, interrupt=interrupt)
    assert per_pass // 3 <= len(calls) < per_pass  # stopped a third of the way into the only pass
    calls.clear()
    v2_vits.infer(scene(56, 56), input_size=SIZE)
    assert len(calls) == per_pass  # the interrupt's hooks are gone
    for handle in handles:
        handle.remove()

    passes_done = []

    def after_two_passes():
        if len(passes_done) >= 2:
            raise Stop

    with pytest.raises(Stop):  # tiled: the global pass and one tile, then a stop before the next tile
        v2_vits.infer(scene(112, 112), input_size=SIZE, tiled=True, tile=56, overlap=14, batch_size=1,
                      progress=lambda done, total: passes_done.append(done), interrupt=after_two_passes)
    assert passes_done == [1, 2]


# ----------------------------------------------------------------------------------------- bounded memory


def test_batch_run_holds_images_within_a_byte_budget_with_the_same_outputs(tmp_path, v2_vits):
    sources = []
    for i in range(6):
        sources.append(tmp_path / f"in{i}.png")
        Image.fromarray(scene(120 + 14 * (i % 2), 160, i)).save(sources[-1])
    settings, options = InferenceSettings(input_size=SIZE, batch_size=4), RenderOptions("png16")
    one_image = image_cost(134, 160, side_by_side=False, tiled=False)
    tight = MemoryBudget(int(1.5 * one_image))  # room for one image at a time
    job = ImageJob(v2_vits, settings, options)
    tasks = [Task(path, tmp_path / "tight" / f"{path.stem}.png") for path in sources]
    assert all(o.ok for o in job.run(tasks, budget=tight))
    assert tight.peak <= tight.limit and tight.used == 0  # never more than one image in flight; all given back
    roomy = [Task(path, tmp_path / "roomy" / f"{path.stem}.png") for path in sources]
    assert all(o.ok for o in job.run(roomy, budget=MemoryBudget(1 << 30)))
    for tight_task, roomy_task in zip(tasks, roomy):  # alone or batched, the same depth (to float rounding)
        alone = np.asarray(Image.open(tight_task.output)).astype(int)
        batched = np.asarray(Image.open(roomy_task.output)).astype(int)
        assert np.abs(alone - batched).max() <= 2


def test_an_image_larger_than_the_whole_budget_runs_alone():
    budget = MemoryBudget(100)
    assert budget.try_reserve(1000)  # alone: admitted
    assert not budget.try_reserve(1)
    budget.release(1000)
    assert budget.try_reserve(60) and not budget.try_reserve(60)


# ------------------------------------------------------------------------------------------ input folders


def _link_loops(root: Path) -> Path:
    (root / "a" / "b").mkdir(parents=True)
    Image.fromarray(scene(30, 40)).save(root / "a" / "x.png")
    Image.fromarray(scene(30, 40, 1)).save(root / "a" / "b" / "y.png")
    (root / "a" / "b" / "up").symlink_to("..")
    (root / "a" / "b" / "top").symlink_to("../..")
    (root / "a" / "self").symlink_to("../a")
    return root


def test_double_star_globs_follow_link_loops_once(tmp_path):
    root = _link_loops(tmp_path / "photos")
    found = discover([f"{root}/**/*.png"], IMAGE_EXTENSIONS)
    assert sorted(str(s.relative) for s in found.sources) == ["a/b/y", "a/x"]
    found = discover([f"{root}/a/**/y.png"], IMAGE_EXTENSIONS)
    assert [str(s.relative) for s in found.sources] == ["b/y"]


# ------------------------------------------------------------------------------------------ output folders


def _mount_tmpfs(path: Path, *options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(("size=20m", *options)), "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


@contextmanager
def read_only_folder(path: Path):
    """A real read-only folder: a read-only file system as root (who ignores permissions), else mode 555."""
    if _mount_tmpfs(path, "ro"):
        try:
            yield path
        finally:
            subprocess.run(["umount", str(path)], check=True)
        return
    path.chmod(0o555)
    try:
        yield path
    finally:
        path.chmod(0o755)


@contextmanager
def full_disk(path: Path):
    """A real full file system (a 20 MB tmpfs, filled), mounted as root."""
    if not _mount_tmpfs(path):
        pytest.skip("mounting a small file system to fill needs root here")
    try:
        with open(path / "filler", "wb") as file:
            try:
                while True:
                    file.write(bytes(1 << 20))
            except OSError:
                pass
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_output_folder_problems_are_one_sentence_before_any_work(tmp_path):
    a_file = tmp_path / "depth.png"
    a_file.write_bytes(b"x")
    assert "is a file, not a folder" in output_folder_problem(a_file)
    assert f"{a_file} is a file" in output_folder_problem(a_file / "sub" / "out")
    assert output_folder_problem(tmp_path / "new" / "out") is None and not (tmp_path / "new").exists()
    with read_only_folder(tmp_path / "ro") as folder:
        assert "not writable" in output_folder_problem(folder / "out")
    with full_disk(tmp_path / "full") as folder:
        assert "disk is full" in output_folder_problem(folder / "out")


# ------------------------------------------------------------------------------------------ command line


def damaged_depth_files(folder: Path) -> dict[str, str]:
    """Damaged and wrong depth files in `folder`: name -> what the error says."""
    depth = np.random.default_rng(0).random((8, 10)).astype(np.float32)
    for name in ("good.exr", "good.png", "good.npy"):
        save_depth(folder / name, depth)
    cases = {
        "empty.exr": (b"", "cannot be read as OpenEXR"), "empty.png": (b"", "not a PNG file"),
        "empty.npy": (b"", "cannot be read as a numpy array"),
        "cut.exr": ((folder / "good.exr").read_bytes()[:200], "truncated or not an EXR"),
        "cut.png": ((folder / "good.png").read_bytes()[:150], "damaged or truncated PNG"),
        "cut.npy": ((folder / "good.npy").read_bytes()[:100], "truncated or was not written by numpy.save"),
        "text.npy": (b"hello", "cannot be read as a numpy array"),
    }  # fmt: skip
    for name, (data, _) in cases.items():
        (folder / name).write_bytes(data)
    np.save(folder / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(folder / "nothing.npy", np.zeros((0, 4), np.float32))
    return {**{name: message for name, (_, message) in cases.items()},
            "objects.npy": "holds Python objects", "nothing.npy": "holds an empty map"}  # fmt: skip


def test_damaged_depth_files_are_one_depth_file_error_naming_the_file(tmp_path):
    for name, message in damaged_depth_files(tmp_path).items():
        with pytest.raises(DepthFileError) as info:
            load_depth(tmp_path / name)
        assert name in str(info.value) and message in str(info.value), str(info.value)


@pytest.mark.parametrize("suffix", [".exr", ".png", ".npy"])
def test_saved_depth_files_keep_non_finite_values_out_of_the_range_and_far(tmp_path, suffix):
    depth = 5 + np.random.default_rng(1).random((8, 10)).astype(np.float32)
    depth[0, 0], depth[1, 1], depth[2, 2] = np.nan, np.inf, -np.inf
    save_depth(tmp_path / f"d{suffix}", depth)
    loaded = load_depth(tmp_path / f"d{suffix}")
    finite = np.isfinite(depth)
    assert loaded.value_range == pytest.approx((depth[finite].min(), depth[finite].max()))  # not moved
    unit = loaded.unit()
    assert np.isfinite(unit).all() and (unit[~finite] == 0).all()  # far
    assert unit[finite].min() == 0 and unit[finite].max() == pytest.approx(1)  # the rest keeps its full range


def cli(*args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "depth_anything.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i in range(3):
        Image.fromarray(scene(48, 64, i)).save(folder / f"p{i}.png")
    return folder


@pytest.mark.parametrize("case", ["empty .pth", "model_type bert", "NaN weights", "config is a list", "ONNX file"])
def test_cli_bad_checkpoint_exits_2_with_one_line_and_writes_nothing(tmp_path, photos, case):
    source = make_bad_checkpoint(tmp_path / "models", case)
    result = cli("--checkpoint", source, "--img-path", photos, "--outdir", tmp_path / "out", "--input-size", SIZE,
                 cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("depth-anything: error: ") and BAD_CHECKPOINTS[case][1] in lines[-1]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))


def test_cli_export_refuses_a_runtime_file_and_a_bad_output_before_loading(tmp_path, v2_vits_path):
    onnx_file = make_bad_checkpoint(tmp_path / "models", "ONNX file")
    given = cli("export", "--checkpoint", onnx_file, "--output", tmp_path / "v2.onnx", cwd=tmp_path)
    assert given.returncode == 2 and "an ONNX file" in given.stderr and "Traceback" not in given.stderr, given.stderr
    (tmp_path / "a_file").write_text("x")
    start = time.monotonic()
    under_file = cli("export", "--checkpoint", v2_vits_path, "--output", tmp_path / "a_file" / "v2.onnx", cwd=tmp_path)
    assert under_file.returncode == 2 and "is a file, not a folder" in under_file.stderr, under_file.stderr
    assert "Traceback" not in under_file.stderr and time.monotonic() - start < 120  # refused before the export
    assert not list(tmp_path.glob("*.onnx"))


@pytest.mark.parametrize("problem", ["a file", "under a file", "read-only", "disk full"])
def test_cli_output_folder_problems_exit_2_before_the_model_loads(tmp_path, photos, v2_vits_path, problem):
    broken = tmp_path / "not_a_checkpoint.pth"  # loading it would fail: the folder must be checked first
    broken.write_bytes(b"")
    (tmp_path / "taken").write_text("a file")
    if problem == "read-only":
        folder = read_only_folder(tmp_path / "ro")
    elif problem == "disk full":
        folder = full_disk(tmp_path / "full")
    else:
        folder = nullcontext(tmp_path)
    with folder as base:
        outdir = {"a file": base / "taken", "under a file": base / "taken" / "out"}.get(problem, base / "out")
        result = cli("--checkpoint", broken, "--img-path", photos, "--outdir", outdir, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("depth-anything: error:") == 1 and "Traceback" not in result.stderr
    assert str(outdir) in result.stderr and "empty" not in result.stderr  # the folder, not the model


def test_cli_double_star_glob_through_link_loops_finishes_with_plain_output_paths(tmp_path, v2_vits_path):
    _link_loops(tmp_path / "photos")
    result = cli("--checkpoint", v2_vits_path, "--img-path", "photos/**/*.png", "--outdir", "out", "--input-size",
                 SIZE, "--format", "png8", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert written == ["a/b/y.png", "a/x.png"]


def test_cli_ctrl_c_stops_soon_keeps_finished_outputs_and_leaves_no_partials(tmp_path, v2_vits_path):
    (tmp_path / "in").mkdir()
    for i in range(16):
        Image.fromarray(scene(48, 64, i)).save(tmp_path / "in" / f"img{i:02d}.png")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "depth_anything.cli", "--checkpoint", str(v2_vits_path), "--img-path", "in",
         "--outdir", "out", "--input-size", "420", "--batch-size", "1", "-q"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal's Ctrl-C arrives
    )
    try:
        deadline = time.monotonic() + 300
        while not list((tmp_path / "out").glob("*.png")):
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read() if process.poll() else ""
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    written = list((tmp_path / "out").glob("*.png"))
    assert 1 <= len(written) < 16
    for path in written:
        with Image.open(path) as image:
            image.load()  # complete
    assert not list((tmp_path / "out").glob(".*.partial"))


# ------------------------------------------------------------------------------------------------ ComfyUI


@pytest.fixture(scope="module")
def hostile_inputs(comfyui) -> dict[str, str]:
    """A good checkpoint and an image in the server's folders, under this module's own names."""
    write_checkpoint(comfyui.models_dir / "depth_anything" / "hostile_v2_vits.pth", "vits", seed=5)
    Image.fromarray(scene(48, 64)).save(comfyui.input_dir / "hostile.png")
    Image.fromarray(scene(720, 720)).save(comfyui.input_dir / "hostile_large.png")
    return {"model": "hostile_v2_vits.pth", "image": "hostile.png"}


def prompt(inputs, model=None, **estimate) -> dict:
    options = dict(input_size=SIZE, normalization="per_image", invert=False, gamma=1.0, batch_size=4,
                   tiling="off", tile_size=0, overlap=0)  # fmt: skip
    options.update(estimate)
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": inputs["image"]}},
        "2": {"class_type": "DepthAnythingModelLoader",
              "inputs": {"model_name": model or inputs["model"], "family": "auto", "precision": "auto", "device": "auto"}},
        "3": {"class_type": "DepthAnythingEstimate", "inputs": {"model": ["2", 0], "image": ["1", 0], **options}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
        "6": {"class_type": "MaskToImage", "inputs": {"mask": ["3", 3]}},
    }  # fmt: skip


def failed(comfyui, graph) -> dict:
    status, answer = comfyui.queue(graph)
    assert status == 200, json.dumps(answer)[:3000]
    entry = comfyui.wait(answer["prompt_id"])
    assert entry["status"]["status_str"] == "error", entry["status"]
    return execution_error(entry)


def test_comfyui_loader_gives_each_bad_checkpoint_a_clear_error_and_the_server_goes_on(comfyui, hostile_inputs):
    folder = comfyui.models_dir / "depth_anything"
    for case, name in (("empty .pth", "hostile_empty"), ("text hello", "hostile_text"), ("NaN weights", "hostile_nan"),
                       ("model_type bert", "hostile_bert")):
        made = make_bad_checkpoint(comfyui.workdir / "bad" / name, case)
        single_file = made.is_file()  # a .pth, or a transformers folder
        target = folder / (f"{name}_v2_vits.pth" if single_file else name)
        shutil.move(str(made), target)
        choice = target.name if single_file else f"{name}/model.safetensors"
        error = failed(comfyui, prompt(hostile_inputs, model=choice))
        assert error["node_type"] == "DepthAnythingModelLoader", error
        assert BAD_CHECKPOINTS[case][1] in error["exception_message"] and str(target) in error["exception_message"]
        assert error["exception_type"].endswith("CheckpointError"), error["exception_type"]
    outputs = comfyui.run(prompt(hostile_inputs, gamma=1.05))  # the next good prompt runs
    assert outputs["4"]["images"] and outputs["5"]["images"]  # depth, and the (empty) invalid_mask


def test_comfyui_refuses_endless_settings_quickly_and_the_next_prompt_runs(comfyui, hostile_inputs):
    large = {**hostile_inputs, "image": "hostile_large.png"}  # 14-px tiles with 3-px overlap: 66 x 66 of them
    tiles = failed(comfyui, prompt(large, tiling="on", tile_size=14, overlap=0, input_size=14))
    assert "tiles" in tiles["exception_message"] and "allowed" in tiles["exception_message"], tiles
    start = time.monotonic()
    huge = failed(comfyui, prompt(hostile_inputs, input_size=4088))
    assert time.monotonic() - start < 120  # refused from the estimate, not after a 20-minute pass
    message = huge["exception_message"]
    assert "tokens" in message and "limit" in message and "input_size" in message, message
    assert comfyui.run(prompt(hostile_inputs, gamma=1.1))


def test_comfyui_cancel_stops_inside_a_single_long_pass(comfyui, hostile_inputs):
    graph = prompt(hostile_inputs, input_size=980, batch_size=1, gamma=1.2)  # one image: one pass, no chunks
    started = []

    def cancel_during_the_pass(kind, data):
        if kind == "executing" and data.get("node") == "3" and not started:
            started.append(time.monotonic())
            time.sleep(2.0)  # the model is cached: by now the pass is running
            comfyui.post("/interrupt", {})

    entry, events = comfyui.run_with_events(graph, on_event=cancel_during_the_pass)
    kinds = [kind for kind, _ in events]
    assert "execution_interrupted" in kinds, kinds
    # Before, Cancel was looked at only between chunks: the pass would have finished and reported progress 1/1.
    assert not [d for kind, d in events if kind == "progress" and d.get("node") == "3"]
    assert entry["status"]["status_str"] == "error" and "4" not in entry["outputs"]
    assert comfyui.run(prompt(hostile_inputs, gamma=1.25))


def test_comfyui_load_depth_gives_each_damaged_file_a_clear_error_and_the_next_prompt_runs(comfyui):
    folder = comfyui.input_dir / "hostile_depth"
    folder.mkdir(exist_ok=True)
    damaged = damaged_depth_files(folder)

    def load(name):
        return {"1": {"class_type": "DepthAnythingLoadDepth", "inputs": {"depth_file": f"hostile_depth/{name}"}},
                "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}  # fmt: skip

    for name in ("cut.exr", "cut.png", "cut.npy", "nothing.npy"):
        error = failed(comfyui, load(name))
        assert error["node_type"] == "DepthAnythingLoadDepth", error
        assert name in error["exception_message"] and damaged[name] in error["exception_message"], error
        assert error["exception_type"].endswith("DepthFileError"), error["exception_type"]
    assert comfyui.run(load("good.exr"))["2"]["images"]


def test_comfyui_nodes_refuse_a_0_255_image_and_colour_non_finite_depth_as_far(comfyui, hostile_inputs):
    def spoiled(scale, non_finite):
        return {"1": {"class_type": "LoadImage", "inputs": {"image": hostile_inputs["image"]}},
                "7": {"class_type": "HostileImage", "inputs": {"image": ["1", 0], "scale": scale,
                                                                "non_finite": non_finite}}}  # fmt: skip

    graph = prompt(hostile_inputs)
    graph.update(spoiled(255.0, False))
    graph["3"]["inputs"]["image"] = ["7", 0]
    error = failed(comfyui, graph)  # a float image in 0..255, as from a careless custom node
    assert error["node_type"] == "DepthAnythingEstimate" and "Divide by 255" in error["exception_message"], error

    graph = spoiled(1.0, True)
    for node, colormap in (("8", "inferno"), ("9", "grayscale")):
        graph[node] = {"class_type": "DepthAnythingColorize", "inputs": {"depth": ["7", 0], "colormap": colormap}}
        graph[node + "0"] = {"class_type": "SaveImage",
                             "inputs": {"images": [node, 0], "filename_prefix": f"tests/hostile_{colormap}"}}
    outputs = comfyui.run(graph)  # no crash on NaN
    for node in ("80", "90"):
        (path,) = comfyui.output_files(outputs, node)
        picture = np.asarray(Image.open(path).convert("RGB")).astype(int)
        nan, inf, zero = picture[0, 0], picture[0, 1], picture[0, 2]
        assert (nan == zero).all(), (nan, zero)  # NaN is far (0), as the condition stage gives it
        assert not (inf == zero).all()  # +inf clamps to 1, the near end
