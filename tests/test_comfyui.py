"""The node pack on a real ComfyUI server: node definitions, results equal to the library's, the shipped
workflows, ControlNet sampling driven by our depth, progress, interruption and bad inputs.

One server serves the whole session (see tests/comfyui_server.py); models are random-initialised checkpoints in
the official layouts, written by tests/checkpoints.py and tests/tiny_sd15.py.
"""

from __future__ import annotations

import json
import shutil
import sys
import tomllib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from depth_anything import DepthAnything, DepthModel, colorize, condition, load_depth, normalize
from depth_anything.conditioning import value_ranges
from depth_anything.postprocess import to_uint16
from depth_anything.tiling import tile_grid
from checkpoints import write_checkpoint, write_video_checkpoint
from comfyui_server import REPO, comfyui, execution_error  # noqa: F401  (comfyui: the server fixture)
from tiny_sd15 import write_sd15_checkpoint, write_sd15_controlnet
from videos import clip_frames, make_video

OUR_NODES = {
    "DepthAnythingModelLoader": ["model_name", "family", "precision", "device", "backend"],
    "DepthAnythingEstimate": [
        "model", "image", "input_size", "normalization", "invert", "gamma", "batch_size", "tiling", "tile_size",
        "overlap", "focal_px", "resize_method",
    ],
    "DepthAnythingAllInOne": ["image", "model_name", "input_size", "normalization", "tiling"],
    "DepthAnythingColorize": ["depth", "colormap"],
    "DepthAnythingSaveDepth16": ["depth", "filename_prefix", "save_npy", "raw_depth"],
    "VideoDepthAnythingEstimate": ["model", "images", "input_size", "normalization", "invert", "gamma", "batch_size",
                                   "tiling", "tile_size", "overlap"],  # the last three optional: older graphs load
    "DepthAnythingSaveDepthEXR": ["raw_depth", "filename_prefix", "channel"],
    "DepthAnythingLoadDepth": ["depth_file"],
}  # fmt: skip
OUR_OUTPUTS = {
    "DepthAnythingModelLoader": ["DEPTH_ANYTHING_MODEL"],
    "DepthAnythingEstimate": ["IMAGE", "MASK", "DEPTH_ANYTHING_RAW", "MASK", "MASK"],
    "DepthAnythingAllInOne": ["IMAGE", "MASK"],
    "DepthAnythingColorize": ["IMAGE"],
    "DepthAnythingSaveDepth16": [],
    "VideoDepthAnythingEstimate": ["IMAGE", "MASK", "DEPTH_ANYTHING_RAW"],
    "DepthAnythingSaveDepthEXR": [],
    "DepthAnythingLoadDepth": ["IMAGE", "MASK", "DEPTH_ANYTHING_RAW", "STRING"],
}
OUTPUT_NODES = {"DepthAnythingSaveDepth16", "DepthAnythingSaveDepthEXR"}
MODEL_FILE = "depth_anything_v2_vits.pth"  # also the file of the known name depth_anything_v2_vits
VIDEO_MODEL_FILE = "video_depth_anything_vits.pth"  # the file of the known name video_depth_anything_vits
SIZE = 56  # input_size for tests: a multiple of 14, small for the CPU
WORKFLOWS = REPO / "workflows"
VIRTUAL_UI_NODES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}  # front-end only, never in /object_info


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def object_info(comfyui):
    return comfyui.get("/object_info")


@pytest.fixture(scope="session")
def depth_checkpoint(comfyui) -> Path:
    return write_checkpoint(comfyui.models_dir / "depth_anything" / MODEL_FILE, encoder="vits", seed=3)


def _scene(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A small RGB scene with structure at several scales (gradients, a disc, stripes)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    disc = ((x - width * 0.6) ** 2 + (y - height * 0.45) ** 2 < (min(width, height) * 0.25) ** 2).astype(np.float32)
    stripes = (np.sin(x / 3.0 + seed) > 0).astype(np.float32)
    rgb = np.stack([x / width, y / height * 0.8 + 0.2 * stripes, 0.3 + 0.6 * disc], -1)
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="session")
def input_images(comfyui) -> dict[str, Path]:
    """Test images in the server's input folder, including the names the shipped workflows load."""
    paths = {}
    for name, size in (("scene.png", (64, 48)), ("large.png", (168, 126)), ("example.png", (72, 56))):
        paths[name] = comfyui.input_dir / name
        Image.fromarray(_scene(*size)).save(paths[name])
    frames = [Image.fromarray(_scene(64, 48, seed)) for seed in range(3)]
    paths["frames.webp"] = comfyui.input_dir / "frames.webp"
    frames[0].save(paths["frames.webp"], save_all=True, append_images=frames[1:], lossless=True, duration=100)
    return paths


@pytest.fixture(scope="session")
def sd15_models(comfyui) -> tuple[str, str]:
    """Random SD1.5-shaped checkpoint and depth ControlNet; names differ from the shipped workflows' on purpose."""
    write_sd15_checkpoint(comfyui.models_dir / "checkpoints" / "tiny_sd15.safetensors")
    write_sd15_controlnet(comfyui.models_dir / "controlnet" / "tiny_sd15_depth_controlnet.pth")
    return "tiny_sd15.safetensors", "tiny_sd15_depth_controlnet.pth"


@pytest.fixture(scope="session")
def da3_checkpoints(comfyui, da3_mono_path) -> dict[str, Path]:
    """The random DA3MONO-LARGE repack in models/geometry_estimation, where ComfyUI core keeps it, also named as
    the metric model (one network, two families); links, so no copy of the 0.67 GB file is made."""
    folder = comfyui.models_dir / "geometry_estimation"
    links = {}
    for name in ("depth_anything_3_mono_large.safetensors", "depth_anything_3_metric_large.safetensors"):
        links[name] = folder / name
        if not links[name].exists():
            links[name].symlink_to(da3_mono_path)
    return links


@pytest.fixture(scope="session")
def video_checkpoint(comfyui) -> Path:
    return write_video_checkpoint(comfyui.models_dir / "depth_anything" / VIDEO_MODEL_FILE, encoder="vits", seed=4)


@pytest.fixture(scope="session")
def input_video(comfyui) -> Path:
    """The clip the newer-core video workflow loads: 3 frames of 64 x 48 at 12 fps with a sound track."""
    return make_video(comfyui.input_dir / "video.mp4", clip_frames(3), Fraction(12), audio_seconds=0.25)


@pytest.fixture(scope="session")
def workflow_stand_ins(comfyui, depth_checkpoint, video_checkpoint, input_images, input_video, da3_checkpoints):
    """Empty files under the diffusion model names the shipped workflows use, so that they pass validation;
    loading them fails at once in ComfyUI's own loader, which ends the run without sampling at 1024 px on a CPU."""
    for folder, name in (
        ("checkpoints", "v1-5-pruned-emaonly.safetensors"),
        ("checkpoints", "sd_xl_base_1.0.safetensors"),
        ("controlnet", "control_v11f1p_sd15_depth.pth"),
        ("controlnet", "controlnet-depth-sdxl-1.0.safetensors"),
    ):
        (comfyui.models_dir / folder / name).touch()
    # The file the saved-depth workflow's Load Depth reads, as its first run writes it.
    from depth_anything import save_depth

    saved = comfyui.output_dir / "depth_anything" / "saved_depth_00001_.exr"
    if not saved.exists():
        save_depth(saved, np.linspace(0, 1, 56 * 72, dtype=np.float32).reshape(56, 72))


