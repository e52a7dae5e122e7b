"""Videos through the `depth-anything` command: real H.264 files made with PyAV (tests/videos.py) with sound,
rotation side data, a variable frame rate, odd sides and a damaged packet; resuming an interrupted video; and
every output (depth video, 16-bit frames, raw npy) against the library's own depth of the decoded frames.
"""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from depth_anything import DepthMetadata, DepthModel, cli, load_depth
from depth_anything.batch import video
from depth_anything.batch.video import VIDEO_STORE_FOLDER
from depth_anything.conditioning import condition, value_ranges
from depth_anything.postprocess import to_uint8, to_uint16
from test_cli import run_main
from checkpoints import write_video_checkpoint
from videos import clip_frames, damage_packet, make_video, read_video

SIZE = 56  # network input: tiny, so the model runs in milliseconds
VDA_BATCH = 32  # a whole window through the encoder at once: same depth, several times faster on a CPU at SIZE


@pytest.fixture(scope="module")
def vda_path(tmp_path_factory) -> Path:
    """A random Video Depth Anything Small in the official layout and name (temporal modules random too)."""
    return write_video_checkpoint(tmp_path_factory.mktemp("vda") / "video_depth_anything_vits.pth", seed=7)


@pytest.fixture(scope="module")
def vda(vda_path) -> DepthModel:
    return DepthModel.from_pretrained(vda_path, device="cpu")


def decoded_upright(path: Path, quarter_turns: int = 0) -> list[np.ndarray]:
    """The frames of a test video as the command sees them: decoded, then turned as players show them."""
    return [np.ascontiguousarray(np.rot90(f, quarter_turns)) for f in read_video(path).frames]


