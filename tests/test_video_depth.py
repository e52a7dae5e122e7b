"""Video Depth Anything: parity with the official code, the temporal modules at work, recognition, memory-bounded
streaming of frames, the diffusers detector on a clip.

Parity fixtures (tests/fixtures/video_depth_anything_official.npz) were made by running the official code,
github.com/DepthAnything/Video-Depth-Anything at commit 4f5ae23 (Apache-2.0), on the CPU in float32 (torch 2.14.1,
numpy 2.4.6, opencv-python 5.0.0, no xformers):

- weights: `random_video_state_dict("vits", seed)` of tests/checkpoints.py (seed 11 for the relative model, 12 for
  the metric one; the temporal modules' zero-initialised output projections random too), loaded with
  `load_state_dict(strict=True)` into `video_depth_anything.video_depth.VideoDepthAnything(encoder="vits",
  features=64, out_channels=[48, 96, 192, 384], metric=...)`; the file stores the seeds and two checksums of
  the weights, so a change in torch's random generator shows as such and not as a parity failure;
- inputs: two synthetic uint8 clips of 70 frames (moving sine patterns, a moving disc and uniform noise; stored):
  "a" 24 x 32 pixels at input_size 42 (the network sees 42 x 56) and "b" 12 x 36 at input_size 56 (aspect ratio
  3 > 1.78, so the release's rule lowers input_size to 28: the network sees 28 x 84);
- outputs: `infer_video_depth(clip[:T], 30, input_size=..., device="cpu", fp32=True)` for T in 1, 5, 32, 33, 54
  and 70 frames (one window; one; two with the last padded; two; three; four), for each clip and model; and the
  streaming mode, `video_depth_stream.VideoDepthAnything.infer_video_depth_one` frame by frame on the first 50
  frames of clip "a" with the relative weights.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from checkpoints import random_video_state_dict, write_checkpoint, write_video_checkpoint

from depth_anything import CheckpointError, DepthModel, condition, get_family, list_models, resolve_checkpoint
from depth_anything.families import family_from_name
from depth_anything.families.video_depth_anything import (
    KEYFRAMES,
    STEP,
    WINDOW,
    VideoDepthAnything,
    video_input_size,
)
from depth_anything.tiling import TileAssembler, tile_grid

FIXTURES = Path(__file__).parent / "fixtures" / "video_depth_anything_official.npz"
CONFIGS = {"a": 42, "b": 56}  # clip -> input_size given
LENGTHS = (1, 5, 32, 33, 54, 70)
SMALL = 28  # input_size of the behavioural tests


def relative_error(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.fixture(scope="module")
def official() -> dict[str, np.ndarray]:
    with np.load(FIXTURES) as data:
        return dict(data)


def _checksum(state) -> np.ndarray:
    """Sum and absolute sum of all weights, as stored with the fixtures."""
    tensors = [v.double() for v in state.values()]
    return np.array([sum(float(t.sum()) for t in tensors), sum(float(t.abs().sum()) for t in tensors)])


@pytest.fixture(scope="module")
def models(tmp_path_factory, official) -> dict[str, VideoDepthAnything]:
    """The fixtures' relative and metric models, written under their official file names and loaded by name."""
    folder = tmp_path_factory.mktemp("vda")
    loaded = {}
    for family, name in (("video", "video_depth_anything_vits.pth"), ("video_metric", "metric_video_depth_anything_vits.pth")):
        seed = int(official[f"seed_{family}"])
        assert np.allclose(_checksum(random_video_state_dict("vits", seed)), official[f"checksum_{family}"], rtol=1e-9), (
            "tests/checkpoints.py no longer writes the weights the fixtures were made with (torch's generator changed?)"
        )
        loaded[family] = DepthModel.from_pretrained(write_video_checkpoint(folder / name, seed=seed), device="cpu")
    return loaded


@pytest.fixture(scope="module")
def vda(models) -> VideoDepthAnything:
    return models["video"]


def clip(frames: int, height: int = 20, width: int = 26, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return list(rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8))


