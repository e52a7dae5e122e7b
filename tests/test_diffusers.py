"""depth_anything.diffusers: the detector, control_image, and real (tiny, random) diffusers pipelines fed with it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tiny_pipelines  # noqa: F401  (first: makes sure `diffusers` is the library)
from checkpoints import write_checkpoint
from depth_anything import DepthAnything, normalize
from depth_anything.diffusers import (
    KNOWN_DEPTH_CONTROLNETS,
    DepthAnythingDetector,
    control_image,
    find_depth_controlnet,
)
from depth_anything.postprocess import to_uint8

REPO = Path(__file__).resolve().parents[1]
RES = 56  # detect_resolution: small, so the tests stay fast on a shared CPU
SD15_DEPTH = "lllyasviel/control_v11f1p_sd15_depth"
SD35_DEPTH = "stabilityai/stable-diffusion-3.5-large-controlnet-depth"
FLUX_DEPTH = "black-forest-labs/FLUX.1-Depth-dev"


def scene(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo stand-in with structure: a lit floor gradient, a disc and some texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    floor = y / max(height - 1, 1)
    cx, cy, r = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height, 0.25 * min(width, height)
    disc = ((x - cx) ** 2 + (y - cy) ** 2 < r**2).astype(np.float32)
    rgb = np.stack([0.6 * floor + 0.4 * disc, 0.3 + 0.5 * disc * (x / width), 1 - floor], axis=-1)
    rgb += 0.05 * rng.standard_normal(rgb.shape)
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def checkpoint(v2_vits_path) -> Path:
    return v2_vits_path  # conftest's random official-layout v2 ViT-S file


@pytest.fixture(scope="module")
def detector(checkpoint) -> DepthAnythingDetector:
    return DepthAnythingDetector.from_pretrained(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def model(v2_vits) -> DepthAnything:
    """The library's model, loaded separately from the same file."""
    return v2_vits


# ------------------------------------------------------------------------------------------ import hygiene


def test_importing_depth_anything_does_not_import_diffusers():
    snippet = (
        "import sys, depth_anything\n"
        "assert 'depth_anything.diffusers' not in sys.modules, 'depth_anything imported its diffusers helpers'\n"
        "import depth_anything.diffusers\n"
        "assert 'diffusers' not in sys.modules, 'depth_anything.diffusers imported diffusers'\n"
    )
    subprocess.run([sys.executable, "-c", snippet], cwd=REPO, check=True)


# ------------------------------------------------------------------------------ detector = library output


def test_detector_equals_library_infer_and_normalize(detector, model):
    image = scene(90, 66)
    expected = normalize(model.infer(image, input_size=RES))[0]
    assert expected.std() > 0.05  # a real depth map, not a flat one

    pt = detector(image, detect_resolution=RES, output_type="pt")
    assert pt.shape == (1, 3, 66, 90) and pt.dtype == torch.float32  # a batch of one, as diffusers reads tensors
    for channel in pt[0]:
        assert torch.equal(channel, expected)

    pil = detector(image, detect_resolution=RES)
    assert pil.mode == "RGB" and pil.size == image.size
    np.testing.assert_array_equal(np.asarray(pil), np.repeat(to_uint8(expected)[:, :, None], 3, axis=2))

    arr = detector(image, detect_resolution=RES, output_type="np")
    assert arr.shape == (1, 66, 90, 3) and arr.dtype == np.float32
    np.testing.assert_array_equal(arr[0, :, :, 1], expected.numpy())


def test_half_precision_detector_gives_float32_close_to_full(detector, checkpoint):
    image = scene(70, 56)
    half = DepthAnythingDetector.from_pretrained(checkpoint, device="cpu", dtype="bf16")
    assert half.to("cpu") is half and half.model.dtype == torch.bfloat16
    out = half(image, detect_resolution=RES, output_type="pt")
    assert out.dtype == torch.float32
    full = detector(image, detect_resolution=RES, output_type="pt")
    assert (out - full).abs().mean() < 0.05


