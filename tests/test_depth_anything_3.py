"""Depth Anything 3 against the official package (`depth-anything-3`, PyPI): the networks with the same seeded
random weights, the pre-processing on a table of shapes, every checkpoint layout, and the outputs (sky, metres,
focal lengths) the library, the command line and the diffusers detector give.

The official models are built from the release's own configs; their full state dicts (camera encoder / decoder
and ray branch included) are written in the Hub's layout and loaded by ours from those files.
"""

from __future__ import annotations

import gc
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from checkpoints import comfyui_da3_names, da3_mono_state, random_da3_state_dict, write_da3_checkpoint
from depth_anything import CheckpointError, DepthModel, ModelNotAvailableError, condition, list_models, resolve_checkpoint
from depth_anything.families.depth_anything_3 import (
    DEFAULT_FOCAL_35MM,
    DA3Preprocessing,
    DepthAnything3,
    equivalent_focal_px,
    set_sky_far,
)
from depth_anything.pipeline import NetworkBatch

official_cfg = pytest.importorskip("depth_anything_3.cfg")  # a dev dependency: a skip here counts as a failure
from depth_anything_3.registry import MODEL_REGISTRY  # noqa: E402
from depth_anything_3.utils.io.input_processor import InputProcessor  # noqa: E402

SIZES = [(98, 126), (70, 56)]  # network inputs (multiples of 14), landscape and portrait


def release_network(config: str, state: dict[str, torch.Tensor] | None = None, seed: int = 0):
    """The release's DepthAnything3Net built from its config, with `state` (cast to its float32 as loaded) or
    (None) every tensor seeded random as tests/checkpoints.py makes them; returns (network, state)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = official_cfg.create_object(official_cfg.load_config(MODEL_REGISTRY[config]))
    if state is None:
        state = random_da3_state_dict(seed=seed, shapes={k: tuple(v.shape) for k, v in net.state_dict().items()})
    net.load_state_dict(state, strict=True)
    return net.eval(), state


def release_outputs(net, seed: int) -> dict:
    """{network size: (pixels, the release's output)} for the sizes tested, from one network."""
    outputs = {}
    for size in SIZES:
        pixels = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed + size[0]))
        with torch.no_grad():
            outputs[size] = pixels, net(pixels[:, None])
    return outputs


@pytest.fixture(scope="module")
def released(tmp_path_factory, da3_mono_path):
    """{variant: (the release's outputs by network size, ours with the same weights)}.

    DA3MONO-LARGE from Comfy-Org's repack layout; DA3METRIC-LARGE, the same network (its weights shared, not
    copied); DA3-SMALL from a Hub folder (model.safetensors under `model.` with the camera encoder / decoder and
    ray branch, and the release's config.json). The release's networks are dropped once their outputs are in.
    """
    mono_net, _ = release_network("da3mono-large", da3_mono_state())
    mono_outputs = release_outputs(mono_net, seed=0)
    del mono_net
    small_net, small_state = release_network("da3-small", seed=1)
    small_outputs = release_outputs(small_net, seed=0)
    hub = tmp_path_factory.mktemp("da3_hub") / "DA3-SMALL"
    write_da3_checkpoint(hub / "model.safetensors", state=small_state, layout="hf")
    (hub / "config.json").write_text(json.dumps({"model_name": "da3-small"}))
    mono = DepthModel.from_pretrained(da3_mono_path, device="cpu", dtype="fp32")
    with torch.device("meta"):
        metric = DepthAnything3(mono.cfg, family="da3_metric")
    metric.load_state_dict(mono.state_dict(), assign=True)
    metric.checkpoint = mono.checkpoint
    return {
        "mono_large": (mono_outputs, mono),
        "metric_large": (mono_outputs, metric.eval()),
        "small": (small_outputs, DepthModel.from_pretrained(hub, device="cpu", dtype="fp32")),
    }


def test_metric_and_mono_are_one_network_in_the_release():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mono, metric = (official_cfg.load_config(MODEL_REGISTRY[c]) for c in ("da3mono-large", "da3metric-large"))
    assert mono == metric  # so the metric model's network output is the mono network's, with its own weights