def load_library_model(path: Path) -> DepthAnything:
    return DepthAnything.from_pretrained(path, device="cpu", dtype="fp32")


def read_image(path: Path) -> torch.Tensor:
    """An input image as ComfyUI's LoadImage gives it: float (1, H, W, 3) in [0, 1]."""
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)[None]


def depth_prompt(image="scene.png", model_name=MODEL_FILE, *, family="auto", **estimate) -> dict:
    """LoadImage -> loader -> estimate -> SaveImage (node 4) + Save Depth 16-bit with raw values (node 5)."""
    options = dict(input_size=SIZE, normalization="per_image", invert=False, gamma=1.0, batch_size=4,
                   tiling="off", tile_size=0, overlap=0)  # fmt: skip
    options.update(estimate)
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {
            "class_type": "DepthAnythingModelLoader",
            "inputs": {"model_name": model_name, "family": family, "precision": "auto", "device": "auto"},
        },
        "3": {"class_type": "DepthAnythingEstimate", "inputs": {"model": ["2", 0], "image": ["1", 0], **options}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "tests/depth"}},
        "5": {
            "class_type": "DepthAnythingSaveDepth16",
            "inputs": {"depth": ["3", 0], "filename_prefix": "tests/depth16", "save_npy": True, "raw_depth": ["3", 2]},
        },
    }


def saved_png(comfyui, outputs, node="4") -> np.ndarray:
    (path,) = comfyui.output_files(outputs, node)
    return np.asarray(Image.open(path))


# ------------------------------------------------------------------------------------------- node catalogue


def test_pack_imports_without_errors(comfyui, object_info):
    log = comfyui.log()
    import_lines = [line for line in log.splitlines() if "depth_anything_preprocessor_under_test" in line]
    assert any("seconds" in line for line in import_lines), log[-3000:]  # listed in "Import times"
    assert not any("IMPORT FAILED" in line or "Cannot import" in line for line in import_lines), import_lines
    assert set(OUR_NODES) <= set(object_info)


def test_a_node_pack_loaded_after_ours_still_imports_comfyuis_nodes(comfyui):
    # The probe (tests/nodes_probe.py) asks the import system where `nodes` is, after every pack has loaded.
    outputs = comfyui.run({"1": {"class_type": "NodesModuleProbe", "inputs": {}}})
    found_by_path, imported, has_core_nodes = outputs["1"]["text"]
    comfy_nodes = (comfyui.root / "nodes.py").resolve()
    assert Path(found_by_path).resolve() == comfy_nodes, f"`import nodes` would find {found_by_path}"
    assert Path(imported).resolve() == comfy_nodes and has_core_nodes == "True"
    assert not Path(found_by_path).resolve().is_relative_to(REPO)


@pytest.mark.parametrize("node", sorted(OUR_NODES))
def test_every_node_has_documented_inputs(object_info, node):
    info = object_info[node]
    inputs = {**info["input"]["required"], **info["input"].get("optional", {})}
    assert list(inputs) == OUR_NODES[node]
    assert info["category"] == "Depth Anything"
    assert len(info["description"]) > 40
    for name, spec in inputs.items():
        assert len(spec) == 2 and len(spec[1].get("tooltip", "")) > 15, f"{node}.{name} has no tooltip"
    assert list(info["output"]) == OUR_OUTPUTS[node]
    assert info["output_node"] == (node in OUTPUT_NODES)


def test_loader_lists_model_files_and_known_names(comfyui, depth_checkpoint):
    nested = write_checkpoint(comfyui.models_dir / "depth_anything" / "custom" / "depth_anything_v2_vits.safetensors")
    info = comfyui.get("/object_info/DepthAnythingModelLoader")["DepthAnythingModelLoader"]
    choices, options = info["input"]["required"]["model_name"]
    assert MODEL_FILE in choices and "custom/depth_anything_v2_vits.safetensors" in choices
    assert {"depth_anything_v2_vits", "depth_anything_v2_vitl", "depth_anything_vits14"} <= set(choices)
    assert "depth_anything_v2_metric_hypersim_vits" in choices
    assert options["default"] == "depth_anything_v2_vits"
    nested.unlink()


# ---------------------------------------------------------------------------------- results vs the library


def test_depth_equals_library_output(comfyui, depth_checkpoint, input_images):
    outputs = comfyui.run(depth_prompt())
    model = load_library_model(depth_checkpoint)
    raw = model.infer(read_image(input_images["scene.png"]), input_size=SIZE)
    expected = normalize(raw)[0]

    png = saved_png(comfyui, outputs)  # SaveImage: 8-bit RGB, the three channels equal
    assert png.shape == (48, 64, 3) and (png[..., 0] == png[..., 2]).all()
    assert np.abs(png[..., 0].astype(int) - (expected.numpy() * 255)).max() <= 1.0
    assert png[..., 0].std() > 10  # a real map, not a flat one

    (png16,) = comfyui.output_files(outputs, "5")
    stored = np.asarray(Image.open(png16))
    assert stored.dtype == np.uint16 and stored.shape == (48, 64)
    assert np.abs(stored.astype(int) - to_uint16(expected).astype(int)).max() <= 1
    values = np.load(png16.with_suffix(".npy"))
    assert values.dtype == np.float32
    np.testing.assert_allclose(values, raw[0].numpy(), rtol=1e-4, atol=1e-4)
    assert not list(png16.parent.glob("*.partial"))


def test_metric_model_gives_metres_and_precision_reaches_the_model(comfyui, input_images):
    name = "depth_anything_v2_metric_hypersim_vits.pth"
    path = write_checkpoint(comfyui.models_dir / "depth_anything" / name, seed=5)
    image = read_image(input_images["scene.png"])
    metric = DepthAnything.from_pretrained(path, device="cpu", dtype="fp32")
    assert metric.is_metric and metric.max_depth == 20.0
    metres = metric.infer(image, input_size=SIZE)

    outputs = comfyui.run(depth_prompt(model_name=name, gamma=1.05))
    (png16,) = comfyui.output_files(outputs, "5")
    stored = np.load(png16.with_suffix(".npy"))
    np.testing.assert_allclose(stored, metres[0].numpy(), rtol=1e-4, atol=1e-4)  # metres, not normalized
    assert 0 < stored.min() and stored.max() <= 20.0 and stored.max() - stored.min() > 0.5
    near_white = normalize(metres, metric=True, gamma=1.05)[0].numpy()  # inverse depth: near = 1
    assert np.abs(saved_png(comfyui, outputs)[..., 0].astype(int) - near_white * 255).max() <= 1.0

    prompt = depth_prompt(model_name=name, gamma=1.05)
    prompt["2"]["inputs"]["precision"] = "bf16"
    half = DepthAnything.from_pretrained(path, device="cpu", dtype="bf16").infer(image, input_size=SIZE)
    expected = normalize(half, metric=True, gamma=1.05)[0].numpy()
    png = saved_png(comfyui, comfyui.run(prompt))[..., 0].astype(int)
    assert np.abs(png - expected * 255).max() <= 1.0
    assert not torch.equal(half, metres)  # bf16 really ran: its values differ from fp32's