def test_detect_resolution_changes_what_the_network_sees(detector):
    image = scene(90, 66)
    low = detector(image, detect_resolution=RES, output_type="pt")
    high = detector(image, detect_resolution=2 * RES, output_type="pt")
    assert low.shape == high.shape  # the output size does not follow detect_resolution ...
    assert (low - high).abs().max() > 1e-3  # ... the detail does


def test_tiled_detection_equals_library_tiled_infer(detector, model):
    image = scene(168, 126)
    expected = normalize(model.infer(image, input_size=RES, tiled=True, tile=RES))[0]
    tiled = detector(image, detect_resolution=RES, tiled=True, tile=RES, output_type="pt")
    assert torch.equal(tiled[0, 0], expected)
    plain = detector(image, detect_resolution=RES, output_type="pt")
    assert (tiled - plain).abs().max() > 1e-3  # the tiles add detail the single pass does not have
    sized = detector(image, detect_resolution=RES, tiled="auto", tile=RES, image_resolution=64)
    assert sized.size == (88, 64)  # 168 x 126: long side 85.3 -> 88
    with pytest.raises(ValueError, match="tiled must be False, True or 'auto'"):
        detector(image, detect_resolution=RES, tiled="yes")
    with pytest.raises(ValueError, match="14"):
        detector(image, detect_resolution=RES, tiled=True, tile=50)


def test_metric_model_is_near_white(tmp_path):
    path = write_checkpoint(tmp_path / "depth_anything_v2_metric_hypersim_vits.pth")
    metric = DepthAnythingDetector.from_pretrained(path, device="cpu")
    assert metric.model.is_metric
    image = scene(70, 56)
    metres = metric.model.infer(image, input_size=RES)
    out = metric(image, detect_resolution=RES, output_type="pt")[0, 0]
    assert torch.equal(out, normalize(metres, metric=True)[0])
    # nearest point (smallest distance) is white, farthest black
    assert out.flatten()[metres.flatten().argmin()] == 1.0 and out.flatten()[metres.flatten().argmax()] == 0.0


def test_list_in_list_out_batched_per_size(detector):
    images = [scene(90, 66, 0), scene(64, 64, 1), scene(90, 66, 2)]
    calls = []
    hook = detector.model.register_forward_hook(lambda module, args, out: calls.append(tuple(args[0].shape)))
    try:
        out = detector(images, detect_resolution=RES, output_type="pt")
    finally:
        hook.remove()
    assert len(calls) == 2  # one network call per same-size group
    assert sorted(batch for batch, *_ in calls) == [1, 2]
    assert isinstance(out, list) and [tuple(o.shape) for o in out] == [(3, 66, 90), (3, 64, 64), (3, 66, 90)]
    single = [detector(image, detect_resolution=RES, output_type="pt")[0] for image in images]
    for batched, alone in zip(out, single):
        torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)

    pils = detector(tuple(images), detect_resolution=RES)
    assert isinstance(pils, list) and [p.size for p in pils] == [(90, 66), (64, 64), (90, 66)]


def test_batch_tensor_in_batch_out_with_one_range(detector, model):
    frames = torch.stack([torch.from_numpy(np.asarray(scene(72, 48, s))).float() / 255 for s in range(3)])
    out = detector(frames, detect_resolution=RES, normalize="batch", output_type="pt")
    assert out.shape == (3, 3, 48, 72)
    expected = normalize(model.infer(frames, input_size=RES), "batch")
    assert torch.equal(out[:, 0], expected)
    assert out.amax().item() == 1.0 and out.amin().item() == 0.0
    # One range across the clip: not every frame reaches both white and black, unlike per-frame normalization.
    assert out.flatten(1).amax(1).lt(1.0).any() or out.flatten(1).amin(1).gt(0.0).any()
    per_frame = detector(frames, detect_resolution=RES, output_type="np")
    assert per_frame.shape == (3, 48, 72, 3)
    assert np.allclose(per_frame.reshape(3, -1).max(1), 1.0)