# ------------------------------------------------------------------------------------------------------ parity


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("family", ["video", "video_metric"])
def test_windows_match_the_official_code(models, official, family, config, length):
    theirs = official[f"{family}_{config}_{length}"]
    frames = official[f"clip_{config}"][:length]
    ours = models[family].infer_video(frames, input_size=CONFIGS[config])
    assert ours.dtype == torch.float32 and tuple(ours.shape) == theirs.shape
    assert theirs.std() > 0.01 * np.abs(theirs).mean()  # real maps, not constants
    assert relative_error(ours, theirs) < 1e-4


def test_streaming_matches_the_official_streaming_mode(vda, official):
    theirs = official["stream_video_a_50"]
    ours = vda.infer_video(official["clip_a"][:50], input_size=CONFIGS["a"], streaming=True, batch_size=3)
    assert relative_error(ours, theirs) < 1e-4
    windows = official["video_a_54"][:50]
    assert relative_error(windows, theirs) > 1e-3  # the two modes differ: the test tells them apart


def test_the_fixtures_exercise_stitching_and_the_wide_frame_rule(official):
    # Metric windows are joined without re-scaling, relative ones with it: with stitching the clips differ
    # beyond the first window's frames, and the relative clip differs from its windows' raw depth.
    assert video_input_size(12, 36, CONFIGS["b"]) == 28 and video_input_size(24, 32, CONFIGS["a"]) == 42
    first, longer = official["video_a_32"], official["video_a_70"]
    assert np.allclose(first[:24], longer[:24])  # frames only the first window sets
    assert not np.allclose(first[24:32], longer[24:32], atol=1e-3)  # cross-faded with the second window


# --------------------------------------------------------------------------------------- the temporal modules


def _as_v2(tmp_path: Path, model: VideoDepthAnything) -> DepthModel:
    """Depth Anything v2 with this model's encoder and head weights, the temporal modules left out."""
    state = {
        k.replace("head.", "depth_head.", 1): v.contiguous() for k, v in model.state_dict().items() if ".motion_modules." not in k
    }
    torch.save(state, tmp_path / "depth_anything_v2_vits.pth")
    return DepthModel.from_pretrained(tmp_path / "depth_anything_v2_vits.pth", device="cpu")


def test_temporal_modules_make_frames_depend_on_each_other(vda, tmp_path):
    frames = clip(8, seed=1)
    changed = [f.copy() for f in frames]
    changed[4] = 255 - changed[4]
    depth, depth_changed = vda.infer_video(frames, input_size=SMALL), vda.infer_video(changed, input_size=SMALL)
    for neighbour in (3, 5):  # one frame changed its neighbours' depth inside the window
        assert relative_error(depth_changed[neighbour], depth[neighbour]) > 1e-3

    v2 = _as_v2(tmp_path, vda)
    per_frame, per_frame_changed = v2.infer(frames, input_size=SMALL), v2.infer(changed, input_size=SMALL)
    for neighbour in (3, 5):  # per-frame v2 with the same weights: neighbours untouched
        assert torch.allclose(per_frame_changed[neighbour], per_frame[neighbour], atol=1e-6)
    assert relative_error(depth, per_frame) > 1e-2  # and its depth differs from the video model's


def test_without_temporal_modules_the_network_is_v2_frame_by_frame(vda, tmp_path):
    """Zeroed output projections (the training initialisation) make each module the identity: one window of
    VDA is then exactly v2 on each frame, which proves the head's wiring around the modules."""
    v2 = _as_v2(tmp_path, vda)
    identity = VideoDepthAnything("vits", family="video")
    identity.load_state_dict(vda.state_dict())
    for module in identity.head.motion_modules:
        module.temporal_transformer.proj_out.weight.data.zero_()
        module.temporal_transformer.proj_out.bias.data.zero_()
    frames = clip(6, seed=2)
    assert torch.allclose(identity.eval().infer_video(frames, input_size=SMALL), v2.infer(frames, input_size=SMALL), atol=1e-5)


def test_micro_batches_change_memory_not_results(vda):
    x = torch.randn(7, 3, SMALL, 42)
    with torch.inference_mode():
        with vda.micro_batches(1):
            one = vda(x)
        with vda.micro_batches(32):
            whole = vda(x)
    assert torch.allclose(one, whole, atol=1e-5)
    assert vda.micro_batch == VideoDepthAnything.micro_batch  # restored after the block