def test_all_in_one_and_colorize_equal_library_output(comfyui, depth_checkpoint, input_images):
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "scene.png"}},
        "2": {
            "class_type": "DepthAnythingAllInOne",
            "inputs": {"image": ["1", 0], "model_name": "depth_anything_v2_vits", "input_size": SIZE,
                       "normalization": "percentile", "tiling": "off"},
        },  # fmt: skip
        "3": {"class_type": "DepthAnythingColorize", "inputs": {"depth": ["2", 0], "colormap": "inferno"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "tests/colour"}},
        "5": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 1]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "tests/mask"}},
    }
    outputs = comfyui.run(prompt)
    model = load_library_model(depth_checkpoint)
    depth = normalize(model.infer(read_image(input_images["scene.png"]), input_size=SIZE), "percentile")
    colour = colorize(depth, "inferno")[0].numpy() * 255
    assert np.abs(saved_png(comfyui, outputs, "4").astype(int) - colour).max() <= 1.0
    assert np.abs(saved_png(comfyui, outputs, "6")[..., 0].astype(int) - depth[0].numpy() * 255).max() <= 1.0


def test_batch_normalization_and_16_bit_files_per_frame(comfyui, depth_checkpoint, input_images):
    prompt = depth_prompt("frames.webp", "depth_anything_v2_vits", normalization="batch", batch_size=2)
    outputs = comfyui.run(prompt)
    frames = Image.open(input_images["frames.webp"])
    batch = torch.cat([read_image_frame(frames, i) for i in range(3)])
    model = load_library_model(depth_checkpoint)
    expected = normalize(model.infer(batch, input_size=SIZE, batch_size=2), "batch")
    saved = comfyui.output_files(outputs, "5")
    assert len(saved) == 3 and len(set(saved)) == 3
    for path, want in zip(saved, expected):
        assert np.abs(np.asarray(Image.open(path)).astype(int) - to_uint16(want).astype(int)).max() <= 1
    # One range for the clip: not every frame spans 0-65535 as each would with per-image normalization.
    stored = [np.asarray(Image.open(path)) for path in saved]
    assert not all(s.min() == 0 and s.max() == 65535 for s in stored)


def read_image_frame(image: Image.Image, index: int) -> torch.Tensor:
    image.seek(index)
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)[None]


def test_tiled_depth_equals_library_and_reports_every_tile(comfyui, depth_checkpoint, input_images):
    prompt = depth_prompt("large.png", tiling="on", tile_size=70, overlap=14)
    entry, events = comfyui.run_with_events(prompt)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    model = load_library_model(depth_checkpoint)
    image = read_image(input_images["large.png"])
    raw = model.infer(image, input_size=SIZE, tiled=True, tile=70, overlap=14)
    (png16,) = comfyui.output_files(entry["outputs"], "5")
    np.testing.assert_allclose(np.load(png16.with_suffix(".npy")), raw[0].numpy(), rtol=1e-4, atol=1e-4)
    untiled = model.infer(image, input_size=SIZE)
    assert not torch.allclose(raw, untiled, atol=1e-3)  # tiling really happened

    grid = tile_grid(126, 168, tile=70, overlap=14, model_size=SIZE)
    progress = [d for kind, d in events if kind == "progress" and d.get("node") == "3"]
    assert progress and progress[-1]["value"] == progress[-1]["max"] == 1 + len(grid)


# ------------------------------------------------------------------------------------- caching and progress


def _model_loads(comfyui) -> int:
    return comfyui.log().count("Requested to load DepthAnythingModule")


def test_model_is_cached_across_prompts_and_reloaded_when_the_file_changes(comfyui, depth_checkpoint, input_images):
    name = "cache_test/depth_anything_v2_vits.pth"
    path = write_checkpoint(comfyui.models_dir / "depth_anything" / name, seed=11)
    first = saved_png(comfyui, comfyui.run(depth_prompt(model_name=name, gamma=1.1)))
    loads = _model_loads(comfyui)
    entry, events = comfyui.run_with_events(depth_prompt(model_name=name, gamma=1.1, input_size=2 * SIZE))
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    executed = {d["node"] for kind, d in events if kind == "executing" and d.get("node")}
    assert "3" in executed and "2" not in executed  # ComfyUI kept the loader's output
    assert _model_loads(comfyui) == loads
    progress = [d for kind, d in events if kind == "progress" and d.get("node") == "3"]
    assert progress[-1]["value"] == progress[-1]["max"] == 1

    comfyui.run(depth_prompt(model_name=MODEL_FILE, gamma=1.1))
    loads = _model_loads(comfyui)
    comfyui.run(depth_prompt(model_name="depth_anything_v2_vits", gamma=1.1))  # the known name of that file
    assert _model_loads(comfyui) == loads  # one model in memory for both names

    write_checkpoint(path, seed=12)  # same name, new weights: must not be served from any cache
    changed = saved_png(comfyui, comfyui.run(depth_prompt(model_name=name, gamma=1.1)))
    assert np.abs(changed.astype(int) - first.astype(int)).max() > 5
    model = load_library_model(path)
    expected = normalize(model.infer(read_image(input_images["scene.png"]), input_size=SIZE), gamma=1.1)[0]
    assert np.abs(changed[..., 0].astype(int) - expected.numpy() * 255).max() <= 1.0


def test_interrupt_stops_the_estimate_between_chunks(comfyui, depth_checkpoint, input_images):
    prompt = depth_prompt(batch_size=1, gamma=1.3)
    prompt["6"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 400}}
    prompt["3"]["inputs"]["image"] = ["6", 0]

    def interrupt_at_first_progress(kind, data):
        if kind == "progress" and data.get("node") == "3" and data["value"] == 1:
            comfyui.post("/interrupt", {})

    entry, events = comfyui.run_with_events(prompt, on_event=interrupt_at_first_progress)
    interrupted = [d for kind, d in events if kind == "execution_interrupted"]
    assert interrupted and interrupted[0]["node_id"] == "3", [kind for kind, _ in events]
    assert entry["status"]["status_str"] == "error" and "4" not in entry["outputs"]
    progress = [d for kind, d in events if kind == "progress" and d.get("node") == "3"]
    assert progress[-1]["max"] == 400 and progress[-1]["value"] < 50  # stopped after a chunk or two, not at 400
    assert comfyui.run(depth_prompt(gamma=1.35))  # the next prompt runs normally


# --------------------------------------------------------------------------------------------- bad inputs


def _refused(comfyui, prompt) -> str:
    status, answer = comfyui.queue(prompt)
    assert status == 400, answer
    return json.dumps(answer["node_errors"])


