"""The `depth-anything` command, run as a real subprocess on real files, videos and a real local Ray.

Random official-layout checkpoints (tests/checkpoints.py) and small input sizes keep it quick on a CPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from depth_anything import DepthAnything, colorize, normalize, processing_size
from depth_anything.batch.inputs import IMAGE_EXTENSIONS, discover, read_image
from depth_anything.batch.pipeline import ImageJob, InferenceSettings, Task
from depth_anything.batch.outputs import (
    RenderOptions,
    SettingsMismatchError,
    check_settings,
    partial_path,
    remove_stale_partials,
    write_atomic,
)
from depth_anything.cli import build_parser, main
from depth_anything.postprocess import to_uint8, to_uint16

from checkpoints import write_checkpoint

REPO = Path(__file__).resolve().parents[1]
SIZE = "56"  # network input: tiny, so the model runs in milliseconds


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "depth_anything_v2_vits.pth", seed=3)


@pytest.fixture(scope="module")
def model(checkpoint) -> DepthAnything:
    return DepthAnything.from_pretrained(checkpoint, device="cpu")


def cli(*args, cwd: Path, check_rc: int | None = None, timeout: float = 300, env: dict | None = None):
    """Run `python -m depth_anything.cli` as a separate process, as a user's shell would."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", **(env or {})}
    result = subprocess.run([sys.executable, "-m", "depth_anything.cli", *map(str, args)], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=timeout)
    if check_rc is not None:
        assert result.returncode == check_rc, (
            f"rc {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def run_main(*args, cwd: Path, monkeypatch, capsys, check_rc: int) -> tuple[str, str]:
    """The command in this process (quicker than a subprocess); returns (stdout, stderr)."""
    monkeypatch.chdir(cwd)
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert rc == check_rc, f"rc {rc}\nstdout:\n{out}\nstderr:\n{err}"
    return out, err


def smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    """A photo-like uint8 RGB image: gradients and blobs, so depth maps are not flat."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    channels = [np.sin(6 * x * rng.uniform(0.5, 2) + rng.uniform(0, 6)) * np.cos(5 * y * rng.uniform(0.5, 2))
                for _ in range(3)]
    image = (np.stack(channels, axis=-1) * 0.45 + 0.5) * 255
    return np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)


def write_tree(root: Path) -> None:
    """Nested folders with RGB, 16-bit, grayscale, a corrupt image, a non-image and two same-stem files."""
    (root / "trip" / "day1").mkdir(parents=True)
    (root / "trip" / "day2").mkdir(parents=True)
    Image.fromarray(smooth_image(40, 60, 0)).save(root / "a.jpg")
    Image.fromarray(smooth_image(40, 60, 1)).save(root / "trip" / "day1" / "b.png")
    Image.fromarray(smooth_image(40, 60, 2)).save(root / "trip" / "day1" / "b.jpg")  # same stem as b.png
    Image.fromarray(smooth_image(30, 44, 3)).save(root / "trip" / "day2" / "c.webp")
    deep = (smooth_image(36, 52, 4)[..., 0].astype(np.uint16) * 257 + np.arange(52, dtype=np.uint16)).astype(np.uint16)
    Image.fromarray(deep).save(root / "trip" / "deep16.png")
    Image.fromarray(smooth_image(36, 52, 5)[..., 1]).save(root / "trip" / "gray.png")
    (root / "trip" / "day2" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (root / "trip" / "notes.txt").write_text("not an image")


EXPECTED = {
    "a.png", "trip/day1/b_png.png", "trip/day1/b_jpg.png", "trip/day2/c.png", "trip/deep16.png", "trip/gray.png",
}


def outputs(folder: Path, suffix: str = ".png") -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob(f"*{suffix}") if not p.name.startswith(".")}


# ------------------------------------------------------------------------------------------- main path


def test_folder_default_output_matches_official_layout(tmp_path, checkpoint, model):
    write_tree(tmp_path / "in")
    result = cli("--checkpoint", checkpoint, "--img-path", "in", "--outdir", "out", "--input-size", SIZE,
                 cwd=tmp_path, check_rc=1)  # the corrupt file fails the run, after everything else is written

    assert outputs(tmp_path / "out") == EXPECTED
    assert "broken.jpg" in result.stdout and "cannot read image" in result.stdout
    assert "6 written" in result.stdout and "1 failed, 1 other files ignored" in result.stdout
    assert "notes.txt" in result.stderr  # the note about the skipped non-image

    # image | 50 px white | Spectral_r depth of the library's own prediction, per image normalisation
    for name, source in [("a.png", "a.jpg"), ("trip/deep16.png", "trip/deep16.png"),
                         ("trip/gray.png", "trip/gray.png")]:
        out = np.array(Image.open(tmp_path / "out" / name))
        array = read_image(tmp_path / "in" / source)
        height, width = array.shape[:2]
        assert out.shape == (height, 2 * width + 50, 3)
        assert (out[:, width : width + 50] == 255).all()
        expected = to_uint8(colorize(normalize(model.infer(array, input_size=int(SIZE))[0]), "Spectral_r"))
        assert np.abs(out[:, width + 50 :].astype(int) - expected.astype(int)).max() <= 3  # batch-order rounding
        if source.endswith("gray.png"):
            assert (out[:, :width, 0] == out[:, :width, 1]).all()  # gray input shown as gray
    deep = np.array(Image.open(tmp_path / "in" / "trip" / "deep16.png"))
    left = np.array(Image.open(tmp_path / "out" / "trip" / "deep16.png"))[:, :52, 0]
    assert np.abs(left.astype(int) - np.round(deep / 257.0)).max() <= 1  # 16-bit input shown faithfully

    # the same command again resumes: nothing redone, the corrupt file still reported
    again = cli("--checkpoint", checkpoint, "--img-path", "in", "--outdir", "out", "--input-size", SIZE,
                cwd=tmp_path, check_rc=1)
    assert "0 written, 6 already done" in again.stdout


def test_list_file_and_glob(tmp_path, checkpoint, monkeypatch, capsys):
    write_tree(tmp_path / "in")
    (tmp_path / "lists").mkdir()
    # entries relative to the list's own folder, a comment, a blank line and a missing file
    (tmp_path / "lists" / "files.txt").write_text("# my picks\n../in/a.jpg\n\n../in/trip/day2/c.webp\n../in/gone.png\n")
    out, _ = run_main("--checkpoint", checkpoint, "--img-path", "lists/files.txt", "--outdir", "from_list",
                      "--input-size", SIZE, "--pred-only", "--grayscale", cwd=tmp_path, monkeypatch=monkeypatch,
                      capsys=capsys, check_rc=1)
    assert outputs(tmp_path / "from_list") == {"a.png", "trip/day2/c.png"}  # mirrored below the common folder
    assert "gone.png" in out
    assert Image.open(tmp_path / "from_list" / "a.png").mode == "L"

    run_main("--checkpoint", checkpoint, "--img-path", "in/trip/**/*.png", "--outdir", "from_glob",
             "--input-size", SIZE, "--format", "png8", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys,
             check_rc=0)
    assert outputs(tmp_path / "from_glob") == {"day1/b.png", "deep16.png", "gray.png"}
    assert np.array(Image.open(tmp_path / "from_glob" / "gray.png")).shape == (36, 52, 3)  # depth alone, coloured


def test_png16_keeps_more_than_8_bits_and_npy_is_raw(tmp_path, checkpoint, model, monkeypatch, capsys):
    Image.fromarray(smooth_image(64, 96, 7)).save(tmp_path / "photo.png")
    for fmt in ("png16", "npy"):
        run_main("--checkpoint", checkpoint, "--img-path", "photo.png", "--outdir", f"o_{fmt}", "--input-size", SIZE,
                 "--format", fmt, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys, check_rc=0)

    depth16 = np.array(Image.open(tmp_path / "o_png16" / "photo.png"))
    assert depth16.dtype == np.uint16 and depth16.shape == (64, 96)
    assert len(np.unique(depth16)) > 256  # more levels than 8 bits can hold
    assert (depth16 % 257 != 0).mean() > 0.5  # not 8-bit values scaled up
    assert depth16.min() == 0 and depth16.max() == 65535

    raw = np.load(tmp_path / "o_npy" / "photo.npy")
    expected = model.infer(read_image(tmp_path / "photo.png"), input_size=int(SIZE))[0].numpy()
    assert raw.dtype == np.float32 and np.allclose(raw, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(depth16.astype(int) - to_uint16(normalize(torch.from_numpy(raw))).astype(int)).max() <= 1

    # the folder remembers its settings: another format there is refused, unless --overwrite
    again = ["--checkpoint", checkpoint, "--img-path", "photo.png", "--outdir", "o_png16", "--input-size", SIZE,
             "--format", "png8", "--grayscale"]
    _, err = run_main(*again, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys, check_rc=2)
    assert "other settings" in err and "png16" in err
    run_main(*again, "--overwrite", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys, check_rc=0)
    assert np.array(Image.open(tmp_path / "o_png16" / "photo.png")).dtype == np.uint8


def test_sizes_sharing_a_network_size_are_batched_and_match_infer(tmp_path, checkpoint, model, monkeypatch, capsys):
    sizes = [(48, 64), (96, 128), (150, 200), (64, 48)]
    assert len({processing_size(h, w, int(SIZE)) for h, w in sizes[:3]}) == 1  # three share one network size
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(smooth_image(h, w, 40 + i)).save(tmp_path / f"p{i}.png")
    run_main("--checkpoint", checkpoint, "--img-path", ".", "--outdir", "out", "--input-size", SIZE, "--format", "npy",
             cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys, check_rc=0)
    for i, (h, w) in enumerate(sizes):
        raw = np.load(tmp_path / "out" / f"p{i}.npy")
        expected = model.infer(read_image(tmp_path / f"p{i}.png"), input_size=int(SIZE))[0].numpy()
        assert raw.shape == (h, w) and np.allclose(raw, expected, rtol=1e-4, atol=1e-4)


def test_image_job_threads_give_the_depth_of_infer(tmp_path, model):
    # the job runs the stages in reading, model and writing threads, batching two sizes of one aspect ratio
    sizes = [(48, 64), (96, 128), (64, 48)]
    tasks = []
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(smooth_image(h, w, 50 + i)).save(tmp_path / f"p{i}.png")
        tasks.append(Task(tmp_path / f"p{i}.png", tmp_path / "out" / f"p{i}.npy"))
    job = ImageJob(model, InferenceSettings(input_size=int(SIZE), batch_size=2), RenderOptions(format="npy"))
    assert all(outcome.ok for outcome in job.run(tasks))
    for i, task in enumerate(tasks):
        expected = model.infer(read_image(task.source), input_size=int(SIZE))[0].numpy()
        assert np.allclose(np.load(task.output), expected, rtol=1e-4, atol=1e-4)


def test_tiled_option_reaches_the_tiling_engine(tmp_path, checkpoint, model, monkeypatch, capsys):
    Image.fromarray(smooth_image(168, 252, 9)).save(tmp_path / "wide.png")
    run_main("--checkpoint", checkpoint, "--img-path", "wide.png", "--outdir", "out", "--input-size", SIZE,
             "--format", "npy", "--tiled", "on", "--tile", "112", "--overlap", "28", cwd=tmp_path,
             monkeypatch=monkeypatch, capsys=capsys, check_rc=0)
    raw = np.load(tmp_path / "out" / "wide.npy")
    image = read_image(tmp_path / "wide.png")
    tiled = model.infer(image, input_size=int(SIZE), tiled=True, tile=112, overlap=28)[0].numpy()
    single = model.infer(image, input_size=int(SIZE))[0].numpy()
    assert np.allclose(raw, tiled, rtol=1e-4, atol=1e-4)
    assert not np.allclose(raw, single, rtol=1e-2, atol=1e-2)


def test_batch_normalization_shares_one_range_across_images(tmp_path, checkpoint, monkeypatch, capsys):
    Image.fromarray(smooth_image(48, 48, 11)).save(tmp_path / "busy.png")
    Image.fromarray(np.full((48, 48, 3), 128, np.uint8)).save(tmp_path / "flat.png")
    run_main("--checkpoint", checkpoint, "--img-path", "busy.png", "flat.png", "--outdir", "out", "--input-size", SIZE,
             "--format", "png16", "--normalize", "batch", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys,
             check_rc=0)
    busy = np.array(Image.open(tmp_path / "out" / "busy.png")).astype(int)
    flat = np.array(Image.open(tmp_path / "out" / "flat.png")).astype(int)
    both = np.concatenate([busy.ravel(), flat.ravel()])
    assert both.min() == 0 and both.max() == 65535  # one range over both
    spans = sorted([busy.max() - busy.min(), flat.max() - flat.min()])
    assert spans[0] < 0.9 * 65535  # the narrower map is not stretched to the full range, unlike per_image
    assert not (tmp_path / "out" / ".depth-anything-store").exists()  # the stored depth is cleaned up


@pytest.mark.slow
def test_interrupted_run_resumes_with_every_output_complete(tmp_path, checkpoint):
    count = 36
    (tmp_path / "in").mkdir()
    for i in range(count):
        Image.fromarray(smooth_image(56 + 14 * (i % 3), 84, i)).save(tmp_path / "in" / f"img{i:03d}.png")
    args = ["--checkpoint", checkpoint, "--img-path", "in", "--outdir", "out", "--input-size", "140",
            "--batch-size", "1", "--format", "side-by-side"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "depth_anything.cli", *map(str, args)], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while len(outputs(tmp_path / "out")) < 4:
            assert process.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline, "no outputs appeared"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)  # no clean-up handlers run: as a crash or power cut would
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    done_before = outputs(tmp_path / "out")
    assert 4 <= len(done_before) < count, "the kill did not land mid-way"
    for name in done_before:  # whatever carries a final name is complete
        with Image.open(tmp_path / "out" / name) as image:
            image.load()
    mtimes = {name: (tmp_path / "out" / name).stat().st_mtime_ns for name in done_before}

    result = cli(*args, cwd=tmp_path, check_rc=0)
    assert f"{count - len(done_before)} written, {len(done_before)} already done" in result.stdout
    assert outputs(tmp_path / "out") == {f"img{i:03d}.png" for i in range(count)}
    for i in range(count):
        with Image.open(tmp_path / "out" / f"img{i:03d}.png") as image:
            image.load()
            assert image.size == (2 * 84 + 50, 56 + 14 * (i % 3))
    assert all((tmp_path / "out" / n).stat().st_mtime_ns == m for n, m in mtimes.items())  # not redone
    assert not list((tmp_path / "out").glob(".*.partial"))  # temporary files of the killed run removed


def make_video(path: Path, frames: list[np.ndarray], rate: Fraction) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode(None))


def read_video(path: Path) -> tuple[Fraction, list[np.ndarray]]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return Fraction(stream.average_rate), frames


def test_video_keeps_frame_count_and_exact_rate_without_flicker(tmp_path, checkpoint, model, monkeypatch, capsys):
    # alternate a busy scene and a nearly flat one, so that depth ranges differ from frame to frame
    frames = [smooth_image(48, 64, 20) if i % 2 == 0 else np.full((48, 64, 3), 90 + i, np.uint8) for i in range(10)]
    make_video(tmp_path / "clip.mp4", frames, Fraction(30000, 1001))
    (tmp_path / "clip_broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")

    result = cli("--checkpoint", checkpoint, "--video-path", "clip.mp4", "clip_broken.mp4", "--outdir", "out",
                 "--input-size", SIZE, cwd=tmp_path, check_rc=1)
    assert "clip_broken.mp4" in result.stdout and "1 written" in result.stdout
    rate, side_by_side = read_video(tmp_path / "out" / "clip.mp4")
    assert rate == Fraction(30000, 1001)  # exact, not 29 or 30
    assert len(side_by_side) == 10
    assert side_by_side[0].shape == (48, 2 * 64 + 50, 3)
    assert side_by_side[0][:, 64 + 5 : 64 + 45].min() > 240  # the white gap

    for outdir, extra in (("clip_range", []), ("frame_range", ["--normalize", "per_image"])):
        run_main("--checkpoint", checkpoint, "--video-path", "clip.mp4", "--outdir", outdir, "--input-size", SIZE,
                 "--pred-only", "--grayscale", *extra, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys,
                 check_rc=0)

    # what the command saw (decoded input frames) through the library, with both normalisations
    _, decoded = read_video(tmp_path / "clip.mp4")
    depth = model.infer(decoded, input_size=int(SIZE))
    one_range = to_uint8(normalize(depth, "batch")).astype(float)
    own_range = to_uint8(normalize(depth, "per_image")).astype(float)
    assert np.abs(one_range - own_range).mean() > 5  # the clip really needs a shared range

    def error(path: Path, expected: np.ndarray) -> float:
        _, video = read_video(path)
        assert len(video) == 10
        return float(np.abs(np.stack([f[..., 0] for f in video]).astype(float) - expected).mean())

    assert error(tmp_path / "clip_range" / "clip.mp4", one_range) < 3  # H.264 + YUV rounding only
    assert error(tmp_path / "frame_range" / "clip.mp4", own_range) < 3


@pytest.mark.slow
def test_ray_engine_writes_the_same_files_as_the_local_engine(tmp_path, checkpoint, monkeypatch, capsys):
    write_tree(tmp_path / "in")
    frames = [smooth_image(32, 48, 30 + i) for i in range(4)]
    make_video(tmp_path / "clip.mp4", frames, Fraction(25, 1))
    common = ["--checkpoint", checkpoint, "--img-path", "in", "--video-path", "clip.mp4", "--input-size", SIZE,
              "--pred-only", "--grayscale", "--normalize", "batch", "--batch-size", "1"]
    local, _ = run_main(*common, "--outdir", "local", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys, check_rc=1)
    ray = cli(*common, "--outdir", "ray", "--engine", "ray", "--workers", "2", cwd=tmp_path, check_rc=1, timeout=480)
    assert local.splitlines()[0] == ray.stdout.splitlines()[0]  # same counts written / failed
    assert "broken.jpg" in ray.stdout
    assert "4/4 [" in ray.stderr.replace("\r", "\n")  # the workers' frames reached the progress bar

    assert outputs(tmp_path / "ray") == outputs(tmp_path / "local") == EXPECTED
    for name in EXPECTED:
        a = np.array(Image.open(tmp_path / "local" / name)).astype(int)
        b = np.array(Image.open(tmp_path / "ray" / name)).astype(int)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1, name  # float summation order may differ
    rate_local, video_local = read_video(tmp_path / "local" / "clip.mp4")
    rate_ray, video_ray = read_video(tmp_path / "ray" / "clip.mp4")
    assert rate_local == rate_ray == 25 and len(video_local) == len(video_ray) == 4
    assert max(np.abs(x.astype(int) - y.astype(int)).max() for x, y in zip(video_local, video_ray)) <= 3
    assert not (tmp_path / "ray" / ".depth-anything-store").exists()
    assert not (tmp_path / "local" / ".depth-anything-store").exists()


# ------------------------------------------------------------------------------------------ the pieces


def test_discovery_walks_sorted_skips_outdir_and_names_uniquely(tmp_path):
    write_tree(tmp_path / "in")
    (tmp_path / "in" / "out").mkdir()
    Image.fromarray(smooth_image(8, 8, 0)).save(tmp_path / "in" / "out" / "earlier_output.png")
    found = discover([str(tmp_path / "in")], IMAGE_EXTENSIONS, exclude=tmp_path / "in" / "out")
    names = [s.relative.as_posix() for s in found.sources]
    assert names == ["a", "trip/day1/b_jpg", "trip/day1/b_png", "trip/day2/broken", "trip/day2/c",
                     "trip/deep16", "trip/gray"]
    assert [p.name for p in found.ignored] == ["notes.txt"]
    assert discover([str(tmp_path / "nothing*.png")], IMAGE_EXTENSIONS).missing


def test_settings_of_an_output_folder_are_not_mixed(tmp_path):
    check_settings(tmp_path, {"images": {"format": "png8"}}, overwrite=False)
    check_settings(tmp_path, {"videos": {"format": "side-by-side"}}, overwrite=False)  # another kind: fine
    with pytest.raises(SettingsMismatchError, match="format: 'png8' -> 'png16'"):
        check_settings(tmp_path, {"images": {"format": "png16"}}, overwrite=False)
    check_settings(tmp_path, {"images": {"format": "png16"}}, overwrite=True)
    assert json.loads((tmp_path / ".depth-anything.json").read_text()) == {
        "images": {"format": "png16"}, "videos": {"format": "side-by-side"}}


def test_failed_write_leaves_nothing_and_stale_partials_are_removed(tmp_path):
    target = tmp_path / "x.png"

    def fail_halfway(file):
        file.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, fail_halfway)
    assert list(tmp_path.iterdir()) == []

    mine = partial_path(target)  # this (live) process: kept
    dead = mine.with_name(mine.name.replace(f"-{os.getpid()}.", "-999999999."))  # a pid that cannot be alive
    mine.write_bytes(b"x")
    dead.write_bytes(b"x")
    assert remove_stale_partials([tmp_path]) == 1
    assert mine.exists() and not dead.exists()


def test_help_documents_every_option_with_an_example():
    parser = build_parser()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert "E.g." in (action.help or ""), action.option_strings
    official = {"--encoder", "--img-path", "--outdir", "--input-size", "--pred-only", "--grayscale", "--video-path"}
    assert official <= {s for a in parser._actions for s in a.option_strings}


@pytest.mark.parametrize("args, message", [
    (["--pred-only", "--format", "side-by-side"], "contradicts"),
    (["--input-size", "500"], "multiple of 14"),
    (["--format", "png16", "--colormap", "turbo"], "not coloured"),
    (["--tile", "518"], "--tiled on"),
    (["--tiled", "on", "--tile", "500"], "multiple of 14"),
    (["--checkpoint", "depth_anything_v2_vitz"], "Did you mean"),
    (["--checkpoint", "no_such_file.pth"], "neither an existing file"),
    (["--device", "cuda:7"], "cannot start the model on device cuda:7"),
])
def test_bad_options_exit_2_with_advice(tmp_path, capsys, checkpoint, args, message):
    Image.fromarray(smooth_image(8, 8, 0)).save(tmp_path / "x.png")
    model_args = [] if "--checkpoint" in args else ["--checkpoint", str(checkpoint)]
    assert main(["--img-path", str(tmp_path / "x.png"), "--outdir", str(tmp_path / "o"), *model_args, *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_default_model_offline_says_where_to_put_it(tmp_path):
    Image.fromarray(smooth_image(8, 8, 0)).save(tmp_path / "x.png")
    result = cli("--encoder", "vits", "--img-path", "x.png", cwd=tmp_path, check_rc=2,
                 env={"DEPTH_ANYTHING_CACHE": str(tmp_path / "cache")})
    assert "depth_anything_v2_vits.pth" in result.stderr and str(tmp_path / "cache") in result.stderr
    assert "--checkpoint PATH" in result.stderr and "./checkpoints/" in result.stderr
    assert not (tmp_path / "vis_depth").exists()


def test_unknown_family_of_checkpoint_is_refused(tmp_path, capsys, checkpoint):
    anonymous = tmp_path / "weights.pth"
    anonymous.write_bytes(checkpoint.read_bytes())
    Image.fromarray(smooth_image(8, 8, 0)).save(tmp_path / "x.png")
    assert main(["--img-path", str(tmp_path / "x.png"), "--outdir", str(tmp_path / "o"),
                 "--checkpoint", str(anonymous)]) == 2
    assert "family=" in capsys.readouterr().err