def release_output(released, variant: str, size: tuple[int, int]):
    return released[variant][0][size]


def max_relative(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float(((ours - theirs).abs() / theirs.abs().clamp_min(1e-12)).max())


# ------------------------------------------------------------------------------------------------- parity


@pytest.mark.parametrize("variant", ["mono_large", "small"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_network_matches_the_release(released, variant, size):
    pixels, reference = release_output(released, variant, size)
    depth, sky = released[variant][1].predict_maps(pixels)
    assert max_relative(depth, reference["depth"][:, 0]) < 1e-4
    if variant == "mono_large":
        expected_sky = reference["sky"][:, 0]
        assert (sky - expected_sky.clamp(0, 1)).abs().max() < 1e-4
        if size == SIZES[0]:  # the sky rule changed this map: both parts are there, so the comparison covers it
            assert 0.02 < float((expected_sky >= 0.3).float().mean()) < 0.98
    else:
        assert sky is None and not released[variant][1].has_sky


def test_metric_network_gives_the_release_metres(released):
    height, width = SIZES[0]
    pixels, reference = release_output(released, "metric_large", SIZES[0])
    # an image of twice the network's size shot at 1000 px: 500 px at the network's resolution
    batch = NetworkBatch(pixels, ((2 * height, 2 * width),), (0,), (1000.0,))
    metres = released["metric_large"][1].predict(batch)
    assert max_relative(metres, reference["depth"][:, 0] * 500.0 / 300.0) < 1e-4  # focal x output / 300 (README)


SHAPES = [(480, 640), (1080, 1920), (300, 504), (504, 504), (377, 500), (640, 427), (60, 50), (100, 1000)]


@pytest.mark.parametrize("method", ["upper_bound", "lower_bound"])
def test_preprocessing_matches_the_release(method):
    rule = DA3Preprocessing(method=method)
    processor = InputProcessor()
    rng = np.random.default_rng(0)
    for height, width in SHAPES:
        image = (rng.random((height, width, 3)) * 255).astype(np.uint8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected, _, _ = processor([image], process_res=504, process_res_method=f"{method}_resize", num_workers=1)
        expected = expected[0]
        pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
        ours = rule(pixels, rule.net_size(height, width, max_size=10**5))[0]
        assert ours.shape == expected.shape, (method, height, width)
        levels = (ours - expected).abs() * torch.tensor(rule.std).view(3, 1, 1) * 255
        # OpenCV resizes 8-bit images in fixed point; a level apart here and there is all that differs
        assert levels.max() <= 2.01, (method, height, width)
        assert float((levels < 1e-3).float().mean()) > 0.99, (method, height, width)


def test_net_sizes_follow_the_release_rule():
    rule = DA3Preprocessing()
    assert rule.net_size(1080, 1920) == (280, 504)  # 504 x 284 first, then the nearest multiples of 14
    assert rule.net_size(1920, 1080) == (504, 280)
    assert rule.net_size(480, 640) == (378, 504)
    assert rule.with_method("lower_bound").net_size(1080, 1920) == (504, 896)
    assert rule.net_size(100, 20000) == (14, 504)  # the release would round 3 px down to 0 and fail
    # lower_bound on a thin panorama: capped at max_size (default 3 x input size) as every family is
    assert max(rule.with_method("lower_bound").net_size(100, 2000)) == 3 * 504
    with pytest.raises(ValueError, match="resize method"):
        rule.with_method("nearest")


# ------------------------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def small_state():
    return random_da3_state_dict("small", seed=11)


def test_every_layout_loads_the_same_weights(tmp_path, small_state):
    hub = tmp_path / "DA3-SMALL"
    write_da3_checkpoint(hub / "model.safetensors", state=small_state, layout="hf")
    (hub / "config.json").write_text(json.dumps({"model_name": "da3-small", "config": {}}))
    sources = [
        write_da3_checkpoint(tmp_path / "depth_anything_3_small.safetensors", state=small_state, layout="comfyui"),
        write_da3_checkpoint(tmp_path / "da3-small.pth", state=small_state),
        hub,
    ]
    image = torch.rand(1, 42, 56, 3, generator=torch.Generator().manual_seed(0))
    outputs = []
    for source in sources:
        checkpoint = resolve_checkpoint(source)
        assert checkpoint.family.name == "da3"
        model = DepthModel.from_pretrained(source, device="cpu", dtype="fp32")
        assert isinstance(model, DepthAnything3) and model.encoder == "vits" and model.output_kind == "relative_depth"
        outputs.append(model.infer(image, input_size=56))
    assert resolve_checkpoint(sources[0]).license == "Apache-2.0" and resolve_checkpoint(sources[1]).license is None
    assert all(torch.equal(out, outputs[0]) for out in outputs[1:])
    # renamed any-view weights tell themselves apart from mono / metric by their camera token
    renamed = write_da3_checkpoint(tmp_path / "weights.safetensors", state=small_state, dtype=torch.float16)
    assert resolve_checkpoint(renamed).family.name == "da3"


def test_comfyui_layout_is_not_the_official_one(small_state):
    comfy = comfyui_da3_names(small_state)
    assert "backbone.embeddings.camera_token" in comfy and "backbone.pretrained.cls_token" not in comfy
    assert "backbone.encoder.layer.5.attention.attention.query.weight" in comfy


def layout_state(kind: str) -> dict[str, torch.Tensor]:
    """The keys that tell a DA3 layout apart, with tiny tensors: "sky" (mono / metric), "any_view" with an encoder
    of 1024 or 1536 channels (DA3-Large / Giant), or "nested"."""
    head = {"head.projects.0.weight": torch.zeros(1), "head.scratch.output_conv2.0.weight": torch.zeros(1)}
    if kind == "nested":
        return {f"model.{branch}.{k}": v.clone() for branch in ("da3", "da3_metric") for k, v in head.items()}
    if kind == "sky":
        return head | {"backbone.pretrained.cls_token": torch.zeros(1, 1, 1024)}
    width = {"large": 1024, "giant": 1536}[kind]
    backbone = {"cls_token": torch.zeros(1, 1, width), "camera_token": torch.zeros(1, 2, width)}
    return head | {f"backbone.pretrained.{k}": v for k, v in backbone.items()}


def test_mono_and_metric_need_their_names_or_config(tmp_path):
    from safetensors.torch import save_file

    renamed = tmp_path / "large.safetensors"
    save_file(layout_state("sky"), str(renamed))
    with pytest.raises(CheckpointError, match=r"da3_mono / da3_metric.*depth_anything_3_mono_large.safetensors"):
        resolve_checkpoint(renamed)
    assert resolve_checkpoint(renamed, family="da3_metric").family.name == "da3_metric"
    for name, family in (("DA3METRIC-LARGE.safetensors", "da3_metric"), ("da3mono-large.pth", "da3_mono"),
                         ("depth_anything_3_metric_large.safetensors", "da3_metric")):  # fmt: skip
        renamed = renamed.rename(tmp_path / name)
        assert resolve_checkpoint(renamed).family.name == family
    hub = tmp_path / "weights"
    hub.mkdir()
    renamed.rename(hub / "model.safetensors")
    for config, family in (("da3metric-large", "da3_metric"), ("da3mono-large", "da3_mono")):
        (hub / "config.json").write_text(json.dumps({"model_name": config}))
        assert resolve_checkpoint(hub).family.name == family


@pytest.mark.parametrize(
    "name, kind, variant",
    [("DA3-LARGE.safetensors", "large", "DA3-Large"), ("da3_weights.safetensors", "giant", "DA3-Giant"),
     ("DA3NESTED-GIANT-LARGE.safetensors", "nested", "nested")],
)  # fmt: skip
def test_unsupported_variants_are_refused_clearly(tmp_path, name, kind, variant):
    from safetensors.torch import save_file

    path = tmp_path / name
    save_file(layout_state(kind), str(path))
    with pytest.raises(CheckpointError, match=rf"{variant}.*not supported yet"):
        DepthModel.from_pretrained(path, device="cpu")


def test_known_models_are_the_apache_repacks_and_say_where_to_get_them(tmp_path, monkeypatch):
    import huggingface_hub

    known = {m.name: m for m in list_models() if m.name.startswith("depth_anything_3")}
    assert set(known) == {f"depth_anything_3_{v}" for v in ("mono_large", "metric_large", "small", "base")}
    assert {m.license for m in known.values()} == {"Apache-2.0"}
    assert all(m.comfyui_folder == "geometry_estimation" for m in known.values())

    def offline(*_args, **_kwargs):  # the Hub is unreachable from the test machines; so is it for a user offline
        raise OSError("network unreachable")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    url = "https://huggingface.co/Comfy-Org/Depth-Anything-3/blob/main/geometry_estimation/depth_anything_3_small.safetensors"
    with pytest.raises(ModelNotAvailableError, match=re.escape(url)):
        DepthModel.from_pretrained("depth_anything_3_small", cache_dir=tmp_path)


# ------------------------------------------------------------------------------------------------ outputs


@pytest.fixture(scope="module")
def mono(released):
    return released["mono_large"][1]


@pytest.fixture(scope="module")
def metric(released):
    return released["metric_large"][1]


def scene(height: int = 42, width: int = 56, seed: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    rgb = np.stack([x / width, y / height, 0.5 + 0.2 * np.sin(x / 5.0)], -1) * 200 + rng.random((height, width, 3)) * 55
    return rgb.astype(np.uint8)


SIZE = 56  # input_size: the ViT-L sees 3 x 4 patches, fast on a shared CPU


def test_sky_is_an_output_and_black_in_the_conditioning(mono, released):
    image = scene()
    depth, sky = mono.infer(image, input_size=SIZE, return_sky=True)
    assert depth.shape == sky.shape == (1, 42, 56)
    assert set(sky.unique().tolist()) == {0.0, 1.0}  # a mask (1 = sky, by the release's 0.3); both parts here
    assert torch.equal(depth, mono.infer(image, input_size=SIZE))  # one pass gives both; the depth is the same
    control = condition(depth, kind=mono.output_kind, far_mask=sky)
    assert control[sky.bool()].max() == 0.0 and control[~sky.bool()].max() == 1.0
    assert condition(depth, kind=mono.output_kind, far_mask=sky, invert=True)[sky.bool()].min() == 1.0
    # near = white: DA3 gives depth (near = small), the map is its inverse, as v2's disparity maps are
    ground = ~sky.bool()
    assert control[ground][depth[ground].argmin()] == 1.0
    with pytest.raises(ValueError, match="no sky output"):
        released["small"][1].infer(image, return_sky=True)


def test_sky_depth_is_the_99th_percentile_of_the_ground():
    depth = torch.arange(1.0, 201.0).reshape(1, 10, 20)
    sky = torch.zeros(1, 10, 20)
    sky[0, :2] = 0.9  # the top rows (depths 1-40) are sky
    out = set_sky_far(depth, sky)
    ground = depth[0, 2:].flatten()
    assert torch.all(out[0, :2] == torch.quantile(ground, 0.99))
    assert torch.equal(out[0, 2:], depth[0, 2:])
    almost_no_sky = sky.clone()
    almost_no_sky[0, :2] = 0.0
    almost_no_sky[0, 0, :5] = 0.9  # 5 pixels: the release leaves such maps alone
    assert torch.equal(set_sky_far(depth, almost_no_sky), depth)


def photo_with_focal(path: Path, image: np.ndarray, focal_35mm: float) -> Path:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = int(focal_35mm)  # FocalLengthIn35mmFilm
    Image.fromarray(image).save(path, exif=exif, quality=95)
    return path


def test_metric_metres_follow_the_focal_length_from_argument_exif_or_default(metric, tmp_path):
    image = scene()
    with pytest.warns(UserWarning, match="approximate"):
        default = metric.infer(image, input_size=SIZE)
    given = metric.infer(image, input_size=SIZE, focal_px=800.0)
    assert torch.allclose(given, default * 800.0 / equivalent_focal_px(DEFAULT_FOCAL_35MM, 42, 56), rtol=1e-5)
    photo = photo_with_focal(tmp_path / "photo.jpg", image, 50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the EXIF focal length is used: no warning
        from_exif = metric.infer(photo, input_size=SIZE)
    read = np.asarray(Image.open(photo))
    expected = metric.infer(read, input_size=SIZE, focal_px=50 * math.hypot(42, 56) / math.hypot(36, 24))
    assert torch.allclose(from_exif, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="focal_px must be a positive"):
        metric.infer(image, focal_px=-3.0)


def test_tiling_aligns_metric_by_scale_and_relative_depth_as_inverse_depth(metric, mono):
    image = scene(56, 84, seed=3)
    passes = []
    tiled = metric.infer(image, input_size=SIZE, tiled=True, tile=SIZE, focal_px=500.0,
                         progress=lambda done, total: passes.append((done, total)))  # fmt: skip
    assert tiled.shape == (1, 56, 84) and torch.isfinite(tiled).all() and tiled.min() > 0
    assert passes[-1][0] == passes[-1][1] > 1  # a global pass and the tiles
    # scale-only alignment: the metres scale with the focal length exactly, tiles and all
    doubled = metric.infer(image, input_size=SIZE, tiled=True, tile=SIZE, focal_px=1000.0)
    assert torch.allclose(doubled, 2 * tiled, rtol=1e-5)
    relative, sky = mono.infer(image, input_size=SIZE, tiled=True, tile=SIZE, return_sky=True)
    assert relative.shape == sky.shape == (1, 56, 84) and torch.isfinite(relative).all() and relative.min() > 0
    assert torch.equal(sky, mono.infer(image, input_size=SIZE, return_sky=True)[1])  # from the whole-image pass


def test_lower_bound_sees_more_pixels(mono):
    image = scene(28, 84)
    upper = mono.family.preprocessing
    lower = upper.with_method("lower_bound")
    assert upper.net_size(28, 84, SIZE) == (14, 56) and lower.net_size(28, 84, SIZE) == (56, 168)
    assert not torch.equal(mono.infer(image, input_size=SIZE), mono.infer(image, input_size=SIZE, preprocessing=lower))


# ----------------------------------------------------------------------------------------------- surfaces


def test_command_line_takes_focal_length_and_resize_method(metric, mono, tmp_path, capsys):
    from checkpoints import write_checkpoint
    from depth_anything.cli import EXIT_USAGE
    from depth_anything.cli import main as run_command

    def main(args: list[str]) -> int:
        """The command in this process, its model freed when it returns: a model and its backend refer to each
        other, and the collector would free that 1.3 GB cycle only later, under the next run's model."""
        code = run_command(args)
        gc.collect()
        return code

    metric_file = tmp_path / "depth_anything_3_metric_large.safetensors"  # the same weights, named as metric
    metric_file.symlink_to(mono.checkpoint.path)
    image = scene()
    photo = tmp_path / "in" / "photo.png"
    photo.parent.mkdir()
    Image.fromarray(image).save(photo)
    out = tmp_path / "out"
    args = ["--checkpoint", str(metric_file), "--img-path", str(photo.parent), "--outdir", str(out), "--format",
            "npy", "--input-size", str(SIZE), "-q"]  # fmt: skip
    assert main([*args, "--focal-px", "640"]) == 0
    expected = metric.infer(image, input_size=SIZE, focal_px=640.0)[0].numpy()
    np.testing.assert_allclose(np.load(out / "photo.npy"), expected, rtol=1e-5)
    assert main([*args, "--overwrite", "--focal-px", "640", "--tiled", "on", "--tile", "28"]) == 0
    tiled = metric.infer(image, input_size=SIZE, focal_px=640.0, tiled=True, tile=28)[0].numpy()
    np.testing.assert_allclose(np.load(out / "photo.npy"), tiled, rtol=1e-5)

    # the sky is black in pictures, with each image's own range and with one range for the run
    lower = mono.family.preprocessing.with_method("lower_bound")
    depth, sky = mono.infer(image, input_size=SIZE, return_sky=True, preprocessing=lower)
    expected = condition(depth, kind="relative_depth", far_mask=sky, bits=16)[0]
    for normalize in ("per_image", "batch"):
        folder = tmp_path / normalize
        assert main(["--checkpoint", str(mono.checkpoint.path), "--img-path", str(photo.parent), "--format", "png16",
                     "--input-size", str(SIZE), "--resize-method", "lower_bound", "--normalize", normalize, "-q",
                     "--outdir", str(folder)]) == 0  # fmt: skip
        picture = np.asarray(Image.open(folder / "photo.png"))
        assert picture[sky[0].bool().numpy()].max() == 0
        assert np.abs(picture.astype(int) - expected.astype(int)).max() <= 1

    v2 = write_checkpoint(tmp_path / "depth_anything_v2_vits.pth", "vits")
    base = ["--checkpoint", str(v2), "--img-path", str(photo), "--outdir", str(out)]
    assert main([*base, "--focal-px", "500"]) == EXIT_USAGE
    assert "--focal-px scales the metres of Depth Anything 3 metric" in capsys.readouterr().err
    assert main([*base, "--resize-method", "lower_bound"]) == EXIT_USAGE


def test_detector_makes_control_images_with_sky_black(mono):
    from depth_anything.diffusers import DepthAnythingDetector

    detector = DepthAnythingDetector(mono)
    image = Image.fromarray(scene(84, 112))
    control = detector(image, detect_resolution=SIZE, output_type="np", image_resolution=64)
    depth, sky = mono.infer(image, input_size=SIZE, return_sky=True)
    assert control.shape == (1, 64, 88, 3)
    expected = condition(depth, kind="relative_depth", far_mask=sky, size=64)[0].numpy()
    # the detector restores straight at the control image's size, so the maps differ by resampling only
    assert np.abs(control[0, ..., 0] - expected).mean() < 0.03
    # sky, away from its edges (where the two resamplings may disagree on the 0.3 threshold), is black
    at_control_size = torch.nn.functional.interpolate(sky[None], size=(64, 88), mode="area")
    inside_sky = (-torch.nn.functional.max_pool2d(-at_control_size, 5, 1, 2))[0, 0].numpy() == 1.0
    assert inside_sky.any() and control[0, ..., 0][inside_sky].max() == 0.0


def test_onnx_backend_equals_eager_for_any_view_and_sky_networks(small_state, tmp_path):
    from depth_anything.backends import EXACT_TOLERANCE
    from depth_anything.families.depth_anything_3 import DA3Config

    small = write_da3_checkpoint(tmp_path / "depth_anything_3_small.safetensors", state=small_state)
    any_view = DepthModel.from_pretrained(small, device="cpu", dtype="fp32")
    torch.manual_seed(0)  # DA3-Large's network (plain DINOv2, the sky head) on a ViT-S: a fast export
    sky_head = DepthAnything3(DA3Config("vits", (2, 5, 8, 11), any_view=False), family="da3_mono").eval()
    images = [scene(42, 56), scene(56, 42, seed=1)]  # landscape and portrait: one dynamic file for both
    for model in (any_view, sky_head):
        expected = model.infer(images, input_size=SIZE, return_sky=model.has_sky)
        model.use_backend("onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # the file runs every shape: no eager fallback
            got = model.infer(images, input_size=SIZE, return_sky=model.has_sky)
        depth, want = (got[0], expected[0]) if model.has_sky else (got, expected)
        for have, reference in zip(depth, want):
            assert have.shape == reference.shape
            assert float((have - reference).abs().max() / reference.abs().max()) < EXACT_TOLERANCE
        if model.has_sky:
            # the same mask, but for a pixel whose probability sits on the 0.3 threshold within float rounding
            assert all(float((a != b).float().mean()) < 0.01 for a, b in zip(got[1], expected[1]))
        assert model.backend.name == "onnx"
    from depth_anything.runtimes.onnx_export import metadata

    assert "(N, 2: raw depth / sky probability, H, W)" in metadata(sky_head, torch.float32, None, True)["output_name"]