def test_forward_is_one_clip_and_says_when_it_is_too_long(vda):
    with torch.inference_mode():
        assert vda(torch.randn(3, 3, SMALL, SMALL)).shape == (3, SMALL, SMALL)
        assert vda(torch.randn(2, 3, 3, SMALL, SMALL)).shape == (2, 3, SMALL, SMALL)
        with pytest.raises(ValueError, match="at most 32 frames.*infer_video"):
            vda(torch.randn(33, 3, SMALL, SMALL))
    # The generic stages see a batch as a clip: infer works (batch_size frames per clip).
    assert vda.infer(clip(3), input_size=SMALL).shape == (3, 20, 26)


# --------------------------------------------------------------------------------- frames in, depth out


def test_a_generator_is_read_as_the_windows_need_and_never_held(vda):
    frames = clip(44, seed=3)  # two windows
    alive: list[weakref.ref] = []
    pulled = []

    def decoder():
        for frame in frames:
            frame = frame.copy()  # a decoder's fresh buffer
            alive.append(weakref.ref(frame))
            pulled.append(1)
            yield frame

    out = vda.infer_video(decoder(), input_size=SMALL)
    assert not isinstance(out, torch.Tensor)
    streamed = []
    for index, depth in enumerate(out):
        assert len(pulled) <= index + WINDOW  # at most one window ahead of what it gave back
        if index % 4 == 0:
            gc.collect()
            assert sum(ref() is not None for ref in alive) <= 1  # input frames are not kept (their inputs are)
        streamed.append(depth)
    assert len(streamed) == 44
    assert torch.equal(torch.stack(streamed), vda.infer_video(frames, input_size=SMALL))


def test_every_clip_form_gives_the_same_depth(vda):
    frames = clip(5, seed=4)
    reference = vda.infer_video(frames, input_size=SMALL)
    as_array = np.stack(frames)
    comfy = torch.from_numpy(as_array.astype(np.float32) / 255)
    for form in (as_array, comfy.permute(0, 3, 1, 2), [comfy[:2], comfy[2:]]):
        assert torch.allclose(vda.infer_video(form, input_size=SMALL), reference, atol=1e-4)


def test_progress_counts_frames_per_window_and_can_stop(vda):
    calls = []
    vda.infer_video(clip(50), input_size=SMALL, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(24, 50), (46, 50), (50, 50)]  # windows start at frames 0, 22 and 44; 8 frames held back
    streamed = []
    list(vda.infer_video(iter(clip(5)), input_size=SMALL, streaming=True, batch_size=2,
                         progress=lambda done, total: streamed.append((done, total))))
    assert streamed == [(2, None), (4, None), (5, None)]

    class Stop(Exception):
        pass

    def stop(done, total):
        raise Stop

    read = []
    with pytest.raises(Stop):
        list(vda.infer_video((read.append(f) or f for f in clip(80)), input_size=SMALL, progress=stop))
    assert len(read) == WINDOW  # stopped after the first window, the rest of the clip never read


# ------------------------------------------------------------------------------------------------- tiled