def png_frames(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def store_is_gone(outdir: Path) -> bool:
    return not (outdir / VIDEO_STORE_FOLDER).exists()


# ------------------------------------------------------------------------------------------- outputs


def test_phone_clip_becomes_an_upright_depth_video_with_its_sound_and_timing(tmp_path, v2_vits_path, v2_vits,
                                                                             monkeypatch, capsys):
    make_video(tmp_path / "phone.mp4", clip_frames(9), Fraction(30000, 1001), rotation=90, audio_seconds=0.3)
    out, _ = run_main("--checkpoint", v2_vits_path, "--video-path", "phone.mp4", "--outdir", "out", "--input-size",
                      SIZE, "--pred-only", "--grayscale", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys,
                      check_rc=0)
    assert "rotated 90 degrees" in out
    source, written = read_video(tmp_path / "phone.mp4"), read_video(tmp_path / "out" / "phone.mp4")
    assert written.rate == Fraction(30000, 1001) and len(written.frames) == 9
    assert written.frames[0].shape[:2] == (64, 48)  # stored landscape, shown portrait: turned in the pixels
    assert set(written.rotations) == {0}
    seconds = lambda video: [p * video.time_base for p in video.pts]  # noqa: E731
    assert seconds(written) == seconds(source)  # every frame at its source time: in sync with the sound
    assert written.audio_codec == "aac" and abs(written.audio_seconds - source.audio_seconds) < 1e-3

    # +90 degrees counter-clockwise side data: shown turned counter-clockwise (ffmpeg: transpose=cclock)
    depth = v2_vits.infer(decoded_upright(tmp_path / "phone.mp4", 1), input_size=SIZE)
    expected = to_uint8(condition(depth, normalize="batch")).astype(float)
    got = np.stack([f[..., 0] for f in written.frames]).astype(float)
    assert np.abs(got - expected).mean() < 3  # H.264 + YUV rounding only
    assert store_is_gone(tmp_path / "out")


def test_sound_mp4_cannot_hold_is_re_encoded_to_aac(tmp_path, v2_vits_path, monkeypatch, capsys):
    make_video(tmp_path / "camera.mov", clip_frames(4), Fraction(25), audio_seconds=0.5, audio_codec="pcm_s16le")
    assert read_video(tmp_path / "camera.mov").audio_codec == "pcm_s16le"
    run_main("--checkpoint", v2_vits_path, "--video-path", "camera.mov", "--outdir", "out", "--input-size", SIZE,
             "--pred-only", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys, check_rc=0)
    written = read_video(tmp_path / "out" / "camera.mp4")
    assert written.audio_codec == "aac" and abs(written.audio_seconds - 0.5) < 0.05  # AAC adds a priming frame


def test_png16_frames_and_npy_of_a_clip_share_its_range(tmp_path, v2_vits_path, v2_vits, monkeypatch, capsys):
    make_video(tmp_path / "clip.mp4", clip_frames(7), Fraction(24))
    common = ["--checkpoint", v2_vits_path, "--video-path", "clip.mp4", "--input-size", SIZE]
    for fmt in ("png16", "npy"):
        run_main(*common, "--format", fmt, "--outdir", fmt, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys,
                 check_rc=0)

    raw = v2_vits.infer(decoded_upright(tmp_path / "clip.mp4"), input_size=SIZE)
    npy = np.load(tmp_path / "npy" / "clip.npy")
    assert npy.dtype == np.float32 and npy.shape == (7, 48, 64)
    torch.testing.assert_close(torch.from_numpy(npy), raw, rtol=1e-5, atol=1e-5 * float(raw.abs().max()))

    frames = png_frames(tmp_path / "png16" / "clip_frames")
    assert list(frames) == [f"{i:06d}.png" for i in range(7)]
    expected = to_uint16(condition(raw, normalize="batch"))
    for name, want in zip(frames, expected):
        assert frames[name].dtype == np.uint16 and frames[name].shape == (48, 64)
        assert np.abs(frames[name].astype(int) - want.astype(int)).max() <= 2  # 16-bit store, rendered again
    assert not all(f.min() == 0 and f.max() == 65535 for f in frames.values())  # one range for the clip
    assert store_is_gone(tmp_path / "png16") and store_is_gone(tmp_path / "npy")

    # Both record what they hold: the model, and the clip's one range (the frames read back as its values).
    clip_range = value_ranges(raw, normalize="batch")[0]
    sidecar = DepthMetadata.from_json((tmp_path / "npy" / "clip.json").read_bytes(), "clip.json")
    assert (sidecar.values, sidecar.family, sidecar.model, sidecar.normalize) == ("raw", "v2", Path(v2_vits_path).name,
                                                                                  "batch")
    np.testing.assert_allclose(sidecar.value_range, (clip_range.low, clip_range.high), rtol=1e-6)
    for name in ("000000.png", "000006.png"):
        frame = load_depth(tmp_path / "png16" / "clip_frames" / name)
        assert frame.metadata.values == "levels" and frame.metadata.family == "v2"
        np.testing.assert_allclose(frame.metadata.value_range, sidecar.value_range, rtol=1e-4)
        torch.testing.assert_close(torch.from_numpy(frame.values), raw[int(name[:6])], rtol=2e-3,
                                   atol=2e-3 * float(raw.abs().max()))


def test_odd_sized_clip_with_a_variable_frame_rate_keeps_size_and_timestamps(tmp_path, v2_vits_path, v2_vits,
                                                                             monkeypatch, capsys):
    pts = [0, 1, 2, 5, 6, 11]  # 1/30 s steps with gaps: a variable frame rate
    make_video(tmp_path / "vfr.mp4", clip_frames(6, 33, 47), Fraction(30), pts=pts)
    common = ["--checkpoint", v2_vits_path, "--video-path", "vfr.mp4", "--input-size", SIZE]
    out, _ = run_main(*common, "--pred-only", "--outdir", "mp4", cwd=tmp_path, monkeypatch=monkeypatch,
                      capsys=capsys, check_rc=0)
    assert "variable frame rate" in out
    run_main(*common, "--format", "png16", "--outdir", "png16", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys,
             check_rc=0)

    written = read_video(tmp_path / "mp4" / "vfr.mp4")
    assert [p * written.time_base for p in written.pts] == [Fraction(p, 30) for p in pts]
    assert written.frames[0].shape == (34, 48, 3)  # 4:2:0 video: the odd sides padded by one row / column
    frames = png_frames(tmp_path / "png16" / "vfr_frames")
    assert len(frames) == 6 and {f.shape for f in frames.values()} == {(33, 47)}  # exact size
    raw = v2_vits.infer(decoded_upright(tmp_path / "vfr.mp4"), input_size=SIZE)
    expected = to_uint16(condition(raw, normalize="batch"))
    assert max(np.abs(f.astype(int) - e.astype(int)).max() for f, e in zip(frames.values(), expected)) <= 2


def test_a_damaged_frame_is_skipped_and_reported(tmp_path, v2_vits_path, monkeypatch, capsys):
    make_video(tmp_path / "damaged.mp4", clip_frames(10), Fraction(25), intra_only=True)
    damage_packet(tmp_path / "damaged.mp4", 4)
    common = ["--checkpoint", v2_vits_path, "--video-path", "damaged.mp4", "--input-size", SIZE]
    out, _ = run_main(*common, "--format", "png16", "--outdir", "png16", cwd=tmp_path, monkeypatch=monkeypatch,
                      capsys=capsys, check_rc=0)
    assert "frame 4 (0.16 s) could not be decoded" in out and "skipped" in out
    names = set(png_frames(tmp_path / "png16" / "damaged_frames"))
    assert names == {f"{i:06d}.png" for i in range(10) if i != 4}  # the others keep their numbers

    run_main(*common, "--pred-only", "--outdir", "mp4", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys,
             check_rc=0)
    written = read_video(tmp_path / "mp4" / "damaged.mp4")
    assert [p * written.time_base for p in written.pts] == [Fraction(i, 25) for i in range(10) if i != 4]


def test_clips_shorter_than_a_window(tmp_path, vda_path, vda, monkeypatch, capsys):
    for count in (1, 5):  # Video Depth Anything pads its 32-frame window with the last frame
        make_video(tmp_path / f"short{count}.mp4", clip_frames(count), Fraction(25))
    run_main("--checkpoint", vda_path, "--video-path", "short1.mp4", "short5.mp4", "--outdir", "out", "--input-size",
             SIZE, "--format", "npy", "--batch-size", VDA_BATCH, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys,
             check_rc=0)
    assert np.load(tmp_path / "out" / "short1.npy").shape == (1, 48, 64)
    raw = vda.infer_video(decoded_upright(tmp_path / "short5.mp4"), input_size=SIZE, batch_size=VDA_BATCH)
    written = np.load(tmp_path / "out" / "short5.npy")
    assert written.shape == (5, 48, 64)
    np.testing.assert_allclose(written, raw.numpy(), rtol=1e-5, atol=1e-5 * float(raw.abs().max()))


def test_bad_videos_fail_clearly_without_output(tmp_path, v2_vits_path, monkeypatch, capsys):
    import av

    container = av.open(str(tmp_path / "empty.mp4"), "w")  # a header, not a single frame
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    container.start_encoding()
    container.close()
    (tmp_path / "noise.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    make_video(tmp_path / "ok.mp4", clip_frames(3), Fraction(25))
    whole = (tmp_path / "ok.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(whole[: len(whole) * 2 // 3])  # a copy that stopped two thirds in
    out, _ = run_main("--checkpoint", v2_vits_path, "--video-path", "empty.mp4", "noise.mp4", "cut.mp4", "ok.mp4",
                      "--outdir", "out", "--input-size", SIZE, "--pred-only", cwd=tmp_path, monkeypatch=monkeypatch,
                      capsys=capsys, check_rc=1)
    assert "1 written" in out and "3 failed" in out
    assert "empty.mp4: the file has no video stream" in out and "noise.mp4: cannot open video" in out
    assert "cut.mp4: the file has no video stream (an .mp4 copied only in part" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".depth-anything.json", "ok.mp4"]


def test_a_video_given_as_an_image_is_pointed_to_video_path(tmp_path, v2_vits_path, monkeypatch, capsys):
    make_video(tmp_path / "clip.mp4", clip_frames(2), Fraction(25))
    (tmp_path / "folder").mkdir()
    make_video(tmp_path / "folder" / "inside.mov", clip_frames(2), Fraction(25))
    Image.fromarray(clip_frames(1)[0]).save(tmp_path / "folder" / "photo.png")
    out, err = run_main("--checkpoint", v2_vits_path, "--img-path", "clip.mp4", "folder", "--outdir", "out",
                        "--input-size", SIZE, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys, check_rc=1)
    assert "clip.mp4: this is a video: pass it with --video-path" in out
    assert "1 of them are videos: pass them with --video-path" in err  # the walked folder's inside.mov
    assert (tmp_path / "out" / "photo.png").is_file()


# ------------------------------------------------------------------------------------------- resuming


def _interrupt_after(monkeypatch, frames: int) -> list[int]:
    """Ctrl-C once the model has finished `frames` frames, as a user would press it; returns the counts seen."""
    seen: list[int] = []

    def count(self, n):
        seen.append(n)
        if sum(seen) >= frames:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli._Progress, "frames", count)
    return seen


def _count_frames(monkeypatch) -> list[int]:
    seen: list[int] = []
    monkeypatch.setattr(cli._Progress, "frames", lambda self, n: seen.append(n))
    return seen


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_interrupted_video_resumes_after_its_last_finished_chunk(tmp_path, v2_vits_path, v2_vits, monkeypatch,
                                                                    capsys):
    monkeypatch.setattr(video, "CHUNK_FRAMES", 4)
    make_video(tmp_path / "clip.mp4", clip_frames(11), Fraction(25))
    args = ["--checkpoint", str(v2_vits_path), "--video-path", "clip.mp4", "--outdir", "out", "--input-size",
            str(SIZE), "--format", "npy", "--batch-size", "2"]
    monkeypatch.chdir(tmp_path)

    _interrupt_after(monkeypatch, 6)  # chunk 0 (frames 0-3) finished, chunk 1 half done
    assert cli.main(args) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    assert not (tmp_path / "out" / "clip.npy").exists()
    store = tmp_path / "out" / VIDEO_STORE_FOLDER / "clip"
    assert (store / "chunk_000000.json").is_file() and not (store / "chunk_000001.json").exists()

    computed = _count_frames(monkeypatch)
    out, err = run_main(*args, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys, check_rc=0)
    assert "resume where an interrupted run stopped" in err and "resumed after frame 4" in out
    assert computed[0] == 4 and sum(computed) == 11  # the stored frames count as done; the model ran on the rest
    assert store_is_gone(tmp_path / "out")

    fresh = v2_vits.infer(decoded_upright(tmp_path / "clip.mp4"), input_size=SIZE).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "out" / "clip.npy"), fresh, rtol=1e-5,
                               atol=1e-5 * float(np.abs(fresh).max()))  # per-frame models resume exactly

    # --overwrite stopped half-way never touches the finished file
    before = digest(tmp_path / "out" / "clip.npy")
    _interrupt_after(monkeypatch, 6)
    assert cli.main([*args, "--overwrite"]) == 130
    capsys.readouterr()
    assert digest(tmp_path / "out" / "clip.npy") == before


