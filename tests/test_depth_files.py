"""Depth files that keep their values: float32 EXR, self-describing 16-bit PNG, npy with a sidecar, read back.

Round trips with real models (random weights in the official layouts): a relative (v2, disparity) and a metric
(Hypersim, metres) one. The EXR is also read by a second, independent decoder (FFmpeg's, through PyAV), and the
PNG's metadata chunk is found by walking the PNG chunks here, not through Pillow.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import av
import numpy as np
import OpenEXR
import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from depth_anything import DepthAnything, DepthFileError, condition, depth_metadata, load_depth, save_depth
from depth_anything.cli import main
from depth_anything.conditioning import value_ranges
from depth_anything.depth_files import METADATA_KEY, sidecar_path

from checkpoints import write_checkpoint

SIZE = 56  # network input: a multiple of 14, small for the CPU
LEVEL = 1 / 65535


def scene(height: int, width: int, seed: int) -> np.ndarray:
    """A photo-like uint8 RGB image with structure, so depth maps are not flat."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    channels = [np.sin(6 * x * rng.uniform(0.5, 2) + rng.uniform(0, 6)) * np.cos(5 * y * rng.uniform(0.5, 2))
                for _ in range(3)]  # fmt: skip
    return np.clip((np.stack(channels, -1) * 0.45 + 0.5) * 255, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def metric_path(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("metric")
    return write_checkpoint(folder / "depth_anything_v2_metric_hypersim_vits.pth", "vits", seed=5)


@pytest.fixture(scope="module", params=["relative", "metric"])
def model_and_depth(request, v2_vits_path, metric_path) -> tuple[DepthAnything, torch.Tensor]:
    path = v2_vits_path if request.param == "relative" else metric_path
    model = DepthAnything.from_pretrained(path, device="cpu", dtype="fp32")
    depth = model.infer(scene(42, 60, 7), input_size=SIZE)[0]
    assert depth.std() > 1e-3 * depth.abs().mean()  # a real map, not a flat one
    return model, depth


def within_levels(error: float, value_range, values: np.ndarray, levels: float = 0.5) -> bool:
    """error <= `levels` 16-bit levels of the range, plus float32 rounding of values this large."""
    low, high = value_range
    return error <= (high - low) * LEVEL * levels + 4 * np.finfo(np.float32).eps * np.abs(values).max()


def near_bright(values: np.ndarray, kind: str) -> np.ndarray:
    """What the recorded range is in: disparity as it is, 1 / depth for depth (float64)."""
    values = values.astype(np.float64)
    return values if kind == "disparity" else 1.0 / values


def png_text_chunks(path: Path) -> list[tuple[bytes, bytes]]:
    """(keyword, text) of every tEXt / iTXt chunk, read from the PNG's bytes."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = [], 8
    while offset < len(data):
        (length,), kind = struct.unpack(">I", data[offset : offset + 4]), data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        assert struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])[0] == zlib.crc32(kind + body)
        if kind == b"iTXt":
            keyword, rest = body.split(b"\0", 1)
            compressed, rest = rest[0], rest[2:]  # then the compression method
            _language, _translated, text = rest.split(b"\0", 2)
            chunks.append((keyword, zlib.decompress(text) if compressed else text))
        elif kind == b"tEXt":
            chunks.append(tuple(body.split(b"\0", 1)))
        offset += 12 + length
    return chunks


# --------------------------------------------------------------------------------------------- round trips


def test_exr_round_trip_is_bit_exact_float32(tmp_path, model_and_depth):
    model, depth = model_and_depth
    values = depth.numpy().copy()
    values[0, :4] = [np.nan, np.inf, -np.inf, 1e-42]  # not finite and denormal pixels survive too
    about = depth_metadata(model, input_size=SIZE)
    path = save_depth(tmp_path / "depth.exr", values, metadata=about)

    loaded = load_depth(path)
    assert loaded.values.dtype == np.float32
    assert np.array_equal(loaded.values.view(np.uint32), values.view(np.uint32))  # bit for bit
    meta = loaded.metadata
    assert meta.kind == model.output_kind and meta.family == model.family.name and meta.encoder == "vits"
    assert meta.model == model.checkpoint.path.name and meta.input_size == SIZE and meta.tiling == "off"
    assert meta.values == "raw" and meta.size == values.shape and meta.exr_channel == "Y"
    assert (meta.unit == "metre") == (model.output_kind == "metric_depth")
    assert meta.value_range == tuple(value_ranges(values, kind=meta.kind)[0].__dict__.values())  # what condition uses
    truth = near_bright(depth.numpy(), meta.kind)
    plain = load_depth(save_depth(tmp_path / "plain.exr", depth, model=model)).metadata
    assert plain.value_range == pytest.approx((truth.min(), truth.max()), rel=1e-6)

    header = OpenEXR.File(str(path), header_only=True).header()  # the document, read by the EXR library itself
    assert json.loads(header[METADATA_KEY]) == meta.to_dict()


def test_exr_opens_in_an_independent_reader_with_the_same_values(tmp_path, model_and_depth):
    model, depth = model_and_depth
    path = save_depth(tmp_path / "depth.exr", depth, model=model)
    with av.open(str(path)) as container:  # FFmpeg's own EXR decoder, not the OpenEXR library
        frame = next(container.decode(video=0))
        assert frame.format.name == "grayf32le"
        decoded = frame.to_ndarray()
    assert decoded.shape == tuple(depth.shape)
    assert np.array_equal(decoded, depth.numpy())

    z_path = save_depth(tmp_path / "depth_z.exr", depth, model=model, exr_channel="Z")
    exr = OpenEXR.File(str(z_path), separate_channels=True)
    assert list(exr.channels()) == ["Z"]
    assert np.array_equal(load_depth(z_path).values, depth.numpy())


@pytest.mark.parametrize("invert", [False, True])
def test_png16_gives_values_back_to_a_level_of_the_range(tmp_path, model_and_depth, invert):
    model, depth = model_and_depth
    path = save_depth(tmp_path / "depth.png", depth, model=model, invert=invert)
    with Image.open(path) as image:
        assert image.mode == "I;16"
    chunks = [text for keyword, text in png_text_chunks(path) if keyword == METADATA_KEY.encode()]
    assert len(chunks) == 1  # one JSON document under one key
    document = json.loads(chunks[0])
    assert document["kind"] == model.output_kind and document["near_white"] is (not invert)
    assert document["range"]["of"] == ("disparity" if model.output_kind == "disparity" else "inverse_depth")

    loaded = load_depth(path)
    value_range = loaded.metadata.value_range
    kind = model.output_kind
    truth = near_bright(depth.numpy(), kind)
    error = np.abs(near_bright(loaded.values, kind) - truth).max()
    assert within_levels(error, value_range, truth)  # rounding to the nearest of 65536 levels: half a level
    assert error > 0  # really quantised, not a copy
    if kind == "metric_depth":  # in metres the same step: |d' - d| ~ d^2 * (step in 1 / d)
        metres = np.abs(loaded.values.astype(np.float64) - depth.numpy()) / depth.numpy().astype(np.float64) ** 2
        assert within_levels(metres.max(), value_range, truth, levels=0.51)
    expected = condition(depth, kind=kind).numpy()  # Load Depth's map is near = white whatever was saved
    assert np.abs(loaded.unit() - expected).max() <= LEVEL / 2 + 1e-6


def test_relative_depth_kind_round_trips_as_inverse_depth(tmp_path):
    depth = torch.from_numpy(np.random.default_rng(3).uniform(0.2, 9.0, (20, 30)).astype(np.float32))
    path = save_depth(tmp_path / "relative.png", depth, kind="relative_depth", normalize="percentile")
    loaded = load_depth(path)
    low, high = loaded.metadata.value_range
    assert loaded.metadata.normalize == "percentile" and loaded.kind == "relative_depth"
    truth = near_bright(depth.numpy(), "relative_depth")
    inside = (truth >= low) & (truth <= high)
    assert 0.9 < inside.mean() < 1  # the 2-98 % range: the rest was clipped when the map was made
    error = np.abs(near_bright(loaded.values, "relative_depth") - truth)
    assert within_levels(error[inside].max(), (low, high), truth)


def test_npy_keeps_values_and_its_sidecar_says_what_they_are(tmp_path, model_and_depth):
    model, depth = model_and_depth
    path = save_depth(tmp_path / "depth.npy", depth, model=model)
    assert np.array_equal(np.load(path), depth.numpy())
    document = json.loads(sidecar_path(path).read_text())
    assert document["schema"] == "depth-anything/depth-file" and document["kind"] == model.output_kind
    assert sidecar_path(path) == tmp_path / "depth.json"
    loaded = load_depth(path)
    assert np.array_equal(loaded.values, depth.numpy()) and loaded.metadata.model == model.checkpoint.path.name


def test_saving_never_overwrites_when_asked(tmp_path):
    depth = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    for suffix in (".exr", ".png", ".npy"):
        path = save_depth(tmp_path / f"d{suffix}", depth)
        before = path.read_bytes()
        with pytest.raises(FileExistsError):
            save_depth(path, depth * 2, overwrite=False)
        assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*partial"))


# -------------------------------------------------------------------------------------- files without metadata


def test_files_without_metadata_are_read_as_unit_maps_with_a_note(tmp_path):
    levels = (np.arange(24, dtype=np.uint16) * 2000).reshape(4, 6)
    Image.fromarray(levels).save(tmp_path / "plain.png")
    loaded = load_depth(tmp_path / "plain.png")
    assert loaded.metadata is None and "no Depth Anything metadata" in loaded.note and "near = white" in loaded.note
    np.testing.assert_allclose(loaded.values, levels / 65535.0, rtol=1e-7)
    np.testing.assert_allclose(loaded.unit(), levels / 65535.0, atol=1e-7)

    metres = np.linspace(1, 10, 24, dtype=np.float32).reshape(4, 6)
    OpenEXR.File({"type": OpenEXR.scanlineimage}, {"Z": metres}).write(str(tmp_path / "blender.exr"))
    loaded = load_depth(tmp_path / "blender.exr")
    assert np.array_equal(loaded.values, metres) and "no Depth Anything metadata" in loaded.note
    unit = loaded.unit()  # not a 0..1 map: over its own range
    assert unit.min() == 0 and unit.max() == 1 and unit[-1, -1] == 1


# ------------------------------------------------------------------------------------------------ bad input


def test_bad_depth_files_get_clear_messages(tmp_path):
    rgb = np.ones((4, 6), np.float32)
    OpenEXR.File({"type": OpenEXR.scanlineimage}, {"R": rgb, "G": rgb, "B": rgb}).write(str(tmp_path / "rgb.exr"))
    with pytest.raises(DepthFileError, match=r"rgb.exr has no depth channel: it holds B, G, R.*Save Depth EXR"):
        load_depth(tmp_path / "rgb.exr")

    (tmp_path / "fake.exr").write_bytes(b"not an exr at all")
    with pytest.raises(DepthFileError, match=r"fake.exr cannot be read as OpenEXR"):
        load_depth(tmp_path / "fake.exr")

    levels = np.zeros((4, 6), np.uint16)
    broken = PngInfo()
    broken.add_itxt(METADATA_KEY, '{"schema": "depth-anything/depth-file", "kind": ')
    Image.fromarray(levels).save(tmp_path / "broken.png", pnginfo=broken)
    with pytest.raises(DepthFileError, match=r"broken.png: its 'depth_anything' PNG metadata is not valid JSON"):
        load_depth(tmp_path / "broken.png")

    wrong = PngInfo()
    wrong.add_itxt(METADATA_KEY, json.dumps({"schema": "depth-anything/depth-file", "kind": "banana"}))
    Image.fromarray(levels).save(tmp_path / "wrong.png", pnginfo=wrong)
    with pytest.raises(DepthFileError, match=r"wrong.png.*'kind' must be one of disparity, relative_depth"):
        load_depth(tmp_path / "wrong.png")

    Image.fromarray(np.zeros((4, 6), np.uint8)).save(tmp_path / "gray8.png")
    eight_bit = r"gray8.png is an 8-bit grayscale PNG; depth files are 16-bit.*Load Image"
    with pytest.raises(DepthFileError, match=eight_bit):
        load_depth(tmp_path / "gray8.png")
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "rgb8.png")
    with pytest.raises(DepthFileError, match=r"rgb8.png is an 8-bit RGB PNG"):
        load_depth(tmp_path / "rgb8.png")

    depth = np.random.default_rng(0).random((4, 6)).astype(np.float32)
    save_depth(tmp_path / "a.npy", depth)
    sidecar_path(tmp_path / "a.npy").write_text("[1, 2")
    with pytest.raises(DepthFileError, match=r"a.json \(the metadata of a.npy\) is not valid JSON"):
        load_depth(tmp_path / "a.npy")
    save_depth(tmp_path / "b.npy", depth)
    np.save(tmp_path / "b.npy", np.zeros((5, 5), np.float32))  # replaced by another map: the sidecar no longer fits
    with pytest.raises(DepthFileError, match=r"describes a 4x6 map but the file holds 5x5"):
        load_depth(tmp_path / "b.npy")

    with pytest.raises(DepthFileError, match=r"photo.jpg: depth files are .png, .npy, .exr"):
        load_depth(tmp_path / "photo.jpg")


# ---------------------------------------------------------------------------------------------- command line


def run_cli(*args) -> None:
    assert main([str(a) for a in args]) == 0


def test_command_line_exr_npy_and_png16_say_what_they_hold(tmp_path, v2_vits_path):
    Image.fromarray(scene(40, 56, 1)).save(tmp_path / "photo.png")
    common = ["--checkpoint", v2_vits_path, "--img-path", tmp_path / "photo.png", "--input-size", SIZE, "-q"]
    for fmt in ("exr", "npy", "png16"):
        run_cli(*common, "--outdir", tmp_path / fmt, "--format", fmt)
    exr, npy, png = (load_depth(tmp_path / fmt / f"photo.{suffix}")
                     for fmt, suffix in (("exr", "exr"), ("npy", "npy"), ("png16", "png")))  # fmt: skip
    assert np.array_equal(exr.values, npy.values)  # the same raw float32 in both
    for loaded in (exr, npy, png):
        meta = loaded.metadata
        assert (meta.model, meta.family, meta.encoder, meta.kind) == ("depth_anything_v2_vits.pth", "v2", "vits",
                                                                      "disparity")  # fmt: skip
        assert (meta.input_size, meta.tiling, meta.normalize, meta.near_white) == (SIZE, "off", "per_image", True)
    assert png.metadata.value_range == pytest.approx((npy.values.min(), npy.values.max()), rel=1e-6)
    assert within_levels(np.abs(png.values - npy.values).max(), png.metadata.value_range, npy.values)


def test_command_line_shared_range_is_the_range_each_png16_records(tmp_path, v2_vits_path):
    Image.fromarray(scene(40, 56, 2)).save(tmp_path / "frame2.png")
    flat = np.full((40, 56, 3), 128, np.uint8)  # its own range is narrower than the shared one
    Image.fromarray(flat).save(tmp_path / "frame3.png")
    images = [tmp_path / "frame2.png", tmp_path / "frame3.png"]
    common = ["--checkpoint", v2_vits_path, "--img-path", *images, "--input-size", SIZE, "-q"]
    run_cli(*common, "--outdir", tmp_path / "raw", "--format", "npy")
    run_cli(*common, "--outdir", tmp_path / "png", "--format", "png16", "--normalize", "batch")
    raw = {seed: np.load(tmp_path / "raw" / f"frame{seed}.npy") for seed in (2, 3)}
    shared = (min(r.min() for r in raw.values()), max(r.max() for r in raw.values()))
    narrower = min(r.max() - r.min() for r in raw.values())
    assert narrower < (1 - 100 * LEVEL) * (shared[1] - shared[0])  # its own range is 100s of levels off the shared one
    for seed, values in raw.items():
        loaded = load_depth(tmp_path / "png" / f"frame{seed}.png")
        assert loaded.metadata.normalize == "batch"
        assert loaded.metadata.value_range == pytest.approx(shared, rel=1e-6)  # the shared range, not its own
        # Stored between the passes to 1/65535 of its own range, then written over the shared one: one level.
        assert within_levels(np.abs(loaded.values - values).max(), shared, values, levels=1.0)