def test_batch_normalization_across_images_of_different_sizes(detector, model):
    images = [scene(90, 66, 0), scene(64, 64, 1)]
    out = detector(images, detect_resolution=RES, normalize="batch", output_type="pt")
    raw = model.infer(images, input_size=RES)
    low = min(d.min() for d in raw)
    high = max(d.max() for d in raw)
    for got, depth in zip(out, raw):
        torch.testing.assert_close(got[0], (depth - low) / (high - low), atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------------- sizes


def test_image_resolution_keeps_aspect_ratio(detector):
    wide = detector(scene(120, 90), detect_resolution=RES, image_resolution=64)
    assert wide.size == (88, 64)  # 120 x 90 -> short side 64, long side 85.3 -> nearest multiple of 8
    tall = detector(scene(90, 120), detect_resolution=RES, image_resolution=64)
    assert tall.size == (64, 88)
    # controlnet_aux would give 128 x 64 (both sides rounded to 64) for the 120 x 90 image: a 2:1 stretch.


def test_exact_size_crops_instead_of_stretching(detector):
    image = scene(120, 60)
    full = detector(image, detect_resolution=RES, output_type="pt")[0, 0]
    square = detector(image, detect_resolution=RES, size=(64, 64), output_type="pt")[0, 0]
    assert square.shape == (64, 64)
    # The square is restored straight from the network's map (no full-size map is made), so it is a resampling
    # of the centred 60 x 60 crop of the full-size depth, not of the whole image squeezed into a square.
    centre = normalize(full[:, 30:90])
    cropped = torch.nn.functional.interpolate(centre[None, None], size=(64, 64), mode="bilinear", antialias=True)[0, 0]
    squeezed = torch.nn.functional.interpolate(full[None, None], size=(64, 64), mode="bilinear", antialias=True)[0, 0]
    crop_error = (square - cropped).abs().mean()
    assert crop_error < 0.01  # two resamplings of one map differ only at its sharpest features
    assert (square - normalize(squeezed)).abs().mean() > 10 * crop_error
    assert detector(image, detect_resolution=RES, size=(96, 48)).size == (96, 48)


def test_sizes_follow_the_controlnet_rule(detector):
    image = scene(100, 75)
    assert detector(image, detect_resolution=RES, image_resolution=64, controlnet=FLUX_DEPTH).size == (80, 64)
    with pytest.raises(ValueError, match="multiples of 16 .black-forest-labs/FLUX.1-Depth-dev works in 16-pixel"):
        detector(image, detect_resolution=RES, size=(72, 64), controlnet=FLUX_DEPTH)
    with pytest.raises(ValueError, match="multiples of 8.*got 100, use 96 or 104"):
        detector(image, detect_resolution=RES, size=(100, 64))
    with pytest.raises(ValueError, match="multiples of 8"):
        detector(image, detect_resolution=RES, image_resolution=500)
    with pytest.raises(ValueError, match="not both"):
        detector(image, detect_resolution=RES, image_resolution=64, size=(64, 64))


# ------------------------------------------------------------------------------------ polarity by name


def test_known_controlnets_by_id_folder_file_and_model(tmp_path):
    assert find_depth_controlnet(SD35_DEPTH).far_is_white
    assert not find_depth_controlnet(SD15_DEPTH).far_is_white
    assert find_depth_controlnet("/hf/models--diffusers--controlnet-depth-sdxl-1.0/snapshots/abc").repo_id == (
        "diffusers/controlnet-depth-sdxl-1.0"
    )
    comfy_file = "C:\\ComfyUI\\models\\controlnet\\sd3.5_large_controlnet_depth.safetensors"
    assert find_depth_controlnet(comfy_file).far_is_white
    assert find_depth_controlnet("/models/control_v11f1p_sd15_depth/").repo_id == SD15_DEPTH
    assert find_depth_controlnet("someone/controlnet-canny") is None
    # a diffusers model remembers where it was loaded from
    from diffusers import ControlNetModel

    model = ControlNetModel(block_out_channels=(4, 8), down_block_types=("DownBlock2D", "DownBlock2D"),
                            norm_num_groups=2, layers_per_block=1, conditioning_embedding_out_channels=(4, 8))
    folder = tmp_path / "stable-diffusion-3.5-large-controlnet-depth"
    model.save_pretrained(folder)
    loaded = ControlNetModel.from_pretrained(folder)
    assert find_depth_controlnet(loaded).far_is_white
    from tiny_pipelines import tiny_sd15_pipeline

    pipe = tiny_sd15_pipeline()
    with pytest.raises(TypeError, match="Cannot tell which ControlNet"):
        find_depth_controlnet(pipe)  # built in memory: no name to go by
    pipe.register_modules(controlnet=loaded)
    assert find_depth_controlnet(pipe).far_is_white  # a pipeline is looked up by its ControlNet
    ids = [entry.repo_id for entry in KNOWN_DEPTH_CONTROLNETS]
    assert len(ids) == len(set(ids)) and all(entry.multiple in (8, 16) for entry in KNOWN_DEPTH_CONTROLNETS)


def test_far_is_white_controlnet_gets_inverted_image(detector):
    image = scene(72, 56)
    near_white = detector(image, detect_resolution=RES, output_type="pt", controlnet=SD15_DEPTH)
    far_white = detector(image, detect_resolution=RES, output_type="pt", controlnet=SD35_DEPTH)
    torch.testing.assert_close(far_white, 1 - near_white, atol=1e-6, rtol=0)
    forced = detector(image, detect_resolution=RES, output_type="pt", controlnet=SD35_DEPTH, invert=False)
    assert torch.equal(forced, near_white)


def test_unknown_controlnet_warns_and_keeps_near_white(detector):
    image = scene(72, 56)
    plain = detector(image, detect_resolution=RES, output_type="pt")
    with pytest.warns(UserWarning, match="not in depth_anything.diffusers.KNOWN_DEPTH_CONTROLNETS"):
        out = detector(image, detect_resolution=RES, output_type="pt", controlnet="me/my-depth-controlnet")
    assert torch.equal(out, plain)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        detector(image, detect_resolution=RES, output_type="pt", controlnet="me/my-depth-controlnet", invert=False)


# ------------------------------------------------------------------------------------------ control_image


def test_control_image_shapes_and_values():
    depth = torch.tensor([[0.0, 2.0], [1.0, 4.0]])
    pil = control_image(depth)
    assert pil.mode == "RGB" and pil.size == (2, 2)
    assert np.asarray(pil)[:, :, 0].tolist() == [[0, 128], [64, 255]]
    assert control_image(depth, output_type="np").shape == (1, 2, 2, 3)
    assert control_image(depth, output_type="pt").shape == (1, 3, 2, 2)
    batch = control_image(torch.stack([depth, 2 * depth]), output_type="pt", normalize="batch")
    assert batch.shape == (2, 3, 2, 2)
    assert batch[0].max().item() == 0.5 and batch[1].max().item() == 1.0
    pils = control_image(np.stack([depth.numpy()] * 3))
    assert isinstance(pils, list) and len(pils) == 3
    listed = control_image([depth, torch.ones(4, 6)], size=(8, 8), output_type="pt")
    assert [tuple(t.shape) for t in listed] == [(3, 8, 8), (3, 8, 8)]
    metric = control_image(torch.tensor([[1.0, 10.0]]), metric=True, output_type="pt")[0, 0]
    assert metric.tolist() == [[1.0, 0.0]]  # 1 m away is near: white
    percentile = control_image(torch.linspace(0, 1, 101).view(1, 101), normalize="percentile", output_type="pt")
    assert percentile[0, 0, 0, 0] == 0.0 and percentile[0, 0, 0, 50] == pytest.approx(0.5)


def test_control_image_errors_are_clear():
    depth = torch.rand(8, 8)
    with pytest.raises(ValueError, match="output_type 'jpg'.*'pil', 'np', 'pt'"):
        control_image(depth, output_type="jpg")
    with pytest.raises(ValueError, match="normalize 'minmax'"):
        control_image(depth, normalize="minmax")
    with pytest.raises(ValueError, match=r"\(H, W\) or \(B, H, W\)"):
        control_image(torch.rand(1, 1, 8, 8))
    with pytest.raises(TypeError, match="DepthAnythingDetector"):
        control_image(Image.new("RGB", (8, 8)))
    with pytest.raises(ValueError, match="empty"):
        control_image(torch.zeros(0, 8))
    with pytest.raises(ValueError, match="multiples of 8"):
        control_image(depth, size=(12, 8))
    for bad in ("512", (64,), (64, 64, 64), (64.0, 64), True):
        with pytest.raises(TypeError, match="size must be an int"):
            control_image(depth, size=bad)


# ---------------------------------------------------------------------------------------------- bad inputs


def test_detector_bad_inputs_are_clear(detector):
    image = scene(64, 48)
    with pytest.raises(ValueError, match="cannot read image"):
        detector("no-such-photo.jpg")  # paths are images too, as everywhere in the library
    with pytest.raises(TypeError, match="Unsupported image type dict"):
        detector({"image": 1})
    with pytest.raises(TypeError, match="Image 1 of 2: Unsupported image type NoneType"):
        detector([image, None], detect_resolution=RES)
    with pytest.raises(ValueError, match="empty side"):
        detector(Image.new("RGB", (0, 0)), detect_resolution=RES)
    with pytest.raises(ValueError, match="Image 0 of 1: .*empty side"):
        detector([np.zeros((0, 10, 3), np.uint8)], detect_resolution=RES)
    with pytest.raises(ValueError, match="output_type 'latent'"):
        detector(image, output_type="latent")
    with pytest.raises(ValueError, match="multiple of 14, got 512: use 504 or 518"):
        detector(image, detect_resolution=512)
    with pytest.raises(ValueError, match="multiple of 14"):
        detector(image, detect_resolution=0)
    with pytest.raises(TypeError, match="detect_resolution must be an int"):
        detector(image, detect_resolution=518.0)
    with pytest.raises(TypeError, match="DepthAnything model"):
        DepthAnythingDetector("depth_anything_v2_vits")


# ------------------------------------------------------------------------------- real diffusers pipelines


def _generate(pipe, control, embeds: dict, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    return pipe(
        image=control,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(seed),
        controlnet_conditioning_scale=scale,
        output_type="np",
        **embeds,
    ).images


def _check_conditioning_flows(pipe, embeds, control, other_control, size):
    first = _generate(pipe, control, embeds)
    again = _generate(pipe, control, embeds)
    other = _generate(pipe, other_control, embeds)
    assert first.shape[1:3] == (size[1], size[0])  # (height, width) = the control image's, as requested
    assert np.array_equal(first, again)  # same depth, same seed: identical
    assert np.abs(first - other).max() > 1e-5  # other depth: another image
    # and that difference comes through the ControlNet: without it, the two depths give the same image
    unconditioned = _generate(pipe, control, embeds, scale=0.0)
    assert np.array_equal(unconditioned, _generate(pipe, other_control, embeds, scale=0.0))
    return first


def test_sd15_controlnet_pipeline_takes_our_control_image(detector):
    from tiny_pipelines import SD_TEXT_DIM, tiny_sd15_pipeline

    pipe = tiny_sd15_pipeline()
    pipe.set_progress_bar_config(disable=True)
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randn(1, 8, SD_TEXT_DIM, generator=gen)
    embeds = dict(prompt_embeds=prompt, negative_prompt_embeds=torch.zeros_like(prompt), guidance_scale=5.0)

    photo = scene(150, 100)
    control = detector(photo, detect_resolution=RES, image_resolution=64, controlnet=SD15_DEPTH)
    assert control.size == (96, 64)
    other = detector(photo.transpose(Image.FLIP_LEFT_RIGHT), detect_resolution=RES, image_resolution=64)
    from_pil = _check_conditioning_flows(pipe, embeds, control, other, (96, 64))

    # float tensors in [0, 1] work as well as PIL, and give (up to 8-bit rounding) the same conditioning
    control_pt = detector(photo, detect_resolution=RES, image_resolution=64, output_type="pt")
    from_pt = _generate(pipe, control_pt, embeds)
    assert from_pt.shape == from_pil.shape and np.abs(from_pt - from_pil).max() < 1e-2


def test_sdxl_controlnet_pipeline_takes_a_batch_of_control_images(detector):
    from tiny_pipelines import SDXL_POOLED_DIM, SDXL_TEXT_DIM, tiny_sdxl_pipeline

    pipe = tiny_sdxl_pipeline()
    pipe.set_progress_bar_config(disable=True)
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randn(2, 8, SDXL_TEXT_DIM, generator=gen)
    pooled = torch.randn(2, SDXL_POOLED_DIM, generator=gen)
    embeds = dict(
        prompt_embeds=prompt, pooled_prompt_embeds=pooled, negative_prompt_embeds=torch.zeros_like(prompt),
        negative_pooled_prompt_embeds=torch.zeros_like(pooled), guidance_scale=5.0,
    )
    frames = [scene(100, 140, 0), scene(100, 140, 1)]
    size = (48, 64)  # (width, height), exact
    controls = detector(frames, detect_resolution=RES, size=size, normalize="batch", output_type="pt",
                        controlnet="diffusers/controlnet-depth-sdxl-1.0")
    assert isinstance(controls, list) and all(c.shape == (3, 64, 48) for c in controls)
    others = detector(frames[::-1], detect_resolution=RES, size=size, normalize="batch", output_type="pt")
    images = _check_conditioning_flows(pipe, embeds, controls, others, size)
    assert images.shape == (2, 64, 48, 3)


# ------------------------------------------------------------------------------------------------ examples

EXAMPLES = ("sd15_controlnet_depth.py", "sdxl_controlnet_depth.py", "flux_depth.py")


@pytest.mark.parametrize("script", EXAMPLES)
def test_example_help_works_offline(script, tmp_path):
    # --help must answer without the heavy libraries: make importing them fail.
    for name in ("torch", "diffusers", "depth_anything"):
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('--help imported {name}')\n")
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / script), "--help"], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: " + script)
    for flag in ("--image", "--prompt", "--depth-model", "--detect-resolution", "--tiled", "--resolution", "--offload"):
        assert flag in result.stdout