def _failed(comfyui, prompt) -> dict:
    status, answer = comfyui.queue(prompt)
    assert status == 200, answer
    entry = comfyui.wait(answer["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    return execution_error(entry)


def test_bad_inputs_give_clear_errors_and_the_server_recovers(comfyui, depth_checkpoint, input_images, sd15_models):
    folder = comfyui.models_dir / "depth_anything"

    missing = _refused(comfyui, depth_prompt(model_name="depth_anything_v2_vitx.pth"))
    assert "not found in" in missing and "models/depth_anything" in missing and "depth_anything_v2_vits" in missing

    outside = _refused(comfyui, depth_prompt(model_name="../checkpoints/tiny_sd15.safetensors"))
    assert "outside the Depth Anything model folders" in outside

    not_downloaded = _failed(comfyui, depth_prompt(model_name="depth_anything_v2_vitb"))
    assert not_downloaded["node_type"] == "DepthAnythingModelLoader"
    message = not_downloaded["exception_message"]
    assert "depth_anything_v2_vitb.pth" in message and "huggingface.co" in message
    assert str(comfyui.root / "models" / "depth_anything") in message

    (folder / "truncated_v2.pth").write_bytes(depth_checkpoint.read_bytes()[:100_000])
    truncated = _failed(comfyui, depth_prompt(model_name="truncated_v2.pth"))
    assert "truncated" in truncated["exception_message"] and "truncated_v2.pth" in truncated["exception_message"]

    shutil.copy(comfyui.models_dir / "controlnet" / sd15_models[1], folder / "controlnet_not_depth_v2.pth")
    wrong = _failed(comfyui, depth_prompt(model_name="controlnet_not_depth_v2.pth"))
    assert "not a Depth Anything checkpoint" in wrong["exception_message"]

    shutil.copy(depth_checkpoint, folder / "renamed.pth")
    unnamed = _failed(comfyui, depth_prompt(model_name="renamed.pth"))
    assert "'family' on the Load Depth Anything Model node" in unnamed["exception_message"]
    assert comfyui.run(depth_prompt(model_name="renamed.pth", family="v2", gamma=0.9))  # the advice works

    empty = _failed(comfyui, empty_batch_prompt(comfyui, sd15_models[0]))
    assert empty["node_type"] == "DepthAnythingEstimate" and "empty image batch" in empty["exception_message"]

    bad_size = _refused(comfyui, depth_prompt(input_size=500))
    assert "multiple of 14" in bad_size and "504" in bad_size
    bad_tiles = _refused(comfyui, depth_prompt(tiling="on", tile_size=140, overlap=140))
    assert "overlap must be smaller than tile_size (140), got 140" in bad_tiles

    assert comfyui.alive()
    outputs = comfyui.run(depth_prompt(gamma=0.8))  # the server still works
    assert saved_png(comfyui, outputs).shape == (48, 64, 3)


def empty_batch_prompt(comfyui, checkpoint: str) -> dict:
    """A zero-image IMAGE batch from core nodes only: a saved latent with no samples, decoded."""
    from safetensors.torch import save_file

    save_file({"latent_tensor": torch.zeros(0, 4, 8, 8)}, str(comfyui.input_dir / "no_frames.latent"))
    prompt = depth_prompt(gamma=0.7)
    prompt["6"] = {"class_type": "LoadLatent", "inputs": {"latent": "no_frames.latent"}}
    prompt["7"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}}
    prompt["8"] = {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["7", 2]}}
    prompt["3"]["inputs"]["image"] = ["8", 0]
    return prompt


# ------------------------------------------------------------------------------------- one pipeline


@pytest.mark.parametrize("invert, gamma", [(False, 1.0), (True, 1.7)])
def test_one_image_gives_the_same_depth_on_every_surface(comfyui, depth_checkpoint, input_images, tmp_path, invert,
                                                         gamma):
    """The library, the command line, the diffusers detector and the ComfyUI estimate node walk the same stages:
    the same raw depth, and with the same options the same conditioning."""
    from depth_anything import condition
    from depth_anything.cli import main
    from depth_anything.diffusers import DepthAnythingDetector

    source = input_images["scene.png"]
    model = load_library_model(depth_checkpoint)
    raw = model.infer(source, input_size=SIZE)[0]  # the library, from the file itself
    expected = condition(raw, invert=invert, gamma=gamma)
    assert raw.std() > 0.01

    cli_options = ["--checkpoint", depth_checkpoint, "--img-path", source, "--input-size", SIZE, "-q"]
    look = ["--gamma", gamma] + (["--invert"] if invert else [])
    assert main([str(a) for a in [*cli_options, "--outdir", tmp_path / "npy", "--format", "npy"]]) == 0
    assert main([str(a) for a in [*cli_options, *look, "--outdir", tmp_path / "png", "--format", "png16"]]) == 0
    cli_raw = torch.from_numpy(np.load(tmp_path / "npy" / "scene.npy"))
    cli_png16 = np.asarray(Image.open(tmp_path / "png" / "scene.png"))

    detector = DepthAnythingDetector(model)
    detected = detector(Image.open(source), detect_resolution=SIZE, output_type="np", invert=invert, gamma=gamma)

    outputs = comfyui.run(depth_prompt(invert=invert, gamma=gamma))
    node_raw = torch.from_numpy(np.load(comfyui.output_files(outputs, "5")[0].with_suffix(".npy")))
    node_png16 = np.asarray(Image.open(comfyui.output_files(outputs, "5")[0]))

    for other in (cli_raw, node_raw):
        torch.testing.assert_close(other, raw, rtol=1e-6, atol=1e-6 * float(raw.abs().max()))
    torch.testing.assert_close(torch.from_numpy(detected[0, ..., 0]), expected, rtol=0, atol=1e-6)
    for png16 in (cli_png16, node_png16):
        assert np.abs(png16.astype(int) - to_uint16(expected).astype(int)).max() <= 1


# ------------------------------------------------------------------------------------ shipped workflows


def api_workflows() -> list[Path]:
    return sorted((WORKFLOWS / "api").glob("*.json"))


def ui_workflows() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.json"))


def test_every_workflow_comes_in_both_formats():
    names = {p.stem for p in api_workflows()}
    assert names == {p.stem for p in ui_workflows()}
    assert {"depth_map", "sd15_depth_controlnet", "sdxl_depth_controlnet", "highres_tiled_depth",
            "video_frames_depth", "video_depth_anything_controlnet", "video_depth_anything_controlnet_animated",
            "saved_depth_controlnet", "da3_depth_map"} <= names  # fmt: skip


@pytest.mark.parametrize("path", api_workflows(), ids=lambda p: p.stem)
def test_api_workflow_passes_server_validation(comfyui, workflow_stand_ins, path):
    prompt = sized_for_the_cpu(json.loads(path.read_text()))
    status, answer = comfyui.queue(prompt)
    assert status == 200 and answer["node_errors"] == {}, answer
    entry = comfyui.wait(answer["prompt_id"])
    error = execution_error(entry)
    uses_diffusion = any(n["class_type"] == "KSampler" for n in prompt.values())
    if uses_diffusion:  # the empty stand-in checkpoints stop it in ComfyUI's loaders, after our nodes ran
        assert error and error["node_type"] in ("CheckpointLoaderSimple", "ControlNetLoader"), error
    else:
        assert error is None, error
        saved = [n for n, out in entry["outputs"].items() if out.get("images")]
        assert saved


def sized_for_the_cpu(prompt: dict) -> dict:
    """The same graph with the depth network and frame scaling at test sizes (a video workflow's depth output
    runs before the stand-in diffusion checkpoint fails; at 518 px it would take minutes on a CPU)."""
    for node in prompt.values():
        if "input_size" in node["inputs"]:
            node["inputs"]["input_size"] = SIZE
        if node["class_type"] == "ImageScale":
            node["inputs"]["width"] = 64
        if node["class_type"] == "VideoDepthAnythingEstimate":
            node["inputs"]["batch_size"] = 32  # the whole window at once: same depth, faster on a CPU
    return prompt


@pytest.mark.parametrize("path", ui_workflows(), ids=lambda p: p.stem)
def test_ui_workflow_type_checks_against_object_info(comfyui, workflow_stand_ins, path):
    object_info = comfyui.get("/object_info")  # fresh: model lists include the stand-ins
    check_ui_workflow(json.loads(path.read_text()), object_info, path.name)