def test_an_interrupted_video_depth_anything_clip_resumes_with_an_overlap(tmp_path, vda_path, vda, monkeypatch,
                                                                          capsys):
    """A temporal model re-runs RESUME_OVERLAP frames before the resume point and is fitted onto the stored
    depth there; what was stored is kept as it is."""
    monkeypatch.setattr(video, "CHUNK_FRAMES", 8)
    monkeypatch.setattr(video, "RESUME_OVERLAP", 8)
    make_video(tmp_path / "clip.mp4", clip_frames(30), Fraction(25))
    args = ["--checkpoint", str(vda_path), "--video-path", "clip.mp4", "--outdir", "out", "--input-size", str(SIZE),
            "--format", "npy", "--batch-size", str(VDA_BATCH)]
    monkeypatch.chdir(tmp_path)
    _interrupt_after(monkeypatch, 20)  # chunks 0 and 1 (frames 0-15) stored
    assert cli.main(args) == 130
    capsys.readouterr()
    store = tmp_path / "out" / VIDEO_STORE_FOLDER / "clip"
    stored = np.concatenate([np.fromfile(store / f"chunk_{i:06d}.bin", np.float32) for i in (0, 1)])

    fed: list[int] = []
    infer_video = type(vda).infer_video  # counts the frames the model is given

    def counting(self, frames, **options):
        return infer_video(self, (fed.append(1) or frame for frame in frames), **options)

    monkeypatch.setattr(type(vda), "infer_video", counting)
    computed = _count_frames(monkeypatch)
    out, _ = run_main(*args, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys, check_rc=0)
    assert "resumed after frame 16" in out
    assert len(fed) == 30 - 16 + 8  # the model saw the remaining frames and the overlap only
    assert computed[0] == 16 and sum(computed) == 30
    resumed = np.load(tmp_path / "out" / "clip.npy")
    assert resumed.shape == (30, 48, 64)
    assert np.array_equal(resumed[:16].ravel(), stored)  # the interrupted run's depth, kept bit for bit
    assert np.isfinite(resumed).all() and (resumed[16:] >= 0).all() and resumed[16:].std() > 0


