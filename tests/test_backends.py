"""The fast backends: exact to the eager network in every surface, cached on disk, and clear when they cannot run.

Real ONNX Runtime, a real torch.compile (on a small network: compiling v2-S takes minutes on this CPU) and real
subprocesses for the command line and for plain onnxruntime outside the library. TensorRT needs an NVIDIA GPU,
which this machine has not: its keys, refusals and messages are tested here; its engines only on a GPU
(benchmarks/backends.py).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from depth_anything import DepthAnything, DepthModel, get_family, processing_size
from depth_anything.backends import (
    BACKENDS,
    EXACT_TOLERANCE,
    BackendMismatchError,
    BackendUnavailableError,
    GraphBackend,
    check_exact,
    relative_difference,
    require,
)
from depth_anything.dinov2 import POS_GRID, bicubic_matrix
from depth_anything.runtimes import artifacts, auto, torch_compile
from depth_anything.runtimes.artifacts import artifact, load_or_build
from depth_anything.runtimes.onnx_export import ExportError, export_onnx, parse_sizes
from depth_anything.runtimes.tensorrt import engine_key

from checkpoints import write_checkpoint
from comfyui_server import comfyui  # noqa: F401  (the real ComfyUI server fixture)

REPO = Path(__file__).resolve().parents[1]
INPUT_SIZE = 98  # the network sizes below: square 98x98, portrait 140x98, landscape 98x252
IMAGE_SIZES = [(60, 60), (90, 60), (60, 150)]
FAMILY_FILES = {
    "v1": "depth_anything_vits14.pth",
    "v2": "depth_anything_v2_vits.pth",
    "metric_indoor": "depth_anything_v2_metric_hypersim_vits.pth",
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("backend_checkpoints")
    return {family: write_checkpoint(folder / name, seed=11 + i) for i, (family, name) in enumerate(FAMILY_FILES.items())}


@pytest.fixture(scope="module")
def eager_models(checkpoints) -> dict[str, DepthAnything]:
    return {family: DepthAnything.from_pretrained(path, device="cpu") for family, path in checkpoints.items()}


@pytest.fixture(scope="module")
def onnx_models(checkpoints) -> dict[str, DepthAnything]:
    return {family: DepthAnything.from_pretrained(path, device="cpu", backend="onnx")
            for family, path in checkpoints.items()}


def photos(sizes=IMAGE_SIZES, seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    images = []
    for height, width in sizes:
        y, x = np.mgrid[0:height, 0:width] / max(height, width)
        image = np.stack([np.sin(7 * x + rng.uniform(0, 3)), np.cos(5 * y), x * y], -1) * 0.4 + 0.5
        images.append((np.clip(image + rng.normal(0, 0.03, image.shape), 0, 1) * 255).astype(np.uint8))
    return images


def relative(a, b) -> float:
    """max |a - b| / max |b| for tensors, arrays or lists of them."""

    def tensor(x):
        if isinstance(x, (list, tuple)):
            return torch.stack([tensor(v) for v in x])
        return x.detach().float() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))

    return relative_difference(tensor(a), tensor(b))


def subprocess_env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **extra}


# ------------------------------------------------------------------------------ the position-embedding rule


def test_graph_position_embedding_is_the_official_bicubic_rule():
    grid = torch.randn(6, POS_GRID, POS_GRID)
    for rows in (1, 10, 36, 37, 38, 55, 111):
        for cols in (37, 18, 74):
            official = F.interpolate(grid[None], scale_factor=((rows + 0.1) / POS_GRID, (cols + 0.1) / POS_GRID),
                                     mode="bicubic", align_corners=False)[0]
            ours = bicubic_matrix(rows, POS_GRID) @ grid @ bicubic_matrix(cols, POS_GRID).T
            assert ours.shape == official.shape
            assert relative(ours, official) < 2e-5, (rows, cols)


def test_the_rule_survives_tracing_at_every_size(eager_models):
    # A graph traced at one size computes the embedding for the size it is run at, 37 x 37 included (kept as
    # stored there, resized by (n + 0.1) / 37 at every other size, one side 37 or not).
    encoder = eager_models["v2"].pretrained

    class Embedding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, x):
            return self.encoder.position_embedding(x.shape[-2] // 14, x.shape[-1] // 14)

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit.trace's deprecation: the ONNX exporter traces the same way
        traced = torch.jit.trace(Embedding(), torch.zeros(1, 3, 14 * 13, 14 * 19), check_trace=False)
    for patches in ((37, 37), (37, 50), (13, 19), (74, 37), (20, 20)):
        expected = encoder.position_embedding(*patches)
        with torch.no_grad():
            got = traced(torch.zeros(1, 3, 14 * patches[0], 14 * patches[1]))
        assert got.shape == expected.shape and relative(got, expected) < 2e-5, patches
    with torch.no_grad():
        assert torch.equal(traced(torch.zeros(1, 3, 518, 518)), encoder.pos_embed)


# --------------------------------------------------------------------------- exactness: infer and the command


@pytest.mark.parametrize("family", list(FAMILY_FILES))
def test_onnx_equals_eager_through_infer_at_three_aspect_ratios(family, eager_models, onnx_models):
    eager, fast = eager_models[family], onnx_models[family]
    assert fast.backend.name == "onnx" and eager.backend.name == "eager"
    images = photos()
    assert [processing_size(h, w, INPUT_SIZE) for h, w in IMAGE_SIZES] == [(98, 98), (140, 98), (98, 252)]
    expected = eager.infer(images, input_size=INPUT_SIZE)
    got = fast.infer(images, input_size=INPUT_SIZE)
    for want, have in zip(expected, got):
        assert have.shape == want.shape and relative(have, want) < EXACT_TOLERANCE
        assert want.std() > 0  # not a flat map


def test_onnx_equals_eager_at_518(eager_models, onnx_models):
    image = photos([(518, 518)], seed=3)
    expected = eager_models["v2"].infer(image)
    got = onnx_models["v2"].infer(image)
    assert relative(got, expected) < EXACT_TOLERANCE


@pytest.mark.parametrize("family", list(FAMILY_FILES))
def test_the_command_with_backend_onnx_equals_eager(family, checkpoints, eager_models, onnx_models, tmp_path,
                                                    monkeypatch, capsys):
    from depth_anything.cli import main

    onnx_models[family].infer(photos()[:1], input_size=INPUT_SIZE)  # the export is made (and cached) here
    folder = tmp_path / "in"
    folder.mkdir()
    for i, image in enumerate(photos(seed=5)):
        Image.fromarray(image).save(folder / f"p{i}.png")
    command = ["--checkpoint", str(checkpoints[family]), "--img-path", str(folder), "--outdir", str(tmp_path / "out"),
               "--format", "npy", "--input-size", str(INPUT_SIZE), "--backend", "onnx"]
    if family == "v2":  # as a user runs it: a new process, which finds the exported file on disk
        result = subprocess.run([sys.executable, "-m", "depth_anything.cli", *command], env=subprocess_env(),
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        stderr = result.stderr
    else:
        monkeypatch.setattr(logging.getLogger("depth_anything.backends"), "handlers", [])
        assert main(command) == 0
        stderr = capsys.readouterr().err
    assert "exporting" not in stderr  # the cached file is reused, not exported again
    for i in range(3):
        expected = eager_models[family].infer(np.asarray(Image.open(folder / f"p{i}.png")), input_size=INPUT_SIZE)
        got = np.load(tmp_path / "out" / f"p{i}.npy")
        assert relative(got, expected[0]) < EXACT_TOLERANCE


def test_the_detector_takes_a_backend(checkpoints):
    from depth_anything.diffusers import DepthAnythingDetector

    image = Image.fromarray(photos([(70, 90)])[0])
    eager = DepthAnythingDetector.from_pretrained(checkpoints["v2"], device="cpu")
    fast = DepthAnythingDetector.from_pretrained(checkpoints["v2"], device="cpu", backend="onnx")
    assert fast.model.backend.name == "onnx"
    want = eager(image, detect_resolution=INPUT_SIZE, output_type="pt")
    got = fast(image, detect_resolution=INPUT_SIZE, output_type="pt")
    assert (got - want).abs().max() < 1e-3  # [0, 1] control images: float rounding, far below one 8-bit step


def test_the_comfyui_loader_takes_an_optional_backend(comfyui):
    name = "depth_anything_v2_vits_backends.pth"
    path = write_checkpoint(comfyui.models_dir / "depth_anything" / name, seed=21)
    Image.fromarray(photos([(48, 80)], seed=2)[0]).save(comfyui.input_dir / "backends.png")

    def prompt(**backend) -> dict:
        loader = {"model_name": name, "family": "auto", "precision": "auto", "device": "auto", **backend}
        estimate = dict(input_size=INPUT_SIZE, normalization="per_image", invert=False, gamma=1.0, batch_size=4,
                        tiling="off", tile_size=0, overlap=0)
        return {
            "1": {"class_type": "LoadImage", "inputs": {"image": "backends.png"}},
            "2": {"class_type": "DepthAnythingModelLoader", "inputs": loader},
            "3": {"class_type": "DepthAnythingEstimate", "inputs": {"model": ["2", 0], "image": ["1", 0], **estimate}},
            "5": {"class_type": "DepthAnythingSaveDepth16", "inputs": {
                "depth": ["3", 0], "filename_prefix": "tests/backend", "save_npy": True, "raw_depth": ["3", 2]}},
        }

    def raw(outputs) -> np.ndarray:
        (png16,) = comfyui.output_files(outputs, "5")
        return np.load(png16.with_suffix(".npy"))

    info = comfyui.get("/object_info")["DepthAnythingModelLoader"]["input"]
    assert "backend" not in info["required"]
    choices, options = info["optional"]["backend"]
    assert list(choices) == list(BACKENDS) and options["default"] == "eager" and "onnx" in options["tooltip"]

    expected = DepthAnything.from_pretrained(path, device="cpu").infer(
        np.asarray(Image.open(comfyui.input_dir / "backends.png").convert("RGB")), input_size=INPUT_SIZE)[0]
    saved = raw(comfyui.run(prompt()))  # a workflow saved before the input existed: eager, as before
    np.testing.assert_allclose(saved, expected.numpy(), rtol=1e-5, atol=1e-5)
    fast = raw(comfyui.run(prompt(backend="onnx")))
    assert relative(fast, expected) < EXACT_TOLERANCE and not np.array_equal(fast, saved)  # ONNX Runtime ran
    # a value outside the list: refused by validation (current ComfyUI) or by the node, with the valid names
    status, answer = comfyui.queue(prompt(backend="fast"))
    if status == 200:
        entry = comfyui.wait(answer["prompt_id"], 300)
        answer = entry["status"]
    assert "fast" in json.dumps(answer) and "eager" in json.dumps(answer)


# ---------------------------------------------------------------------------------------------- export


def test_exported_file_runs_in_plain_onnxruntime_outside_the_library(checkpoints, eager_models, tmp_path):
    output = tmp_path / "v2.onnx"
    result = subprocess.run(
        [sys.executable, "-m", "depth_anything.cli", "export", "--checkpoint", str(checkpoints["v2"]), "--format",
         "onnx", "--sizes", "518x518,98x252,140x98", "--output", str(output)],
        env=subprocess_env(), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "matches the PyTorch network" in result.stdout and "onnxruntime.InferenceSession" in result.stdout.replace(
        "ort.InferenceSession", "onnxruntime.InferenceSession")

    sizes = [(518, 518), (98, 252), (140, 98), (182, 70)]  # the three exported, and one more (the file is dynamic)
    generator = torch.Generator().manual_seed(0)
    inputs = {f"{h}x{w}": torch.randn(2, 3, h, w, generator=generator) for h, w in sizes}
    np.savez(tmp_path / "inputs.npz", **{k: v.numpy() for k, v in inputs.items()})
    script = textwrap.dedent(f"""
        import sys
        sys.modules["depth_anything"] = None  # the library cannot be imported here: plain onnxruntime only
        sys.modules["torch"] = None
        import numpy as np, onnxruntime as ort
        session = ort.InferenceSession({str(output)!r}, providers=["CPUExecutionProvider"])
        inputs = np.load({str(tmp_path / 'inputs.npz')!r})
        np.savez({str(tmp_path / 'outputs.npz')!r}, **{{k: session.run(None, {{"pixel_values": inputs[k]}})[0]
                                                     for k in inputs.files}})
        meta = session.get_modelmeta().custom_metadata_map
        print(meta["family"], meta["encoder"], meta["shape"], meta["sizes"])
    """)
    plain = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.split() == ["v2", "vits", "dynamic", "518x518,98x252,140x98"]
    outputs = np.load(tmp_path / "outputs.npz")
    for key, pixels in inputs.items():
        with torch.inference_mode():
            expected = eager_models["v2"](pixels)
        assert relative(outputs[key], expected) < EXACT_TOLERANCE, key


def test_a_fixed_size_file_and_its_printed_recipe(checkpoints, eager_models, tmp_path):
    import onnxruntime as ort

    from depth_anything.runtimes.onnx_export import usage

    photo = tmp_path / "photo.png"
    Image.fromarray(photos([(300, 400)], seed=9)[0]).save(photo)
    result = export_onnx(eager_models["v2"], tmp_path / "v2.onnx", sizes=[(518, 686)], dynamic=False)
    assert result.checked[(518, 686)] < EXACT_TOLERANCE
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    assert shape[1:] == [3, 518, 686] and not isinstance(shape[0], int)  # that size only; the batch stays free
    with pytest.raises(Exception, match="(?i)dimension|shape|invalid"):
        session.run(None, {"pixel_values": np.zeros((1, 3, 518, 518), np.float32)})
    recipe = usage(result).replace('"photo.jpg"', repr(str(photo)))
    recipe += f"\nnp.save({str(tmp_path / 'depth.npy')!r}, depth)\nnp.save({str(tmp_path / 'x.npy')!r}, x)\n"
    run = subprocess.run([sys.executable, "-c", recipe], capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert run.returncode == 0, run.stderr
    # the recipe's network input is the official pre-processing's (cv2's bicubic = torch's to ~3e-5)
    pixels = next(eager_models["v2"].prepare(np.asarray(Image.open(photo)))).pixels[0]
    assert np.abs(np.load(tmp_path / "x.npy").transpose(2, 0, 1) - pixels.numpy()).max() < 1e-3
    depth = np.load(tmp_path / "depth.npy")
    expected = eager_models["v2"].infer(np.asarray(Image.open(photo)))[0].numpy()
    assert depth.shape == expected.shape
    # resizing back differs at the sub-pixel level (cv2 has no align_corners=True); the same picture
    assert np.corrcoef(depth.ravel(), expected.ravel())[0, 1] > 0.99


@pytest.mark.parametrize("arguments, message", [
    (["--sizes", "518x520"], "multiples of 14"),
    (["--sizes", "big"], "HEIGHTxWIDTH"),
    (["--dtype", "bf16"], "invalid choice"),
    (["--sizes", "518x518", "--dynamic"], "not allowed with"),
])
def test_export_refuses_bad_options_with_the_reason(arguments, message, checkpoints, tmp_path, capsys):
    from depth_anything.cli import main

    with pytest.raises(SystemExit) if message in ("invalid choice", "not allowed with") else _no_exit():
        code = main(["export", "--checkpoint", str(checkpoints["v2"]), "--output", str(tmp_path / "x.onnx"),
                     *arguments])
        assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


class _no_exit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_parse_sizes():
    assert parse_sizes("518x518,518X784, 784x518") == [(518, 518), (518, 784), (784, 518)]
    with pytest.raises(ExportError, match="518x518"):
        parse_sizes("520x518")


def test_the_flat_official_flags_still_parse_after_the_export_word(tmp_path, capsys):
    from depth_anything.cli import main

    assert main(["--img-path", str(tmp_path / "none"), "--outdir", str(tmp_path / "o"), "-q"]) == 1
    assert "found no input" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "--sizes" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- the disk cache


def test_cache_key_covers_weights_shape_precision_device_and_versions(eager_models):
    model = eager_models["v2"]
    key = engine_key(model, (518, 518), "cuda:NVIDIA H100:sm90")
    assert {key["family"], key["encoder"], key["dtype"], key["shape"], key["gpu"]} == {
        "v2", "vits", "float32", "518x518", "cuda:NVIDIA H100:sm90"}
    assert key["weights"] == artifacts.weights_digest(model)
    assert {"tensorrt", "torch", "depth_anything", "onnx"} <= set(key)
    names = {artifact("tensorrt", k, "engine").path.name for k in (
        key,
        engine_key(model, (518, 784), "cuda:NVIDIA H100:sm90"),
        engine_key(model, (518, 518), "cuda:NVIDIA RTX 4090:sm89"),
        engine_key(eager_models["v1"], (518, 518), "cuda:NVIDIA H100:sm90"),
        {**key, "tensorrt": "10.0.0"},
        {**key, "dtype": "float16"},
    )}
    assert len(names) == 6
    other = DepthAnything.from_pretrained(write_checkpoint(Path(os.environ["DEPTH_ANYTHING_CACHE"]) / "w" /
                                                           "depth_anything_v2_vits.pth", seed=99), device="cpu")
    assert artifacts.weights_digest(other) != key["weights"]  # other weights, other artifacts


def test_an_engine_from_another_gpu_or_version_is_refused_and_rebuilt(tmp_path, caplog):
    built, loaded = [], []
    key = {"family": "v2", "shape": "518x518", "gpu": "cuda:NVIDIA H200:sm90", "tensorrt": "11.4.0"}
    item = artifact("tensorrt", key, "engine", root=tmp_path)
    stale = {**key, "gpu": "cuda:NVIDIA RTX 4090:sm89", "tensorrt": "10.3.0"}
    item.path.parent.mkdir(parents=True)
    item.path.write_bytes(b"an engine for another GPU")
    item.record.write_text(json.dumps({"key": stale}))
    assert "gpu" in item.mismatch() and "tensorrt" in item.mismatch()

    def build(target):
        built.append(target.path)
        target.write(lambda f: f.write(b"fresh engine"))

    def load(path):
        loaded.append(path.read_bytes())
        return "engine"

    with caplog.at_level(logging.WARNING, logger="depth_anything.backends"):
        assert load_or_build(item, load, build, "TensorRT engine") == "engine"
    assert built == [item.path] and loaded == [b"fresh engine"]  # the old engine was never handed to the runtime
    assert "built for something else" in caplog.text and "RTX 4090" in caplog.text
    assert item.mismatch() is None


def test_tensorrt_says_what_it_needs_here():
    model = DepthAnything(encoder="vits")
    with pytest.raises(BackendUnavailableError, match="NVIDIA GPU.*CUDA.*backend='onnx'"):
        model.use_backend("tensorrt")
    with pytest.raises(BackendUnavailableError, match=r"pip install 'depth-anything-preprocessor\[tensorrt\]'"):
        require("tensorrt_not_here", "tensorrt", "tensorrt", "tensorrt")


def test_a_missing_runtime_is_one_clear_error_on_every_surface(checkpoints, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed: importing it fails
    with pytest.raises(BackendUnavailableError, match=r"pip install 'depth-anything-preprocessor\[onnx\]'"):
        DepthAnything.from_pretrained(checkpoints["v2"], device="cpu", backend="onnx")
    from depth_anything.cli import main

    Image.fromarray(photos()[0]).save(tmp_path / "a.png")
    code = main(["--checkpoint", str(checkpoints["v2"]), "--img-path", str(tmp_path / "a.png"), "--outdir",
                 str(tmp_path / "o"), "--backend", "onnx"])
    assert code == 2 and "depth-anything-preprocessor[onnx]" in capsys.readouterr().err
    with pytest.raises(ValueError, match="Unknown backend 'fast'.*eager"):
        DepthAnything.from_pretrained(checkpoints["v2"], device="cpu", backend="fast")


def test_a_corrupt_cached_file_is_rebuilt(checkpoints, onnx_models, caplog):
    model = DepthAnything.from_pretrained(checkpoints["v1"], device="cpu", backend="onnx")
    image = photos()[:1]
    expected = onnx_models["v1"].infer(image, input_size=INPUT_SIZE)
    digest = artifacts.weights_digest(model)
    records = [p for p in (artifacts.cache_root() / "onnx").glob("v1-*.json")
               if json.loads(p.read_text())["key"]["weights"] == digest]
    files = [p for record in records for p in record.parent.glob(record.stem + ".*onnx")]
    assert len(files) == 2, "the v1 export and its optimised form should be cached"
    for path in files:
        path.write_bytes(path.read_bytes()[:1000])  # truncated, as by a full disk or a killed copy
    with caplog.at_level(logging.WARNING, logger="depth_anything.backends"):
        got = model.infer(image, input_size=INPUT_SIZE)
    assert "does not load" in caplog.text and "building it again" in caplog.text
    assert relative(got, expected) < EXACT_TOLERANCE
    assert all(path.stat().st_size > 1_000_000 for path in files)  # rebuilt in place


def test_weights_with_nan_or_inf_are_refused_quickly(tmp_path):
    from depth_anything import CheckpointError

    for bad in (float("nan"), float("inf")):
        path = write_checkpoint(tmp_path / "depth_anything_v2_vits.pth", seed=4)
        state = torch.load(path, weights_only=True)
        state["pretrained.blocks.3.mlp.fc1.weight"][7, 11] = bad
        torch.save(state, path)
        with pytest.raises(CheckpointError, match="blocks.3.mlp.fc1.weight holds NaN or infinite"):
            DepthAnything.from_pretrained(path, device="cpu")


def test_a_backend_that_differs_is_refused():
    assert check_exact("x", 5e-5, torch.float32, "it") == 5e-5
    with pytest.raises(BackendMismatchError, match="differs from the eager network by 0.001"):
        check_exact("x", 1e-3, torch.float32, "it")
    assert relative_difference(torch.ones(2), torch.ones(3)) == float("inf")
    assert relative_difference(torch.tensor([float("nan")]), torch.ones(1)) == float("inf")


# --------------------------------------------------------------------------------------- a new shape, compile


class SmallNetwork(DepthModel):
    """A few convolutions and the official upsampling: small enough to compile in seconds on a CPU."""

    def __init__(self):
        super().__init__()
        self.family = get_family("v2")
        self.encode = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.decode = torch.nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x):
        features = F.gelu(self.encode(x))
        depth = F.relu(self.decode(features))
        return F.interpolate(depth, size=x.shape[-2:], mode="bilinear", align_corners=True)[:, 0]


class Refuses(GraphBackend):
    """A backend whose runtime takes one shape only (as a fixed-size engine)."""

    name = "refuses"

    def run(self, pixels):
        if pixels.shape[-1] != 28:
            raise RuntimeError("this runtime takes width 28 only")
        return self.model(pixels)


def test_a_shape_the_runtime_cannot_take_runs_eagerly_with_a_warning():
    model = SmallNetwork().eval()
    model.use_backend(Refuses(model))
    with torch.inference_mode():
        model.predict(torch.randn(1, 3, 28, 28))
        pixels = torch.randn(2, 3, 28, 42)
        with pytest.warns(RuntimeWarning, match="shape .2, 3, 28, 42.*eager network instead"):
            got = model.predict(pixels)
        assert torch.equal(got, model(pixels))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per shape
            model.predict(pixels)


COMPILE_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_backends import SmallNetwork
from torch._dynamo.utils import counters
torch.manual_seed(0)
model = SmallNetwork().eval().use_backend("compile")
pixels = torch.randn(2, 3, 42, 56)
with torch.inference_mode():
    got, want = model.predict(pixels), model(pixels)
print("difference", float((got - want).abs().max() / want.abs().max()))
hits = counters["inductor"]["fxgraph_cache_hit"] + counters["aot_autograd"]["autograd_cache_hit"]
misses = counters["inductor"]["fxgraph_cache_miss"] + counters["aot_autograd"]["autograd_cache_miss"]
print("hits", hits, "misses", misses)
"""