def check_ui_workflow(ui: dict, object_info: dict, name: str) -> None:
    """Every node of a UI workflow against its definition (inputs, widget values, outputs), and every link typed."""
    nodes = {n["id"]: n for n in ui["nodes"]}
    for node in ui["nodes"]:
        if node["type"] in VIRTUAL_UI_NODES:
            continue
        assert node["type"] in object_info, node["type"]
        info = object_info[node["type"]]
        check_widget_values(node, info)
        linked = [(name, spec[0]) for name, spec in _all_inputs(info) if not _is_widget(spec[0])]
        assert [(i["name"], i["type"]) for i in node["inputs"] if "widget" not in i] == linked
        widgets = {name: spec[0] for name, spec in _all_inputs(info) if _is_widget(spec[0])}
        for fed in (i for i in node["inputs"] if "widget" in i):  # a widget given by a link (e.g. a video's fps)
            assert fed["widget"]["name"] == fed["name"] and widgets.get(fed["name"]) == fed["type"], fed
            assert fed["link"] is not None
        outputs = info["output"]
        assert [o["type"] for o in node["outputs"]] == list(outputs)
        for input_name, spec in info["input"]["required"].items():
            if not _is_widget(spec[0]):
                slot = next(i for i in node["inputs"] if i["name"] == input_name)
                assert slot["link"] is not None, f"{name}: {node['type']}.{input_name} is not connected"
    link_ids = set()
    for link_id, source, source_slot, target, target_slot, kind in ui["links"]:
        link_ids.add(link_id)
        out = nodes[source]["outputs"][source_slot]
        inp = nodes[target]["inputs"][target_slot]
        assert out["type"] == inp["type"] == kind, (link_id, out, inp)
        assert link_id in (out["links"] or []) and inp["link"] == link_id
    for node in ui["nodes"]:
        for inp in node.get("inputs", []):
            assert inp["link"] is None or inp["link"] in link_ids


def test_ui_and_api_workflows_describe_the_same_graph(object_info):
    for ui_path in ui_workflows():
        ui = json.loads(ui_path.read_text())
        api = json.loads((WORKFLOWS / "api" / ui_path.name).read_text())
        links = {link[0]: link for link in ui["links"]}
        real = [n for n in ui["nodes"] if n["type"] not in VIRTUAL_UI_NODES]
        assert {str(n["id"]) for n in real} == set(api), ui_path.name
        for node in real:
            entry = api[str(node["id"])]
            assert entry["class_type"] == node["type"]
            info = object_info[node["type"]]
            values = iter(node["widgets_values"])
            fed = {i["name"] for i in node["inputs"] if "widget" in i}  # widgets given by a link: checked below
            for name, spec in _all_inputs(info):
                if _is_widget(spec[0]):
                    value = next(values)
                    if name not in fed:
                        assert entry["inputs"].get(name) == value, (ui_path.name, node["type"], name)
                    for _ in _extra_widgets(name, spec):
                        next(values)
            for inp in node["inputs"]:
                if inp["link"] is not None:
                    _, source, slot, *_ = links[inp["link"]]
                    assert entry["inputs"][inp["name"]] == [str(source), slot]


def _all_inputs(info):
    return [*info["input"]["required"].items(), *info["input"].get("optional", {}).items()]


def _is_widget(kind) -> bool:
    return isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN")


def _extra_widgets(name, spec) -> list[str]:
    """Widgets the front end adds after an input: seed control, image upload."""
    options = spec[1] if len(spec) > 1 else {}
    extra = []
    if spec[0] == "INT" and (name in ("seed", "noise_seed") or options.get("control_after_generate")):
        extra.append("control")
    if options.get("image_upload") or options.get("video_upload"):
        extra.append("upload")
    return extra


def check_widget_values(node, info):
    values = list(node["widgets_values"])
    for name, spec in _all_inputs(info):
        kind = spec[0]
        if not _is_widget(kind):
            continue
        options = spec[1] if len(spec) > 1 else {}
        assert values, f"{node['type']}: no value for {name}"
        value = values.pop(0)
        if isinstance(kind, list):
            assert value in kind, f"{node['type']}.{name}: {value!r} not in {kind[:20]}"
        elif kind == "INT":
            assert isinstance(value, int) and not isinstance(value, bool)
        elif kind == "FLOAT":
            assert isinstance(value, (int, float)) and not isinstance(value, bool)
        elif kind == "STRING":
            assert isinstance(value, str)
        elif kind == "BOOLEAN":
            assert isinstance(value, bool)
        if kind in ("INT", "FLOAT"):
            assert options.get("min", value) <= value <= options.get("max", value), (node["type"], name, value)
        for extra in _extra_widgets(name, spec):
            marker = values.pop(0)
            assert marker in (("fixed", "increment", "decrement", "randomize") if extra == "control" else ("image",))
    assert not values, f"{node['type']}: extra widget values {values}"


# --------------------------------------------------------------------------------- ControlNet sampling


@pytest.mark.slow
def test_sd15_controlnet_workflow_samples_with_our_depth_as_hint(comfyui, depth_checkpoint, input_images, sd15_models):
    checkpoint, controlnet = sd15_models

    def shrunk(invert: bool) -> dict:
        prompt = json.loads((WORKFLOWS / "api" / "sd15_depth_controlnet.json").read_text())
        for seed, node in enumerate(n for n in prompt.values() if n["class_type"] == "CLIPTextEncode"):
            node.update(class_type="TestConditioning", inputs={"seed": seed})  # the tiny checkpoint has no CLIP
        by_class = {n["class_type"]: n["inputs"] for n in prompt.values()}
        by_class["LoadImage"]["image"] = "scene.png"
        by_class["DepthAnythingEstimate"].update(input_size=SIZE, invert=invert)
        by_class["CheckpointLoaderSimple"]["ckpt_name"] = checkpoint
        by_class["ControlNetLoader"]["control_net_name"] = controlnet
        by_class["EmptyLatentImage"].update(width=64, height=64)
        by_class["KSampler"].update(steps=1)
        by_class["SaveImage"]["filename_prefix"] = f"tests/sd15_{invert}"
        return prompt

    results = {}
    for invert in (False, True):
        entry, events = comfyui.run_with_events(shrunk(invert))
        assert entry["status"]["status_str"] == "success", execution_error(entry)
        save = next(i for i, n in shrunk(invert).items() if n["class_type"] == "SaveImage")
        (path,) = comfyui.output_files(entry["outputs"], save)
        results[invert] = np.asarray(Image.open(path)).astype(int)
        sampler = next(i for i, n in shrunk(invert).items() if n["class_type"] == "KSampler")
        assert any(kind == "progress" and d.get("node") == sampler for kind, d in events)  # it really sampled
    image = results[False]
    assert image.shape == (64, 64, 3) and image.std() > 1
    # The hint reaches the UNet: the same seed and prompt with the inverted depth gives another image.
    assert np.abs(results[True] - image).mean() > 0.01


# ------------------------------------------------------------------------------------------- packaging


