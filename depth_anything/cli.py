"""`depth-anything`: batch depth maps from images, folders, lists, globs and videos.

Keeps the official run.py / run_video.py flags (--encoder, --img-path, --video-path, --outdir, --input-size,
--pred-only, --grayscale) and their default output, and adds formats, normalization, tiling, resuming and
Ray scale-out. Run `depth-anything --help` for every option with an example.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shutil
import sys
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .backends import BACKEND_HELP, BACKENDS, DEFAULT_BACKEND, BackendUnavailableError
from .batch.inputs import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, Discovery, Source, discover
from .batch.outputs import FORMATS, RenderOptions, SettingsMismatchError, check_settings
from .batch.pipeline import InferenceSettings, ModelSpec, Outcome, run_images
from .batch.video import frame_count, video_tasks
from .configs import ENCODERS
from .conditioning import NORMALIZE_MODES
from .depth_files import depth_metadata
from .families import FAMILIES, get_family
from .files import output_folder_problem, remove_stale_partials
from .loading import CheckpointError, ModelNotAvailableError, resolve_checkpoint
from .options import (
    BATCH_SIZE,
    DEFAULT_INPUT_SIZE,
    HELP,
    RAW_FORMATS,
    RESIZE_METHODS,
    TILING_MODES,
    batch_size_problem,
    focal_px_problem,
    gamma_problem,
    input_size_problem,
    max_size_problem,
    tile_problem,
)
from .postprocess import COLORMAPS

EXIT_FAILED = 1  # some inputs failed; everything else was written
EXIT_USAGE = 2  # nothing was done: bad options, model not loadable, output folder in use with other settings

EXAMPLES = """\
examples:
  # official run.py usage: image | gap | colour depth, side by side, into ./vis_depth
  depth-anything --encoder vits --img-path photos/ --outdir depth/

  # conditioning images for a depth ControlNet: 16-bit grayscale depth only, tiled for large photos
  depth-anything --checkpoint depth_anything_v2_vitl --img-path 'shots/**/*.jpg' --outdir cond/ \\
      --format png16 --tiled auto

  # a video, depth only, one depth range for the whole clip (no flicker)
  depth-anything --video-path clip.mp4 --outdir out/ --pred-only

  # temporally consistent depth with Video Depth Anything: a depth video and 16-bit frames for ControlNet
  depth-anything --checkpoint video_depth_anything_vits --video-path clip.mp4 --outdir out/ --pred-only --grayscale
  depth-anything --checkpoint video_depth_anything_vits --video-path clip.mp4 --outdir out/ --format png16

  # faster: the network in ONNX Runtime (exported once, cached), or the fastest backend measured exact here
  depth-anything --img-path photos/ --outdir depth/ --backend onnx
  depth-anything --img-path photos/ --outdir depth/ --backend auto

  # a standalone ONNX file of the network (see depth-anything export --help)
  depth-anything export --checkpoint depth_anything_v2_vits --format onnx --output v2_vits.onnx

  # the same job on Ray: 4 workers with a GPU each on a running cluster
  depth-anything --img-path /shared/photos --outdir /shared/depth --engine ray --address auto \\
      --workers 4 --gpus-per-worker 1

