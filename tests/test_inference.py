"""Inference: parity with transformers, the official pre-processing, every input kind, precision."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from checkpoints import write_checkpoint
from PIL import Image

from depth_anything import DepthAnything, processing_size
from depth_anything.hf_format import to_transformers
from depth_anything.transforms import normalize_for_model


def _official_pos_embed(self, embeddings, height, width):
    """The official DINOv2 rule (scale factor (n + 0.1) / 37), written independently for transformers."""
    n, h, w = 37, height // 14, width // 14
    pos = self.position_embeddings.float()
    if h == n and w == n:
        return self.position_embeddings
    grid = pos[:, 1:].reshape(1, n, n, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((h + 0.1) / n, (w + 0.1) / n), mode="bicubic", align_corners=False)
    return torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)], 1)


def _relative_error(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize(
    "file_name", ["depth_anything_v2_vits.pth", "depth_anything_vits14.pth", "depth_anything_v2_metric_hypersim_vits.pth"]
)
def test_parity_with_transformers_at_518(tmp_path, file_name):
    model = DepthAnything.from_pretrained(write_checkpoint(tmp_path / file_name, seed=3), device="cpu")
    reference = to_transformers(model)
    x = torch.randn(1, 3, 518, 518)
    with torch.inference_mode():
        ours, theirs = model(x), reference(pixel_values=x).predicted_depth
    assert theirs.std() > 0.01 * theirs.abs().mean()  # a real map, not a constant
    assert _relative_error(ours, theirs) < 1e-4


def test_parity_at_other_sizes_follows_the_official_position_rule(v2_vits, monkeypatch):
    from transformers.models.dinov2 import modeling_dinov2

    reference = to_transformers(v2_vits)
    x = torch.randn(1, 3, 364, 700)
    with torch.inference_mode():
        ours = v2_vits(x)
        exact_size = reference(pixel_values=x).predicted_depth  # transformers' own resize: exact target size
        monkeypatch.setattr(modeling_dinov2.Dinov2Embeddings, "interpolate_pos_encoding", _official_pos_embed)
        official_rule = reference(pixel_values=x).predicted_depth
    assert _relative_error(ours, official_rule) < 1e-4
    assert _relative_error(ours, exact_size) > 1e-3  # the rule matters: transformers' resize differs


def _official_size(h, w, input_size=518):
    """run.py's Resize(keep_aspect_ratio, ensure_multiple_of=14, lower_bound), with numpy as it does."""
    scale = max(input_size / h, input_size / w)
    out = []
    for side in (h, w):
        y = (np.round(scale * side / 14) * 14).astype(int)
        if y < input_size:
            y = (np.ceil(scale * side / 14) * 14).astype(int)
        out.append(int(y))
    return tuple(out)


@pytest.mark.parametrize(
    "hw, expected",
    [((200, 300), (518, 784)), ((518, 518), (518, 518)), ((1080, 1920), (518, 924)), ((1, 1), (518, 518)),
     ((4000, 3000), (686, 518)), ((375, 1242), (518, 1722))],
)
def test_processing_size_follows_the_official_rule(hw, expected):
    assert processing_size(*hw, max_size=10_000) == expected == _official_size(*hw)


def test_processing_size_matches_official_on_many_shapes():
    rng = np.random.default_rng(0)
    for h, w in rng.integers(1, 3000, size=(300, 2)):
        if max(h, w) / min(h, w) <= 2.9:  # inside the default cap the rule is the official one
            assert processing_size(int(h), int(w)) == _official_size(int(h), int(w)), (h, w)


def test_thin_images_are_capped_not_exploded():
    assert _official_size(100, 600) == (518, 3108)
    h, w = processing_size(100, 600)
    assert w <= 3 * 518 and h % 14 == 0 and w % 14 == 0 and abs(w / h - 6) < 0.2
    assert processing_size(100, 600, max_size=700) == (112, 700)
    with pytest.raises(ValueError, match="multiple of 14"):
        processing_size(100, 100, input_size=500)