def test_registry_metadata_and_requirements_for_comfyui_manager():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    comfy = pyproject["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["Icon"]
    assert pyproject["project"]["urls"]["Repository"].startswith("https://")
    requirements = [
        line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()
    ]
    requirements = [r for r in requirements if r]
    # torch and torchvision come with ComfyUI; letting pip touch them can swap a CUDA build for a CPU one.
    library = [d for d in pyproject["project"]["dependencies"] if not d.startswith(("torch>", "torch=", "torchvision"))]
    assert sorted(requirements) == sorted(library)
    # What ComfyUI-Manager runs, without network: everything is already installed here, so pip resolves offline.
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "-r", str(REPO / "requirements.txt")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------------- Video Depth Anything


def video_prompt(images=("1", 0), model_name=VIDEO_MODEL_FILE, **estimate) -> dict:
    """LoadImage (animated frames) -> loader -> Video Depth Anything -> SaveImage (4) + Save Depth 16-bit (5)."""
    options = dict(input_size=SIZE, normalization="batch", invert=False, gamma=1.0, batch_size=32)
    options.update(estimate)
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "frames.webp"}},
        "2": {
            "class_type": "DepthAnythingModelLoader",
            "inputs": {"model_name": model_name, "family": "auto", "precision": "auto", "device": "auto"},
        },
        "3": {"class_type": "VideoDepthAnythingEstimate", "inputs": {"model": ["2", 0], "images": list(images),
                                                                      **options}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "tests/video_depth"}},
        "5": {
            "class_type": "DepthAnythingSaveDepth16",
            "inputs": {"depth": ["3", 0], "filename_prefix": "tests/video16", "save_npy": True, "raw_depth": ["3", 2]},
        },
    }  # fmt: skip


def test_video_depth_node_equals_library_infer_video_and_counts_frames(comfyui, video_checkpoint, input_images):
    info = comfyui.get("/object_info/DepthAnythingModelLoader")["DepthAnythingModelLoader"]
    choices = info["input"]["required"]["model_name"][0]
    assert VIDEO_MODEL_FILE in choices
    assert {"video_depth_anything_vits", "video_depth_anything_vitl", "metric_video_depth_anything_vits"} <= set(choices)

    entry, events = comfyui.run_with_events(video_prompt(gamma=1.2))
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    frames = Image.open(input_images["frames.webp"])
    batch = torch.cat([read_image_frame(frames, i) for i in range(3)])
    model = DepthModel.from_pretrained(video_checkpoint, device="cpu", dtype="fp32")
    assert model.family.temporal and model.family.name == "video"
    raw = model.infer_video(batch, input_size=SIZE, batch_size=32)
    saved = comfyui.output_files(entry["outputs"], "5")
    assert len(saved) == 3
    expected = condition(raw, normalize="batch", gamma=1.2)  # one range over the clip
    for path, want_raw, want in zip(saved, raw, expected):
        np.testing.assert_allclose(np.load(path.with_suffix(".npy")), want_raw.numpy(), rtol=1e-4,
                                   atol=1e-4 * float(raw.abs().max()))
        assert np.abs(np.asarray(Image.open(path)).astype(int) - to_uint16(want).astype(int)).max() <= 1
    clip_range = value_ranges(raw, normalize="batch")[0]
    for path in saved:  # each frame's file says which model made it and records the clip's one range
        about = load_depth(path).metadata
        assert (about.family, about.normalize, about.gamma, about.input_size) == ("video", "batch", 1.2, SIZE)
        np.testing.assert_allclose(about.value_range, (clip_range.low, clip_range.high), rtol=1e-5)
    progress = [d for kind, d in events if kind == "progress" and d.get("node") == "3"]
    assert progress and progress[-1]["value"] == progress[-1]["max"] == 3

    loads = _model_loads(comfyui)
    # The known name shares the file's cached model; the plain estimate node runs a video model's windows too.
    outputs = comfyui.run(depth_prompt("frames.webp", "video_depth_anything_vits", normalization="batch", gamma=1.25,
                                       batch_size=32))
    assert _model_loads(comfyui) == loads
    for path, want_raw in zip(comfyui.output_files(outputs, "5"), raw):
        np.testing.assert_allclose(np.load(path.with_suffix(".npy")), want_raw.numpy(), rtol=1e-4,
                                   atol=1e-4 * float(raw.abs().max()))
    # and with tiling on, tiles in time too: each tile position a clip through the windows
    outputs = comfyui.run(depth_prompt("frames.webp", "video_depth_anything_vits", normalization="batch",
                                       batch_size=32, tiling="on", tile_size=28))
    tiled = model.infer_video(batch, input_size=SIZE, batch_size=32, tiled=True, tile=28)
    assert (tiled - raw).abs().max() > 1e-3 * raw.abs().max()
    for path, want_raw in zip(comfyui.output_files(outputs, "5"), tiled):
        np.testing.assert_allclose(np.load(path.with_suffix(".npy")), want_raw.numpy(), rtol=1e-4,
                                   atol=1e-4 * float(tiled.abs().max()))
    outputs = comfyui.run(video_prompt(tiling="on", tile_size=28))  # the video node's optional tiling inputs
    for path, want_raw in zip(comfyui.output_files(outputs, "5"), tiled):
        np.testing.assert_allclose(np.load(path.with_suffix(".npy")), want_raw.numpy(), rtol=1e-4,
                                   atol=1e-4 * float(tiled.abs().max()))
        about = load_depth(path).metadata
        assert (about.tiling, about.tile, about.overlap) == ("on", 28, None)


def test_video_depth_node_stops_between_windows_and_refuses_an_empty_batch(comfyui, video_checkpoint, input_images,
                                                                           sd15_models):
    prompt = video_prompt(gamma=1.3)
    prompt["6"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 100}}  # 300 frames
    prompt["3"]["inputs"]["images"] = ["6", 0]

    def interrupt_at_first_progress(kind, data):
        if kind == "progress" and data.get("node") == "3" and data["value"] >= 1:
            comfyui.post("/interrupt", {})

    entry, events = comfyui.run_with_events(prompt, on_event=interrupt_at_first_progress)
    interrupted = [d for kind, d in events if kind == "execution_interrupted"]
    assert interrupted and interrupted[0]["node_id"] == "3", [kind for kind, _ in events]
    progress = [d for kind, d in events if kind == "progress" and d.get("node") == "3"]
    assert progress[-1]["max"] == 300 and progress[-1]["value"] <= 24 + 22  # a window or two, not 300 frames

    empty = empty_batch_prompt(comfyui, sd15_models[0])
    empty["3"] = {**video_prompt()["3"], "inputs": {**video_prompt()["3"]["inputs"], "images": ["8", 0]}}
    empty["2"]["inputs"]["model_name"] = VIDEO_MODEL_FILE
    failed = _failed(comfyui, empty)
    assert failed["node_type"] == "VideoDepthAnythingEstimate" and "got no frames" in failed["exception_message"]