An interrupted run resumes: run the same command again; finished outputs are skipped (--overwrite redoes them).
Exit status: 0 all written, 1 some inputs failed (listed at the end), 2 nothing done (bad options or model).
"""


class UsageError(ValueError):
    """Options that cannot work together, or a model that cannot be loaded."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="depth-anything",
        description="Depth maps with Depth Anything v1 / v2 / v2-metric / 3 and Video Depth Anything from images, "
        "folders, lists, globs and videos. Flags of the official run.py / run_video.py work unchanged.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inputs = parser.add_argument_group("inputs and outputs")
    inputs.add_argument(
        "--img-path", nargs="+", metavar="PATH", default=[],
        help="image file, folder (walked recursively, sorted; non-images skipped), .txt list (one path per line) "
        "or quoted glob; several allowed. E.g. --img-path photos/ or --img-path list.txt 'extra/**/*.png'",
    )
    inputs.add_argument(
        "--video-path", nargs="+", metavar="PATH", default=[],
        help="video file, folder, .txt list or glob; each video becomes an .mp4 with the source's frame timing "
        "and sound (--format png16: a <name>_frames/ folder of 16-bit frames; npy: one (T, H, W) float32 array). "
        "Video Depth Anything checkpoints use their temporal windows, other models run frame by frame; an "
        "interrupted video resumes from its last finished chunk. E.g. --video-path clips/",
    )
    inputs.add_argument(
        "--outdir", metavar="DIR",
        help="output folder; input folder structure is mirrored inside it (default ./vis_depth, or "
        "./vis_video_depth for videos only, as the official scripts). E.g. --outdir depth/",
    )
    inputs.add_argument(
        "--overwrite", action="store_true",
        help="redo outputs that already exist (default: skip them, so an interrupted run resumes). "
        "E.g. --overwrite",
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--encoder", choices=list(ENCODERS),
        help="model size; picks the official checkpoint when --checkpoint is not given (default vitl, as "
        "run.py; a local checkpoints/<name>.pth as the official scripts use is found too). E.g. --encoder vits",
    )
    model.add_argument(
        "--checkpoint", metavar="PATH|NAME",
        help="official .pth, .safetensors repack, transformers folder, or a known name (downloaded once). "
        "Default: the official v2 model for --encoder. E.g. --checkpoint depth_anything_v2_vitb or "
        "--checkpoint ~/models/depth_anything_v2_vitl_fp16.safetensors",
    )
    model.add_argument(
        "--family", metavar="NAME",
        help=f"{', '.join(FAMILIES)}; needed when the checkpoint's file name does not tell (v1 and v2 weights "
        "look identical). E.g. --family v1",
    )
    model.add_argument(
        "--input-size", type=int, metavar="N",
        help=f"{HELP['input_size']} Default: the family's own ({DEFAULT_INPUT_SIZE} for v1 / v2). "
        "E.g. --input-size 700",
    )
    model.add_argument("--max-size", type=int, metavar="N", help=f"{HELP['max_size']} E.g. --max-size 2072")
    model.add_argument(
        "--tiled", choices=TILING_MODES, default="off",
        help=f"{HELP['tiling']} Default off. E.g. --tiled auto",
    )
    model.add_argument("--tile", type=int, metavar="N", help=f"With --tiled: {HELP['tile']} E.g. --tile 1036")
    model.add_argument("--overlap", type=int, metavar="N", help=f"With --tiled: {HELP['overlap']} E.g. --overlap 256")
    model.add_argument(
        "--focal-px", type=float, metavar="F",
        help=f"{HELP['focal_px']} One value for every input (default: each photo's EXIF). E.g. --focal-px 1450",
    )
    model.add_argument(
        "--resize-method", choices=RESIZE_METHODS,
        help=f"{HELP['resize_method']} Default upper_bound. E.g. --resize-method lower_bound",
    )

    look = parser.add_argument_group("output format")
    look.add_argument(
        "--format", choices=FORMATS, help=f"{HELP['format']} Default side-by-side. E.g. --format png16",
    )
    look.add_argument("--pred-only", action="store_true",
                      help="save the depth alone, as run.py --pred-only (same as --format png8). E.g. --pred-only")
    look.add_argument("--grayscale", action="store_true",
                      help="gray depth instead of the colour map, as run.py --grayscale. E.g. --grayscale")
    look.add_argument(
        "--colormap", choices=[c for c in COLORMAPS if c != "grayscale"],
        help="colour map for png8 / side-by-side / video (default Spectral_r for v2 and metric, inferno for v1, "
        "as the official scripts). E.g. --colormap turbo",
    )
    look.add_argument(
        "--normalize", choices=NORMALIZE_MODES,
        help=f"{HELP['normalize']} Default per_image for images (as run.py), batch for videos. "
        "E.g. --normalize batch",
    )
    look.add_argument("--invert", action="store_true", help=f"{HELP['invert']} E.g. --invert")
    look.add_argument("--gamma", type=float, default=1.0, metavar="G",
                      help=f"{HELP['gamma']} Default 1. E.g. --gamma 1.5")

    run = parser.add_argument_group("running")
    run.add_argument("--batch-size", type=int, default=BATCH_SIZE, metavar="N",
                     help=f"{HELP['batch_size']} Default {BATCH_SIZE}. E.g. --batch-size 16")
    run.add_argument("--device", metavar="DEVICE",
                     help="cuda, cuda:1, mps or cpu (default: the best available). E.g. --device cuda:1")
    run.add_argument("--dtype", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
                     help="weights precision (default: fp16 on GPU, fp32 on CPU). E.g. --dtype bf16")
    run.add_argument("--backend", choices=list(BACKENDS), default=DEFAULT_BACKEND,
                     help=f"{BACKEND_HELP} Default {DEFAULT_BACKEND}. E.g. --backend onnx")
    run.add_argument("--engine", choices=("local", "ray"), default="local",
                     help="local: this process; ray: Ray Data workers, each with its own model, reading and writing "
                     "the same paths (shared storage on a cluster). E.g. --engine ray")
    run.add_argument("--address", metavar="ADDR",
                     help="Ray cluster to join with --engine ray (default: start a small local one). "
                     "E.g. --address auto or --address ray://head:10001")
    run.add_argument("--workers", type=int, default=2, metavar="N",
                     help="Ray workers, each loading the model once (default 2). E.g. --workers 8")
    run.add_argument("--cpus-per-worker", type=float, default=1, metavar="N",
                     help="CPUs reserved per Ray worker, also its torch threads (default 1). E.g. --cpus-per-worker 4")
    run.add_argument("--gpus-per-worker", type=float, default=0, metavar="N",
                     help="GPUs per Ray worker; fractions share a GPU (default 0). E.g. --gpus-per-worker 0.5")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes, only the summary. E.g. -q")
    return parser