def test_resize_matches_opencv_bicubic_on_float():
    import cv2
    image = np.random.default_rng(1).random((200, 300, 3), dtype=np.float32)
    ours = normalize_for_model(torch.from_numpy(image).permute(2, 0, 1)[None], (518, 784))
    theirs = cv2.resize(image, (784, 518), interpolation=cv2.INTER_CUBIC)
    theirs = (theirs - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert np.abs(ours[0].permute(1, 2, 0).numpy() - theirs).max() < 2e-4


def test_infer_equals_the_official_pipeline_by_hand(v2_vits):
    image = np.random.default_rng(2).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    depth = v2_vits.infer(image, input_size=70)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(x, size=processing_size(40, 60, 70), mode="bicubic", align_corners=False)
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.inference_mode():
        by_hand = F.interpolate(v2_vits(x)[:, None], size=(40, 60), mode="bilinear", align_corners=True)[:, 0]
    assert depth.shape == (1, 40, 60) and depth.dtype == torch.float32
    assert torch.allclose(depth, by_hand, atol=1e-5)


def test_every_input_kind_gives_the_same_depth(v2_vits):
    rgb = np.random.default_rng(3).integers(0, 256, (30, 44, 3), dtype=np.uint8)
    reference = v2_vits.infer(rgb, input_size=56)
    as_float = rgb.astype(np.float32) / 255
    variants = {
        "pil": Image.fromarray(rgb),
        "float": as_float,
        "uint16": (rgb.astype(np.uint16) * 257),
        "comfy": torch.from_numpy(as_float)[None],
        "bchw": torch.from_numpy(as_float).permute(2, 0, 1)[None],
        "rgba": Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])),
    }
    for name, image in variants.items():
        assert torch.allclose(v2_vits.infer(image, input_size=56), reference, atol=1e-4), name