def test_compile_is_exact_and_a_second_process_reuses_the_compiled_code(tmp_path):
    script = COMPILE_SCRIPT.format(tests=str(REPO / "tests"))
    env = subprocess_env(DEPTH_ANYTHING_CACHE=str(tmp_path / "cache"))
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
        assert float(run.stdout.split("difference")[1].split()[0]) < EXACT_TOLERANCE
    first, second = (dict(zip(r.stdout.split()[2::2], map(int, r.stdout.split()[3::2]))) for r in runs)
    assert first["misses"] >= 1 and second["hits"] >= 1 and second["misses"] == 0
    assert (tmp_path / "cache" / "backends" / "inductor").is_dir()  # inside the library's cache folder


def test_compile_falls_back_to_eager_past_its_shape_budget(monkeypatch):
    monkeypatch.setattr(torch_compile, "MAX_SHAPES", 0)  # as if every compiled shape were used up
    model = SmallNetwork().eval().use_backend("compile")
    pixels = torch.randn(1, 3, 28, 28)
    with pytest.warns(RuntimeWarning, match="compile.*eager network instead"):
        got = model.predict(pixels)
    assert torch.equal(got, model(pixels))


# ---------------------------------------------------------------------------------------------------- auto


def test_auto_measures_once_then_remembers(checkpoints, monkeypatch, caplog):
    monkeypatch.setattr(auto, "PROBE_SIZE", (98, 126))
    with caplog.at_level(logging.INFO, logger="depth_anything.backends"):
        model = DepthAnything.from_pretrained(checkpoints["v2"], device="cpu", backend="auto")
    assert "measuring onnx, eager" in caplog.text and "chose" in caplog.text
    chosen = model.backend.name
    assert chosen in ("onnx", "eager")
    record = artifact("auto", auto.decision_key(model), "json").record
    decision = json.loads(record.read_text())
    assert decision["chosen"] == chosen and set(decision["seconds"]) == {"onnx", "eager"}

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="depth_anything.backends"):
        again = DepthAnything.from_pretrained(checkpoints["v2"], device="cpu", backend="auto")
    assert again.backend.name == chosen and "measured before" in caplog.text and "measuring" not in caplog.text
    image = photos()[:1]
    assert relative(again.infer(image, input_size=INPUT_SIZE),
                    DepthAnything.from_pretrained(checkpoints["v2"], device="cpu").infer(image, input_size=INPUT_SIZE)
                    ) < EXACT_TOLERANCE


def test_auto_skips_what_is_not_installed(checkpoints, monkeypatch):
    monkeypatch.setattr(auto, "PROBE_SIZE", (56, 70))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    model = DepthAnything.from_pretrained(checkpoints["metric_indoor"], device="cpu")
    chosen, seconds, dropped = auto.measure(model)
    assert chosen.name == "eager" and set(seconds) == {"eager"}
    assert "pip install" in dropped["onnx"]


def test_every_surface_offers_the_same_backends(capsys):
    from depth_anything.cli import build_parser

    sys.path.insert(0, str(REPO))
    assert {"eager", "compile", "onnx", "tensorrt", "auto"} <= set(BACKENDS)
    parser = build_parser()
    assert parser.parse_args(["--img-path", "x"]).backend == "eager"
    for name in BACKENDS:
        assert parser.parse_args(["--img-path", "x", "--backend", name]).backend == name
    with pytest.raises(SystemExit):
        parser.parse_args(["--img-path", "x", "--backend", "fast"])
    assert "invalid choice" in capsys.readouterr().err