def test_tiled_video_fits_every_tile_clip_to_the_whole_frame_clip(vda):
    """tiled=True: the whole frames are one clip, every tile position a clip of its own through the same windows
    (two windows here, so that both are stitched), and each frame's tiles are fitted to that frame of the
    whole-frame clip. Rebuilt here from public pieces; the frames are at the size the network sees them, so the
    whole-frame clip's depth is at the network's size as the engine uses it."""
    frames = clip(40, height=SMALL, width=42, seed=6)
    tiled = vda.infer_video(frames, input_size=SMALL, tiled=True, tile=14, overlap=7)
    assert tiled.shape == (40, SMALL, 42) and torch.isfinite(tiled).all()

    grid = tile_grid(SMALL, 42, tile=14, overlap=7, model_size=SMALL)
    whole = vda.infer_video(frames, input_size=SMALL)
    crops = {box: vda.infer_video([f[box[0] : box[0] + 14, box[1] : box[1] + 14] for f in frames], input_size=SMALL)
             for box in grid.boxes()}
    for index in range(40):
        assembler = TileAssembler(grid, whole[index])
        for box, depth in crops.items():
            assembler.add([box], depth[index][None])
        torch.testing.assert_close(tiled[index], assembler.result(), rtol=1e-5, atol=1e-5 * float(whole.abs().max()))
    assert (tiled - whole).abs().mean() > 1e-3 * whole.abs().mean()  # the tiles changed it

    streamed = list(vda.infer_video(iter(frames), input_size=SMALL, tiled=True, tile=14, overlap=7))
    assert torch.equal(torch.stack(streamed), tiled)  # a decoder, read once for all the clips
    calls = []
    vda.infer_video(frames, input_size=SMALL, tiled=True, tile=14, overlap=7,
                    progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (40, 40) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert torch.equal(vda.infer_video(frames, input_size=SMALL, tiled="auto"), whole)  # too small to gain


def test_an_image_tiled_through_a_video_model_keeps_its_tiles_apart(vda):
    """infer(tiled=True) on Video Depth Anything: every tile (and the whole image) is a clip of its own, so the
    tiles of one image do not attend to each other as frames would."""
    image = clip(1, height=42, width=56, seed=7)[0]
    predict = vda.tile_predictor(SMALL)
    views = torch.rand(3, 3, SMALL, SMALL, generator=torch.Generator().manual_seed(8))
    together = predict(views)
    for index in range(3):
        torch.testing.assert_close(together[index], predict(views[index : index + 1])[0], rtol=1e-5, atol=1e-6)
    as_clip = vda.infer(list(views.permute(0, 2, 3, 1)), input_size=SMALL, batch_size=3)  # frames of one clip
    assert (as_clip - together).abs().max() > 1e-4 * together.abs().max()  # which is what tiles must not be
    depth = vda.infer(image, input_size=SMALL, tiled=True, tile=SMALL)
    assert depth.shape == (1, 42, 56) and torch.isfinite(depth).all()


def test_tiled_video_refuses_streaming_and_bad_tiles(vda):
    with pytest.raises(ValueError, match="not streamed"):
        vda.infer_video(clip(3), input_size=SMALL, tiled=True, streaming=True)
    with pytest.raises(ValueError, match="multiple of 14"):
        vda.infer_video(clip(3), input_size=SMALL, tiled=True, tile=20)
    with pytest.raises(ValueError, match="tiled must be"):
        vda.infer_video(clip(3), input_size=SMALL, tiled="yes")


def test_window_arithmetic_matches_the_release():
    assert (WINDOW, STEP, KEYFRAMES[:2]) == (32, 22, (0, 12))
    assert [video_input_size(h, w, 518) for h, w in ((1080, 1920), (100, 300), (300, 100), (10, 1000))] == [518, 308, 308, 14]


@pytest.mark.parametrize(
    "frames, message",
    [
        ([], "No frames"),
        ([np.zeros((20, 26, 3), np.uint8), np.zeros((20, 28, 3), np.uint8)], r"Frame 1 is 28x20.*first frame is 26x20"),
    ],
)
def test_bad_clips_get_clear_errors(vda, frames, message):
    with pytest.raises(ValueError, match=message):
        vda.infer_video(frames, input_size=SMALL)
    with pytest.raises(ValueError, match=message):
        list(vda.infer_video(iter(frames), input_size=SMALL, streaming=True))


# ------------------------------------------------------------------------------------------------ recognition


@pytest.mark.parametrize(
    "name, family",
    [
        ("video_depth_anything_vits.pth", "video"),
        ("video_depth_anything_vitl.safetensors", "video"),
        ("Video-Depth-Anything-Base.pth", "video"),
        ("metric_video_depth_anything_vitb.pth", "video_metric"),
        ("metric_video_depth_anything_vits_fp16.safetensors", "video_metric"),
        ("depth_anything_v2_vits.pth", "v2"),
        ("depth_anything_v2_metric_vkitti_vits.pth", "metric_outdoor"),
    ],
)
def test_family_from_file_name(name, family):
    assert family_from_name(name).name == family


def test_families_aliases_and_known_models():
    assert get_family("vda").name == get_family("video_depth_anything").name == "video"
    assert get_family("metric_video").name == get_family("vda_metric").name == "video_metric"
    assert get_family("video").temporal and get_family("video_metric").temporal and not get_family("v2").temporal
    assert get_family("video").output_kind == "disparity" and get_family("video_metric").output_kind == "metric_depth"
    known = {m.name: m for m in list_models()}
    small, large = known["video_depth_anything_vits"], known["metric_video_depth_anything_vitl"]
    assert (small.repo_id, small.filename, small.license) == (
        "depth-anything/Video-Depth-Anything-Small", "video_depth_anything_vits.pth", "Apache-2.0"
    )
    assert (large.repo_id, large.family, large.license) == (
        "depth-anything/Metric-Video-Depth-Anything-Large", "video_metric", "CC-BY-NC-4.0"
    )
    assert known["metric_video_depth_anything_vits"].license == "Apache-2.0"
    assert known["video_depth_anything_vitb"].license == "CC-BY-NC-4.0"


def test_layout_is_recognised_and_a_renamed_file_asks_which(tmp_path, vda):
    path = write_video_checkpoint(tmp_path / "my_clip_model.safetensors", seed=11, dtype=torch.float16)
    with pytest.raises(CheckpointError, match=r"video / video_metric.*family='video' or 'video_metric'"):
        resolve_checkpoint(path)
    model = DepthModel.from_pretrained(path, family="vda", device="cpu", dtype="fp32")
    assert isinstance(model, VideoDepthAnything) and model.family.name == "video"
    with torch.inference_mode():  # an fp16 repack of the same weights: the same network
        x = torch.randn(2, 3, SMALL, SMALL)
        assert relative_error(model(x), vda(x)) < 1e-2
    v2_file = write_checkpoint(tmp_path / "depth_anything_v2_vits.pth")
    assert resolve_checkpoint(v2_file).family.name == "v2"  # v2's recognition is unchanged


def test_checkpoint_that_does_not_fit_is_refused(tmp_path):
    state = random_video_state_dict("vits", 0)
    del state["head.motion_modules.3.temporal_transformer.proj_out.bias"]
    torch.save(state, tmp_path / "video_depth_anything_vits.pth")
    with pytest.raises(CheckpointError, match="1 missing tensors"):
        DepthModel.from_pretrained(tmp_path / "video_depth_anything_vits.pth", device="cpu")


def test_fast_backends_are_refused_for_clips_and_auto_runs_eager(tmp_path):
    from depth_anything.backends import BackendUnavailableError, EagerBackend

    path = write_video_checkpoint(tmp_path / "video_depth_anything_vits.pth", seed=3)
    with pytest.raises(BackendUnavailableError, match=r"backend 'onnx' runs frame-by-frame networks.*'eager' or 'auto'"):
        DepthModel.from_pretrained(path, device="cpu", backend="onnx")
    model = DepthModel.from_pretrained(path, device="cpu", backend="auto")
    assert type(model.backend) is EagerBackend  # nothing exported or measured for a clip model


# ------------------------------------------------------------------------------------------------- diffusers


def test_detector_gives_a_clip_temporally_consistent_control_images(vda):
    from depth_anything.diffusers import DepthAnythingDetector

    frames = clip(6, height=32, width=48, seed=5)
    detector = DepthAnythingDetector(vda)
    depth = vda.infer_video(frames, input_size=SMALL)
    controls = detector(np.stack(frames), detect_resolution=SMALL, output_type="pt")  # a batch in, a batch out
    assert controls.shape == (6, 3, 32, 48)
    assert torch.allclose(controls[:, 0], torch.stack(condition(list(depth), normalize="batch")), atol=1e-6)
    assert controls.amax() == 1 and controls.amin() == 0  # one range across the clip,
    assert controls.flatten(1).amax(1).min() < 1 or controls.flatten(1).amin(1).max() > 0  # not one per frame
    small = torch.stack(detector(frames, detect_resolution=SMALL, image_resolution=16, output_type="pt"))  # a list
    assert small.shape == (6, 3, 16, 24)
    assert torch.allclose(small[:, 0], torch.stack(condition(list(depth), normalize="batch", size=16)), atol=1e-6)
    tiled = detector(np.stack(frames), detect_resolution=SMALL, tiled=True, tile=14, output_type="pt")  # in time too
    tiled_depth = vda.infer_video(frames, input_size=SMALL, tiled=True, tile=14)
    assert torch.allclose(tiled[:, 0], torch.stack(condition(list(tiled_depth), normalize="batch")), atol=1e-6)