def test_newer_core_video_workflow_fits_the_public_core_node_definitions(comfyui, workflow_stand_ins):
    """The LoadVideo workflow against ComfyUI core's video nodes as written from its public source
    (scripts/comfyui_core_video_nodes.json), whatever the server under test has."""
    object_info = comfyui.get("/object_info")  # fresh: model lists include the stand-ins
    core = {k: v for k, v in json.loads((REPO / "scripts" / "comfyui_core_video_nodes.json").read_text()).items()
            if not k.startswith("_")}  # fmt: skip
    ui = json.loads((WORKFLOWS / "video_depth_anything_controlnet.json").read_text())
    assert {"LoadVideo", "GetVideoComponents", "CreateVideo", "SaveVideo"} <= {n["type"] for n in ui["nodes"]}
    check_ui_workflow(ui, {**object_info, **core}, "video_depth_anything_controlnet.json")
    api = json.loads((WORKFLOWS / "api" / "video_depth_anything_controlnet.json").read_text())
    by_type = {entry["class_type"]: (node_id, entry["inputs"]) for node_id, entry in api.items()}
    components, _ = by_type["GetVideoComponents"]
    create = [entry["inputs"] for entry in api.values() if entry["class_type"] == "CreateVideo"]
    assert all(c["fps"] == [components, 2] and c["audio"] == [components, 1] for c in create)  # source fps, sound
    assert by_type["VideoDepthAnythingEstimate"][1]["images"] == by_type["VAEEncode"][1]["pixels"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["video_depth_anything_controlnet", "video_depth_anything_controlnet_animated"])
def test_video_workflows_generate_every_frame_from_video_depth(comfyui, workflow_stand_ins, sd15_models, name):
    prompt = sized_for_the_cpu(json.loads((WORKFLOWS / "api" / f"{name}.json").read_text()))
    for seed, node in enumerate(n for n in prompt.values() if n["class_type"] == "CLIPTextEncode"):
        node.update(class_type="TestConditioning", inputs={"seed": seed})  # the tiny checkpoint has no CLIP
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] == "CheckpointLoaderSimple":
            inputs["ckpt_name"] = sd15_models[0]
        elif node["class_type"] == "ControlNetLoader":
            inputs["control_net_name"] = sd15_models[1]
        elif node["class_type"] == "KSampler":
            inputs["steps"] = 1
        if "filename_prefix" in inputs:
            inputs["filename_prefix"] = inputs["filename_prefix"].replace("depth_anything/", "tests/")
    entry, events = comfyui.run_with_events(prompt)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    sampler = next(i for i, n in prompt.items() if n["class_type"] == "KSampler")
    assert any(kind == "progress" and d.get("node") == sampler for kind, d in events)  # it really sampled

    saves = [i for i, n in prompt.items() if n["class_type"] in ("SaveVideo", "SaveAnimatedWEBP")]
    assert len(saves) == 2  # the generated frames and the depth
    for node_id in saves:
        (path,) = comfyui.output_files(entry["outputs"], node_id)
        frames = read_frames(path)
        assert len(frames) == 3 and frames[0].shape[:2] == (48, 64), (node_id, path)
        assert np.abs(frames[0].astype(int) - frames[2].astype(int)).mean() > 0.5  # every frame its own


def read_frames(path: Path) -> list[np.ndarray]:
    """The frames of a saved video (.mp4) or animation (.webp)."""
    if path.suffix == ".mp4":
        import av

        with av.open(str(path)) as container:
            return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    with Image.open(path) as image:
        frames = []
        for index in range(image.n_frames):
            image.seek(index)
            frames.append(np.asarray(image.convert("RGB")))
        return frames


# ------------------------------------------------------------------------------------------- depth files


def load_depth_prompt(depth_file: str, prefix: str) -> dict:
    """Load Depth -> Save Depth EXR of its raw values (node 2), Save Depth 16-bit of its map (node 3), its info."""
    return {
        "1": {"class_type": "DepthAnythingLoadDepth", "inputs": {"depth_file": depth_file}},
        "2": {
            "class_type": "DepthAnythingSaveDepthEXR",
            "inputs": {"raw_depth": ["1", 2], "filename_prefix": prefix, "channel": "Z"},
        },
        "3": {
            "class_type": "DepthAnythingSaveDepth16",
            "inputs": {"depth": ["1", 0], "filename_prefix": prefix, "save_npy": False, "raw_depth": ["1", 2]},
        },
        "4": {"class_type": "TextProbe", "inputs": {"text": ["1", 3]}},
    }


def test_saved_depth_loads_back_with_its_values_from_exr_png16_and_npy(comfyui, depth_checkpoint, input_images):
    from depth_anything import load_depth

    prompt = depth_prompt(gamma=1.0)  # node 5: Save Depth 16-bit, with a .npy of the raw values
    prompt["6"] = {
        "class_type": "DepthAnythingSaveDepthEXR",
        "inputs": {"raw_depth": ["3", 2], "filename_prefix": "tests/exr", "channel": "Y"},
    }
    outputs = comfyui.run(prompt)
    (exr_path,) = comfyui.output_files(outputs, "6", key="files")
    (png_path,) = comfyui.output_files(outputs, "5")
    npy_path = png_path.with_suffix(".npy")
    raw = load_library_model(depth_checkpoint).infer(read_image(input_images["scene.png"]), input_size=SIZE)[0]
    exr = load_depth(exr_path)
    np.testing.assert_allclose(exr.values, raw.numpy(), rtol=1e-4, atol=1e-4)  # the estimate's raw depth
    assert np.array_equal(exr.values, np.load(npy_path))  # the same float32 in both files
    meta = exr.metadata
    assert (meta.model, meta.family, meta.encoder, meta.kind) == (MODEL_FILE, "v2", "vits", "disparity")
    assert (meta.input_size, meta.normalize, meta.tiling, meta.size) == (SIZE, "per_image", "off", (48, 64))
    png = load_depth(png_path)
    assert png.metadata.value_range == meta.value_range == load_depth(npy_path).metadata.value_range
    low, high = meta.value_range
    assert np.abs(png.values - exr.values).max() <= (high - low) / 65535 / 2 + 1e-6
    estimate_map = np.asarray(Image.open(png_path))

    choices = comfyui.get("/object_info/DepthAnythingLoadDepth")["DepthAnythingLoadDepth"]["input"]["required"]
    listed = choices["depth_file"][0]
    for name, path in (("exr", exr_path), ("png", png_path), ("npy", npy_path)):
        choice = f"{path.relative_to(comfyui.output_dir).as_posix()} [output]"
        assert choice in listed  # saved files are offered for loading
        out = comfyui.run(load_depth_prompt(choice, f"tests/reloaded_{name}"))
        again = load_depth(comfyui.output_files(out, "2", key="files")[0])
        if name == "png":  # to half a level of the range
            assert np.abs(again.values - exr.values).max() <= (high - low) / 65535 / 2 + 1e-6
        else:
            assert np.array_equal(again.values, exr.values)  # bit-exact
        (map_path,) = comfyui.output_files(out, "3")
        assert np.array_equal(np.asarray(Image.open(map_path)), estimate_map)  # the same depth map as the estimate's
        assert load_depth(map_path).metadata.value_range == meta.value_range
        info = out["4"]["text"][0]
        assert f"disparity from {MODEL_FILE}, v2, vits, 64x48" in info and "per_image" in info, info