def test_grayscale_and_16_bit_images(v2_vits, tmp_path):
    gray = np.random.default_rng(4).integers(0, 65536, (30, 40), dtype=np.uint16)
    path = tmp_path / "gray16.png"
    Image.fromarray(gray).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")
        from_png = v2_vits.infer(im, input_size=56)
    as_rgb = np.repeat((gray / 65535.0).astype(np.float32)[..., None], 3, axis=2)
    assert torch.allclose(from_png, v2_vits.infer(as_rgb, input_size=56), atol=1e-4)
    l_mode = Image.fromarray((gray // 257).astype(np.uint8), mode="L")
    assert v2_vits.infer(l_mode, input_size=56).shape == (1, 30, 40)


def test_mixed_sizes_come_back_at_their_own_sizes_and_batching_changes_nothing(v2_vits):
    rng = np.random.default_rng(5)
    images = [rng.random((30, 40, 3), dtype=np.float32), rng.random((50, 20, 3), dtype=np.float32),
              rng.random((30, 40, 3), dtype=np.float32)]
    calls = []
    depths = v2_vits.infer(images, input_size=56, batch_size=2, progress=lambda d, t: calls.append((d, t)))
    assert [tuple(d.shape) for d in depths] == [(30, 40), (50, 20), (30, 40)]
    for image, depth in zip(images, depths):
        assert torch.allclose(v2_vits.infer(image, input_size=56)[0], depth, atol=1e-5)
    assert calls[-1] == (3, 3)


def test_progress_callback_can_stop_the_run(v2_vits):
    class Stop(Exception):
        pass

    def stop(done, total):
        raise Stop

    with pytest.raises(Stop):
        v2_vits.infer(torch.rand(4, 28, 28, 3), input_size=28, batch_size=1, progress=stop)


def test_tiny_and_thin_images(v2_vits):
    one = v2_vits.infer(np.full((1, 1, 3), 128, np.uint8), input_size=28)
    assert one.shape == (1, 1, 1) and torch.isfinite(one).all()
    thin = v2_vits.infer(np.zeros((10, 300, 3), np.uint8), input_size=28)
    assert thin.shape == (1, 10, 300)


@pytest.mark.parametrize(
    "bad, error, message",
    [
        ([], ValueError, "No images"),
        (np.zeros((0, 10, 3), np.uint8), ValueError, "empty side"),
        (np.zeros((10, 10, 5), np.uint8), ValueError, "channels"),
        (np.zeros((10, 10, 3), np.int8), ValueError, "dtype"),
        (np.full((10, 10, 3), np.nan, np.float32), ValueError, "NaN"),
        ("no-such-image.png", ValueError, "cannot read image"),
    ],
)
def test_bad_inputs_get_clear_errors(v2_vits, bad, error, message):
    with pytest.raises(error, match=message):
        v2_vits.infer(bad, input_size=28)


def test_forward_rejects_sizes_that_are_not_multiples_of_14(v2_vits):
    with pytest.raises(ValueError, match="multiples of 14"):
        v2_vits(torch.zeros(1, 3, 30, 28))


def test_fp16_full_range_16_bit_input_stays_finite(v2_vits_path):
    """A naive fp16 path casts 16-bit values to fp16 before scaling: 65535 is inf in fp16."""
    assert torch.isinf(torch.tensor(65535.0).half())
    image = np.full((28, 28, 3), 65535, np.uint16)
    image[:14] = 0
    fp32 = DepthAnything.from_pretrained(v2_vits_path, device="cpu").infer(image, input_size=28)
    fp16 = DepthAnything.from_pretrained(v2_vits_path, device="cpu", dtype="fp16").infer(image, input_size=28)
    bf16 = DepthAnything.from_pretrained(v2_vits_path, device="cpu", dtype="bf16").infer(image, input_size=28)
    assert fp16.dtype == bf16.dtype == torch.float32
    assert torch.isfinite(fp16).all() and torch.isfinite(bf16).all()
    assert _relative_error(fp16, fp32) < 2e-2 and _relative_error(bf16, fp32) < 6e-2


def test_fp16_overflow_inside_the_network_falls_back_to_float32(v2_vits_path):
    model = DepthAnything.from_pretrained(v2_vits_path, device="cpu", dtype="fp16")
    with torch.no_grad():  # disparities beyond fp16's 65504, as very large models can produce
        model.depth_head.scratch.output_conv2[0].weight.mul_(300)
        model.depth_head.scratch.output_conv2[2].weight.mul_(1000)
    image = torch.rand(1, 28, 28, 3)
    x = normalize_for_model(image.permute(0, 3, 1, 2), (28, 28))
    with torch.inference_mode():
        assert not torch.isfinite(model(x.half())).all()  # the naive fp16 forward overflows
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        depth = model.infer(image, input_size=28)
    assert torch.isfinite(depth).all() and depth.max() > 65504
    assert any("float32" in str(w.message) for w in caught)
    with torch.inference_mode():
        assert math.isclose(depth.max().item(), model.backend.float32()(x).max().item(), rel_tol=1e-5)


def test_infer_video_runs_any_family_frame_by_frame(v2_vits):
    frames = torch.rand(5, 40, 56, 3, generator=torch.Generator().manual_seed(2))
    expected = v2_vits.infer(frames, input_size=56)
    seen = []
    whole = v2_vits.infer_video(frames, input_size=56, batch_size=2, progress=lambda done, total: seen.append((done, total)))
    torch.testing.assert_close(whole, expected, rtol=1e-5, atol=1e-5)  # batches of 2, not 5: float round-off
    assert seen == [(2, 5), (4, 5), (5, 5)]
    streamed = v2_vits.infer_video(iter(list(frames)), input_size=56, batch_size=2)
    assert not isinstance(streamed, torch.Tensor)  # a generator: frames come out as they are done
    torch.testing.assert_close(torch.stack(list(streamed)), whole, rtol=0, atol=0)
    with pytest.raises(ValueError, match="No frames"):
        v2_vits.infer_video([])