def _load_example(script: str):
    examples = str(REPO / "examples")
    sys.path.insert(0, examples)
    try:
        spec = importlib.util.spec_from_file_location(Path(script).stem, REPO / "examples" / script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(examples)
    return module


@pytest.fixture(scope="module")
def photo_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "photo.png"
    scene(140, 100).save(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES)
def test_example_runs_end_to_end_with_local_weights(script, checkpoint, photo_file, tmp_path):
    """Each example, run on saved tiny pipelines in place of the released weights (same loading code)."""
    from tiny_pipelines import save_flux_control, save_sd15, save_sdxl

    if script.startswith("flux"):
        model_args = ["--model", str(save_flux_control(tmp_path))]
    else:
        base, controlnet = (save_sd15 if script.startswith("sd15") else save_sdxl)(tmp_path)
        model_args = ["--base-model", str(base), "--controlnet", str(controlnet)]
    output, depth = tmp_path / "out" / "generated.png", tmp_path / "out" / "depth.png"
    argv = [
        "--image", str(photo_file), "--prompt", "a red house", "--output", str(output), "--save-depth", str(depth),
        "--depth-model", str(checkpoint), "--detect-resolution", str(RES), "--resolution", "64", "--steps", "2",
        "--device", "cpu", "--seed", "3", *model_args, *(["--tiled"] if script.startswith("sd15") else []),
    ]
    example = _load_example(script)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # local ControlNet folders are not in the known-names table
        example.main(argv)
    # 140 x 100 photo, short side 64: the long side 89.6 becomes 88 (multiple of 8), for Flux 96 (multiple of 16)
    width = 96 if script.startswith("flux") else 88
    assert Image.open(output).size == (width, 64)
    control = Image.open(depth)
    assert control.size == (width, 64) and control.mode == "RGB"
    assert np.ptp(np.asarray(control)) > 100  # a real depth map
    assert sorted(p.name for p in output.parent.iterdir()) == ["depth.png", "generated.png"]  # no temporary left

    # Nothing the user already has is overwritten without --overwrite, and no model is loaded before refusing.
    before = output.read_bytes()
    with pytest.raises(SystemExit, match="exists.*--overwrite"):
        example.main(argv)
    assert output.read_bytes() == before