def test_load_depth_refuses_bad_files_and_reads_plain_ones_as_unit_maps(comfyui):
    import OpenEXR

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(comfyui.input_dir / "depth8.png")
    eight_bit = _failed(comfyui, load_depth_prompt("depth8.png", "tests/bad"))
    assert eight_bit["node_type"] == "DepthAnythingLoadDepth"
    assert "depth8.png is an 8-bit grayscale PNG; depth files are 16-bit" in eight_bit["exception_message"]

    ones = np.ones((8, 8), np.float32)
    OpenEXR.File({"type": OpenEXR.scanlineimage}, {"R": ones, "G": ones, "B": ones}).write(
        str(comfyui.input_dir / "colour.exr")
    )
    colour = _failed(comfyui, load_depth_prompt("colour.exr", "tests/bad"))
    assert "colour.exr has no depth channel: it holds B, G, R" in colour["exception_message"]

    assert "Depth file 'missing.exr' not found" in _refused(comfyui, load_depth_prompt("missing.exr", "tests/bad"))
    outside = _refused(comfyui, load_depth_prompt("../output/tests/x.exr", "tests/bad"))
    assert "outside it" in outside

    levels = (np.arange(64, dtype=np.uint16) * 1000).reshape(8, 8)
    Image.fromarray(levels).save(comfyui.input_dir / "plain16.png")
    out = comfyui.run(load_depth_prompt("plain16.png", "tests/plain"))
    assert "no Depth Anything metadata" in out["4"]["text"][0] and "near = white" in out["4"]["text"][0]
    (map_path,) = comfyui.output_files(out, "3")
    assert np.array_equal(np.asarray(Image.open(map_path)), levels)  # read as 0..1, near = white: kept as it is


@pytest.mark.slow
def test_saved_depth_workflow_reloads_depth_and_feeds_it_to_the_controlnet(
    comfyui, depth_checkpoint, input_images, sd15_models
):
    from depth_anything import load_depth

    checkpoint, controlnet = sd15_models
    prompt = json.loads((WORKFLOWS / "api" / "saved_depth_controlnet.json").read_text())
    ids = {n["class_type"]: i for i, n in prompt.items() if n["class_type"] != "CLIPTextEncode"}
    for seed, node in enumerate(n for n in prompt.values() if n["class_type"] == "CLIPTextEncode"):
        node.update(class_type="TestConditioning", inputs={"seed": seed})  # the tiny checkpoint has no CLIP
    inputs = {name: prompt[i]["inputs"] for name, i in ids.items()}
    inputs["LoadImage"]["image"] = "scene.png"
    inputs["DepthAnythingEstimate"]["input_size"] = SIZE
    inputs["DepthAnythingSaveDepthEXR"]["filename_prefix"] = "tests/saved_depth"
    inputs["CheckpointLoaderSimple"]["ckpt_name"] = checkpoint
    inputs["ControlNetLoader"]["control_net_name"] = controlnet
    inputs["EmptyLatentImage"].update(width=64, height=64)
    inputs["KSampler"].update(steps=1)
    inputs["SaveImage"]["filename_prefix"] = "tests/saved_depth_sd15"

    # 1. The first part of the graph saves the depth.
    first = {i: prompt[i] for i in (ids["LoadImage"], ids["DepthAnythingModelLoader"], ids["DepthAnythingEstimate"],
                                    ids["DepthAnythingSaveDepthEXR"])}  # fmt: skip
    (exr_path,) = comfyui.output_files(comfyui.run(first), ids["DepthAnythingSaveDepthEXR"], key="files")
    raw = load_library_model(depth_checkpoint).infer(read_image(input_images["scene.png"]), input_size=SIZE)[0]
    np.testing.assert_allclose(load_depth(exr_path).values, raw.numpy(), rtol=1e-4, atol=1e-4)

    # 2. Load Depth reads it back and its map is the ControlNet's hint.
    inputs["DepthAnythingLoadDepth"]["depth_file"] = f"{exr_path.relative_to(comfyui.output_dir).as_posix()} [output]"

    def sampled(graph: dict) -> np.ndarray:
        entry, events = comfyui.run_with_events(graph)
        assert entry["status"]["status_str"] == "success", execution_error(entry)
        assert any(kind == "progress" and d.get("node") == ids["KSampler"] for kind, d in events)  # it sampled
        (path,) = comfyui.output_files(entry["outputs"], ids["SaveImage"])
        return np.asarray(Image.open(path)).astype(int)

    from_file = sampled(prompt)
    assert from_file.shape == (64, 64, 3) and from_file.std() > 1
    direct = json.loads(json.dumps(prompt))
    direct[ids["ControlNetApplyAdvanced"]]["inputs"]["image"] = [ids["DepthAnythingEstimate"], 0]
    assert np.array_equal(sampled(direct), from_file)  # the reloaded depth is the estimate's, as a hint


# ------------------------------------------------------------------------------------------ Depth Anything 3


def da3_prompt(model_name: str, **estimate) -> dict:
    """depth_prompt with a DA3 model, and the sky mask saved as an image (node 7)."""
    prompt = depth_prompt(model_name=model_name, **estimate)
    prompt["6"] = {"class_type": "MaskToImage", "inputs": {"mask": ["3", 4]}}  # sky_mask
    prompt["7"] = {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "tests/sky"}}
    return prompt


def test_da3_files_in_geometry_estimation_give_the_library_depth_and_sky(comfyui, da3_checkpoints, input_images):
    info = comfyui.get("/object_info/DepthAnythingModelLoader")["DepthAnythingModelLoader"]
    choices = info["input"]["required"]["model_name"][0]
    assert {"depth_anything_3_mono_large.safetensors", "depth_anything_3_metric_large.safetensors"} <= set(choices)
    assert {"depth_anything_3_mono_large", "depth_anything_3_small"} <= set(choices)  # known names too

    # the known name finds the file core's nodes use: no download, no second copy
    outputs = comfyui.run(da3_prompt("depth_anything_3_mono_large", normalization="percentile"))
    model = DepthModel.from_pretrained(da3_checkpoints["depth_anything_3_mono_large.safetensors"], device="cpu")
    depth, sky = model.infer(read_image(input_images["scene.png"]), input_size=SIZE, return_sky=True)
    assert 0 < sky.mean() < 1
    (png16,) = comfyui.output_files(outputs, "5")
    np.testing.assert_allclose(np.load(png16.with_suffix(".npy")), depth[0].numpy(), rtol=1e-4)  # relative depth
    expected = condition(depth, kind="relative_depth", normalize="percentile", far_mask=sky)[0].numpy()
    png = saved_png(comfyui, outputs)[..., 0].astype(int)
    assert np.abs(png - expected * 255).max() <= 1.0 and png[sky[0].bool().numpy()].max() == 0  # sky black
    assert (saved_png(comfyui, outputs, "7")[..., 0] == sky[0].numpy() * 255).all()
    assert not (comfyui.models_dir / "depth_anything" / "depth_anything_3_mono_large.safetensors").exists()


def test_da3_metric_node_takes_the_focal_length(comfyui, da3_checkpoints, input_images):
    name = "depth_anything_3_metric_large.safetensors"
    outputs = comfyui.run(da3_prompt(name, focal_px=420.0, resize_method="lower_bound"))
    model = DepthModel.from_pretrained(da3_checkpoints[name], device="cpu")
    lower = model.family.preprocessing.with_method("lower_bound")
    metres = model.infer(read_image(input_images["scene.png"]), input_size=SIZE, focal_px=420.0, preprocessing=lower)
    (png16,) = comfyui.output_files(outputs, "5")
    np.testing.assert_allclose(np.load(png16.with_suffix(".npy")), metres[0].numpy(), rtol=1e-4)
    v2 = comfyui.run(da3_prompt(MODEL_FILE))  # v1 / v2 models: an empty sky, the same depth as without these inputs
    assert saved_png(comfyui, v2, "7").max() == 0