# ------------------------------------------------------------------------------------------------ options


def _default_checkpoint(encoder: str, family: str | None) -> str:
    """The official model of a family for an encoder; a copy where the official scripts keep it (checkpoints/)
    wins."""
    chosen = get_family(family or "v2")
    known = next((m for m in chosen.known_models if m.encoder == encoder), None)
    if known is None:
        raise UsageError(f"no released {chosen.name} model for --encoder {encoder}; give --checkpoint")
    local = Path("checkpoints") / Path(known.filename).name
    return str(local) if local.is_file() else known.name


def _model_spec(args) -> ModelSpec:
    try:
        checkpoint = resolve_checkpoint(
            args.checkpoint or _default_checkpoint(args.encoder or "vitl", args.family), family=args.family
        )
    except (FileNotFoundError, ModelNotAvailableError) as exc:
        hint = "" if args.checkpoint else (
            " Or give --checkpoint PATH, or keep the file in ./checkpoints/ as the official scripts do."
        )
        raise UsageError(f"{exc}{hint}") from exc
    except (CheckpointError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    dtype = None if args.dtype == "auto" else args.dtype
    return ModelSpec(str(checkpoint.path), checkpoint.family.name, args.device, dtype, args.backend)


def _check_options(args) -> None:
    if not args.img_path and not args.video_path:
        raise UsageError("give --img-path and/or --video-path (see --help for examples)")
    for problem in (
        None if args.input_size is None else input_size_problem(args.input_size, "--input-size", maximum=None),
        max_size_problem(args.max_size),
        batch_size_problem(args.batch_size),
        gamma_problem(args.gamma),
        tile_problem(args.tile, args.overlap),
        focal_px_problem(args.focal_px),
    ):
        if problem is not None:
            raise UsageError(problem)
    if args.pred_only and args.format == "side-by-side":
        raise UsageError("--pred-only saves depth alone; it contradicts --format side-by-side")
    if args.grayscale and args.colormap:
        raise UsageError("--grayscale and --colormap contradict each other; give one")
    fmt = _image_format(args)
    if fmt in ("png16", *RAW_FORMATS) and (args.colormap or args.grayscale):
        raise UsageError(f"--format {fmt} is not coloured; --colormap / --grayscale apply to png8 and side-by-side")
    if fmt in RAW_FORMATS and (args.normalize or args.invert or args.gamma != 1.0):
        raise UsageError(f"--format {fmt} keeps the raw depth; --normalize / --invert / --gamma apply to pictures")
    if fmt == "exr" and importlib.util.find_spec("OpenEXR") is None:
        raise UsageError("--format exr needs the OpenEXR bindings: pip install openexr")
    if args.video_path and fmt == "exr":
        raise UsageError("videos are written as an .mp4 (side-by-side, png8), 16-bit frames (png16) or one float32 "
                         ".npy, not --format exr")
    if args.tiled == "off" and (args.tile or args.overlap):
        raise UsageError("--tile / --overlap apply with --tiled on or --tiled auto")
    if args.engine != "ray" and args.address:
        raise UsageError("--address is for --engine ray")
    if args.workers < 1 or args.cpus_per_worker <= 0 or args.gpus_per_worker < 0:
        raise UsageError("--workers must be at least 1, --cpus-per-worker positive, --gpus-per-worker >= 0")


def _image_format(args) -> str:
    return args.format or ("png8" if args.pred_only else "side-by-side")


def _inference_settings(args) -> InferenceSettings:
    return InferenceSettings(
        args.input_size, args.max_size, args.batch_size, args.tiled, args.tile, args.overlap, args.focal_px,
        args.resize_method,
    )


def _check_family_options(args, family) -> None:
    """Options that only some families take, checked once the family is known."""
    if args.focal_px is not None and not family.uses_focal_length:
        raise UsageError(
            f"--focal-px scales the metres of Depth Anything 3 metric; {family.name} ({family.description}) does not "
            "take a focal length. Drop --focal-px."
        )
    if args.resize_method is not None and args.resize_method not in family.preprocessing.methods:
        raise UsageError(
            f"--resize-method chooses Depth Anything 3's pre-processing; {family.name} has one rule. Drop "
            "--resize-method."
        )


# -------------------------------------------------------------------------------------------------- report


@dataclass
class Report:
    """What a run did, for the summary and the exit status."""

    written: int = 0
    skipped: int = 0
    ignored: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # written, with something to know

    def add(self, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            if outcome.ok:
                self.written += 1
                if outcome.note:
                    self.notes.append((str(outcome.task.source), outcome.note))
            else:
                self.failed.append((str(outcome.task.source), outcome.error))

    def summary(self) -> str:
        lines = [f"{self.written} written, {self.skipped} already done (skipped; --overwrite redoes them), "
                 f"{len(self.failed)} failed, {len(self.ignored)} other files ignored."]
        if self.notes:
            lines.append("Notes:")
            lines.extend(f"  {source}: {note}" for source, note in self.notes)
        if self.failed:
            lines.append("Failed:")
            lines.extend(f"  {source}: {reason}" for source, reason in self.failed)
        return "\n".join(lines)


class _Progress:
    """A tqdm bar counting finished items (images/s or frames/s), thread-safe, off with --quiet."""

    def __init__(self, total: int | None, unit: str, desc: str, quiet: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit=unit, desc=desc, disable=quiet, file=sys.stderr, dynamic_ncols=True,
                        smoothing=0.1)

    def __call__(self, _outcome=None) -> None:
        self.bar.update(1)

    def frames(self, count: int) -> None:
        self.bar.update(count)

    def close(self) -> None:
        self.bar.close()


def _note(args, message: str) -> None:
    if not args.quiet:
        print(f"note: {message}", file=sys.stderr)


def _note_ignored(args, found: Discovery, kind: str) -> None:
    if found.ignored:
        shown = ", ".join(str(p) for p in found.ignored[:5]) + (", ..." if len(found.ignored) > 5 else "")
        _note(args, f"skipped {len(found.ignored)} file(s) that are not {kind}: {shown}")
        if kind == "images" and (videos := sum(p.suffix.lower() in VIDEO_EXTENSIONS for p in found.ignored)):
            _note(args, f"{videos} of them are videos: pass them with --video-path for their depth videos")


# ----------------------------------------------------------------------------------------------------- run


def _run_images(args, engine, sources: Sequence[Source], outdir: Path, options: RenderOptions, report: Report) -> None:
    done = run_images(
        engine, sources, outdir, options, overwrite=args.overwrite,
        progress=lambda total, description: _Progress(total, "img", description, args.quiet),
    )
    if done.removed_partials:
        _note(args, f"removed {done.removed_partials} unfinished temporary file(s) of an interrupted run")
    report.skipped += done.skipped
    report.add(done.outcomes)


def _run_videos(args, engine, sources: Sequence[Source], outdir: Path, options: RenderOptions, report: Report) -> None:
    tasks = video_tasks(sources, outdir, options.format)
    todo = [t for t in tasks if args.overwrite or not t.output.exists()]
    report.skipped += len(tasks) - len(todo)
    remove_stale_partials({t.output.parent for t in todo})
    resumable = [t for t in todo if t.store.is_dir()]
    if args.overwrite:
        for task in resumable:
            shutil.rmtree(task.store, ignore_errors=True)  # redo from the first frame
    elif resumable:
        _note(args, f"{len(resumable)} video(s) resume where an interrupted run stopped")
    counts = [frame_count(t.source) for t in todo]
    total = sum(counts) if None not in counts else None
    progress = _Progress(total, "frame", f"{len(todo)} video(s)", args.quiet)
    try:
        report.add(engine.videos(todo, options, progress=progress.frames))
    finally:
        progress.close()


def _videos_given_as_images(images: Discovery, report: Report) -> None:
    """A video named in --img-path fails with advice; videos in walked folders are only counted in the note."""
    kept = []
    for source in images.sources:
        if source.path.suffix.lower() in VIDEO_EXTENSIONS:
            report.failed.append((str(source.path), "this is a video: pass it with --video-path"))
        else:
            kept.append(source)
    images.sources = kept


def _make_engine(args, spec: ModelSpec, settings: InferenceSettings):
    from .batch.engines import LocalEngine, RayEngine

    try:
        if args.engine == "ray":
            # Load once here too: a bad checkpoint is reported once, not by every worker.
            probe = LocalEngine(ModelSpec(spec.checkpoint, spec.family, "cpu", "fp32"), settings)
            family, encoder = probe.model.family, probe.model.encoder
            del probe
            engine = RayEngine(spec, settings, address=args.address, workers=args.workers,
                               cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker)
        else:
            engine = LocalEngine(spec, settings)
            family, encoder = engine.model.family, engine.model.encoder
    except (CheckpointError, ModelNotAvailableError, FileNotFoundError, BackendUnavailableError) as exc:
        raise UsageError(str(exc)) from exc
    except (ValueError, RuntimeError, AssertionError, ConnectionError) as exc:
        # e.g. --device cuda without a GPU, an unknown --dtype, a Ray address that does not answer
        where = f"Ray at {args.address}" if args.engine == "ray" and args.address else f"device {args.device or 'auto'}"
        raise UsageError(f"cannot start the model on {where}: {exc}") from exc
    if args.encoder and args.checkpoint and args.encoder != encoder:
        engine.close()
        raise UsageError(f"--encoder {args.encoder} but {args.checkpoint} is a {encoder} model; drop one of them")
    return engine, family, encoder


@contextmanager
def _backend_notes(args):
    """Backends say when they export, build or compile (first runs take longer): as notes, unless --quiet."""
    logger = logging.getLogger("depth_anything.backends")
    if args.quiet or logger.handlers:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("note: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def run(args) -> int:
    """Run a parsed command line; returns the exit status."""
    with _backend_notes(args):
        return _run(args)


def _run(args) -> int:
    _check_options(args)
    settings = _inference_settings(args)
    outdir = Path(args.outdir or ("./vis_depth" if args.img_path else "./vis_video_depth")).expanduser()
    if (problem := output_folder_problem(outdir)) is not None:  # before the model loads: nothing is done
        raise UsageError(problem)
    images = discover(args.img_path, IMAGE_EXTENSIONS, exclude=outdir) if args.img_path else Discovery()
    videos = discover(args.video_path, VIDEO_EXTENSIONS, exclude=outdir) if args.video_path else Discovery()

    report = Report(ignored=images.ignored + videos.ignored)
    report.failed.extend(images.missing + videos.missing)
    _videos_given_as_images(images, report)
    _note_ignored(args, images, "images")
    _note_ignored(args, videos, "videos")
    if not images.sources and not videos.sources:
        report.failed.append((" ".join(args.img_path + args.video_path), "found no input to process"))
        print(report.summary())
        return EXIT_FAILED

    spec = _model_spec(args)
    _check_family_options(args, get_family(spec.family))
    engine, family, encoder = _make_engine(args, spec, settings)
    try:
        official_colormap = "inferno" if family.name == "v1" else "Spectral_r"
        colormap = "grayscale" if args.grayscale else args.colormap or official_colormap
        input_size = settings.input_size or family.preprocessing.input_size
        about = depth_metadata(
            kind=family.output_kind, model_name=Path(spec.checkpoint).name, family=family.name, encoder=encoder or None,
            input_size=input_size, max_size=settings.max_size, tiling=settings.tiled, tile=settings.tile,
            overlap=settings.overlap,
        )
        look = dict(kind=family.output_kind, invert=args.invert, gamma=args.gamma)
        image_options = RenderOptions(_image_format(args), colormap, args.normalize or "per_image", **look,
                                      about=about)
        video_options = RenderOptions(_image_format(args), colormap, args.normalize or "batch", **look, about=about)
        model_record = dict(checkpoint=Path(spec.checkpoint).name, family=family.name, encoder=encoder,
                            input_size=input_size, max_size=settings.max_size, tiled=settings.tiled,
                            tile=settings.tile, overlap=settings.overlap, focal_px=settings.focal_px,
                            resize_method=settings.resize_method)
        kinds = {}
        if images.sources:
            kinds["images"] = {**image_options.settings(), **model_record}
        if videos.sources:
            kinds["videos"] = {**video_options.settings(), **model_record}
        try:
            check_settings(outdir, kinds, args.overwrite)
        except SettingsMismatchError as exc:
            raise UsageError(str(exc)) from exc

        if images.sources:
            _run_images(args, engine, images.sources, outdir, image_options, report)
        if videos.sources:
            _run_videos(args, engine, videos.sources, outdir, video_options, report)
    finally:
        engine.close()
    print(report.summary())
    return EXIT_FAILED if report.failed else 0


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings of the library (a long work estimate, fp16 overflow) as one `note:` line, not a code location."""
    print(f"note: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `depth-anything` command (`depth-anything export ...`: see `depth_anything.cli_export`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["export"]:
        from .cli_export import main as export_main

        return export_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return run(args)
    except UsageError as exc:
        print(f"depth-anything: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ninterrupted: finished outputs are kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