def test_tiling_a_temporal_model_tiles_in_time_too(tmp_path, vda_path, vda, monkeypatch, capsys):
    """--tiled on with Video Depth Anything: each tile position a clip through the windows, as the library does."""
    make_video(tmp_path / "clip.mp4", clip_frames(5), Fraction(25))
    run_main("--checkpoint", vda_path, "--video-path", "clip.mp4", "--outdir", "out", "--input-size", SIZE,
             "--format", "npy", "--batch-size", VDA_BATCH, "--tiled", "on", "--tile", "28", cwd=tmp_path,
             monkeypatch=monkeypatch, capsys=capsys, check_rc=0)
    frames = decoded_upright(tmp_path / "clip.mp4")
    raw = vda.infer_video(frames, input_size=SIZE, batch_size=VDA_BATCH, tiled=True, tile=28)
    untiled = vda.infer_video(frames, input_size=SIZE, batch_size=VDA_BATCH)
    written = np.load(tmp_path / "out" / "clip.npy")
    np.testing.assert_allclose(written, raw.numpy(), rtol=1e-5, atol=1e-5 * float(raw.abs().max()))
    assert np.abs(written - untiled.numpy()).max() > 1e-3 * float(untiled.abs().max())


@pytest.mark.parametrize("option, message", [
    (["--backend", "onnx"], "backend 'onnx' runs frame-by-frame networks"),
    (["--format", "exr"], "not --format exr"),
])
def test_options_a_clip_cannot_take_exit_2_with_advice(tmp_path, vda_path, capsys, option, message):
    make_video(tmp_path / "clip.mp4", clip_frames(2), Fraction(25))
    assert cli.main(["--checkpoint", str(vda_path), "--video-path", str(tmp_path / "clip.mp4"), "--outdir",
                     str(tmp_path / "out"), *option]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_store_trusts_only_finished_chunks(tmp_path):
    """What a kill leaves (a chunk without its record, a record whose data is short, partial files of a dead
    process) is not taken for depth; a store made for another source or model is discarded."""
    from depth_anything.batch.video import DepthStore
    from depth_anything.batch.video_io import Frame

    identity = {"source": "clip.mp4", "model": "a"}
    store = DepthStore(tmp_path / "store", identity, raw=True, height=2, width=3)
    for start in (0, 2):
        pairs = [(Frame(n, n, None), torch.full((2, 3), float(n))) for n in (start, start + 1)]
        assert store.add_chunk(iter(pairs)) == 2
    (tmp_path / "store" / "chunk_000002.bin").write_bytes(b"\0" * 24)  # data written, record not yet
    (tmp_path / "store" / "chunk_000001.bin").write_bytes(b"\0" * 20)  # a record whose data is short
    dead = tmp_path / "store" / ".chunk_000003.bin.somehost-999999999.partial"
    dead.write_bytes(b"half")

    again = DepthStore(tmp_path / "store", identity, raw=True, height=2, width=3)
    assert again.frames_done == 2 and [number for number, *_ in again.frames()] == [0, 1]
    other = DepthStore(tmp_path / "store", {**identity, "model": "b"}, raw=True, height=2, width=3)
    assert other.frames_done == 0 and not (tmp_path / "store" / "chunk_000000.bin").exists()
