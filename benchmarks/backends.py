"""The backends against the eager model and transformers, side by side in one run.

CPU parts (run anywhere; fp32):
  network   v2-S, one 518x518 image, the network alone: eager / onnx / compile (with --compile) vs transformers'
            DepthAnythingForDepthEstimation with the same weights, interleaved.
  batch     4 images of mixed sizes end to end (prepare -> network -> restore): ours per backend vs transformers'
            image processor + model + post_process_depth_estimation.
  cli       the `depth-anything` command as a user runs it (a subprocess: start-up, model load and writing
            counted) vs a loop over transformers' depth-estimation pipeline (in this warm process: its imports
            are not counted, its model load is), on two folders of photos: every photo a different network size
            (phone portraits, landscapes, squares, panoramas), and one aspect ratio at several resolutions.
            The command's first run with a fast backend (exporting to the cache) is reported apart.
GPU part (--gpu, on a CUDA machine): v2-S fp16 518x518 batch-1 latency per backend, batch-32 throughput for
  v2-S and v2-L, TensorRT build time and peak VRAM.

Weights are random in the official layout (no downloads here): speed does not depend on their values.

    python benchmarks/backends.py --parts network,batch,cli --repeats 5
    python benchmarks/backends.py --gpu            # on an NVIDIA GPU
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]
from checkpoints import write_checkpoint  # noqa: E402
from cli_throughput import photo  # noqa: E402
from core_vs_transformers import interleaved  # noqa: E402  (one warm-up each, then alternating repeats)

from depth_anything import DepthAnything, processing_size  # noqa: E402

# (height, width): every one a different network size at input size 518
MIXED = [(4032, 3024), (3024, 4032), (1080, 1920), (1920, 1080), (2048, 2048), (1000, 4000), (1080, 2400),
         (2400, 1080)]
ONE_ASPECT = [(768, 1024), (960, 1280), (1200, 1600), (1536, 2048), (600, 800), (1080, 1440), (900, 1200),
              (480, 640)]


def report(title: str, times: dict[str, list[float]], peer: str) -> None:
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"\n{title} (median of {len(next(iter(times.values())))}):")
    for name, seconds in medians.items():
        ratio = medians[peer] / seconds
        print(f"  {name:<14} {seconds * 1000:8.0f} ms   x{ratio:.2f} vs {peer}")


# ------------------------------------------------------------------------------------------------ CPU parts


def part_network(work: Path, checkpoint: Path, args) -> None:
    from transformers import DepthAnythingForDepthEstimation

    from depth_anything.hf_format import save_transformers

    eager = DepthAnything.from_pretrained(checkpoint, device="cpu")
    theirs = DepthAnythingForDepthEstimation.from_pretrained(save_transformers(eager, work / "hf")).eval()
    x = torch.randn(1, 3, 518, 518)
    fns = {"transformers": lambda: theirs(pixel_values=x)}
    backends = ["eager", "onnx"] + (["compile"] if args.compile else [])
    models = {name: DepthAnything.from_pretrained(checkpoint, device="cpu", backend=name) for name in backends}
    with torch.inference_mode():
        reference = theirs(pixel_values=x).predicted_depth
        for name, model in models.items():
            fns[name] = (lambda m: lambda: m.predict(x))(model)
            difference = float((model.predict(x) - reference).abs().max() / reference.abs().max())
            print(f"{name}: max relative difference from transformers {difference:.1e}")
        report("v2-S, 518x518, batch 1, the network", interleaved(fns, args.repeats), "transformers")


def part_batch(work: Path, checkpoint: Path, args) -> None:
    from transformers import AutoImageProcessor, DepthAnythingForDepthEstimation

    from depth_anything.hf_format import save_transformers

    eager = DepthAnything.from_pretrained(checkpoint, device="cpu")
    folder = save_transformers(eager, work / "hf_batch")
    theirs = DepthAnythingForDepthEstimation.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    images = [photo(h, w, i) for i, (h, w) in enumerate([(480, 640), (720, 1280), (512, 512), (768, 576)])]

    def transformers_end_to_end():
        with torch.inference_mode():
            for image in images:  # its processor pads nothing: different sizes cannot share a batch
                inputs = processor(images=image, return_tensors="pt")
                processor.post_process_depth_estimation(theirs(**inputs), target_sizes=[image.size[::-1]])

    fns = {"transformers": transformers_end_to_end}
    for name in ["eager", "onnx"] + (["compile"] if args.compile else []):
        model = DepthAnything.from_pretrained(checkpoint, device="cpu", backend=name)
        fns[name] = (lambda m: lambda: m.infer(images))(model)
    report("4 images of mixed sizes, end to end", interleaved(fns, args.repeats), "transformers")


def command(checkpoint: Path, folder: Path, outdir: Path, backend: str, cache: Path) -> float:
    """The command as a subprocess, start-up included; seconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DEPTH_ANYTHING_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "depth_anything.cli", "--checkpoint", str(checkpoint), "--img-path",
                          str(folder), "--outdir", str(outdir), "--pred-only", "--grayscale", "--device", "cpu",
                          "--backend", backend, "-q"], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"depth-anything failed:\n{run.stderr}")
    return seconds


def transformers_loop(hf_folder: Path, images: list[Path], outdir: Path) -> float:
    from PIL import Image
    from transformers import pipeline

    start = time.perf_counter()
    estimator = pipeline("depth-estimation", model=str(hf_folder), device="cpu", dtype=torch.float32)
    for path in images:
        result = estimator(Image.open(path))
        result["depth"].save(outdir / (path.stem + ".png"))
    return time.perf_counter() - start


def part_cli(work: Path, checkpoint: Path, args) -> None:
    from depth_anything.hf_format import save_transformers

    import transformers.pipelines  # noqa: F401 - the peer runs warm: its imports are not counted

    hf_folder = save_transformers(DepthAnything.from_pretrained(checkpoint, device="cpu"), work / "hf_cli")
    cache = work / "cache"
    folders = {}
    for name, sizes in (("mixed aspect ratios", MIXED), ("one aspect ratio", ONE_ASPECT)):
        folder = work / name.replace(" ", "_")
        folder.mkdir()
        for i, (h, w) in enumerate(sizes):
            photo(h, w, 100 + i).save(folder / f"photo_{i}.jpg", quality=92)
        folders[name] = folder
        net_sizes = {processing_size(h, w) for h, w in sizes}
        print(f"{name}: {len(sizes)} photos, {len(net_sizes)} network sizes")

    first = command(checkpoint, folders["mixed aspect ratios"], work / "first", "onnx", cache)
    print(f"first run with --backend onnx (exports the network to the cache): {first:.1f} s")
    for name, folder in folders.items():
        images = sorted(folder.glob("*.jpg"))
        times: dict[str, list[float]] = {"transformers": [], "eager": [], "onnx": []}
        for round_ in range(args.rounds):
            order = list(times) if round_ % 2 == 0 else list(times)[::-1]
            for who in order:
                out = work / f"out_{who}_{round_}_{folder.name}"
                out.mkdir()
                if who == "transformers":
                    times[who].append(transformers_loop(hf_folder, images, out))
                else:
                    times[who].append(command(checkpoint, folder, out, who, cache))
        n = len(images)
        print(f"\nthe command vs the transformers pipeline loop, {name} ({n} photos, {args.rounds} rounds):")
        for who, seconds in times.items():
            ratios = [t / s for t, s in zip(times["transformers"], seconds)]
            print(f"  {who:<13} {n / statistics.median(seconds):.3f} img/s ({statistics.median(seconds):.1f} s)   "
                  f"x{statistics.median(ratios):.2f} vs transformers (rounds: "
                  f"{', '.join(f'{r:.2f}' for r in ratios)})")


# ------------------------------------------------------------------------------------------------- GPU part


def part_gpu(work: Path, args) -> None:
    if not torch.cuda.is_available():
        print("\nGPU: not measured: no CUDA device here.")
        return
    device = torch.device("cuda")
    print(f"\nGPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    results = {}
    for encoder in ("vits", "vitl"):
        checkpoint = write_checkpoint(work / f"depth_anything_v2_{encoder}.pth", encoder, seed=0)
        for backend in ("eager", "compile", "onnx", "tensorrt"):
            try:
                torch.cuda.reset_peak_memory_stats()
                start = time.perf_counter()
                model = DepthAnything.from_pretrained(checkpoint, device="cuda", dtype="fp16", backend=backend)
                one = torch.randn(1, 3, 518, 518, device=device)
                many = torch.randn(32, 3, 518, 518, device=device)
                with torch.inference_mode():
                    model.predict(one)
                    model.predict(many)  # builds / compiles both shapes
                    torch.cuda.synchronize()
                    ready = time.perf_counter() - start
                    latency = _cuda_time(lambda: model.predict(one), 50)
                    batch = _cuda_time(lambda: model.predict(many), 10)
                peak = torch.cuda.max_memory_allocated() / 2**30
                results[(encoder, backend)] = dict(latency_ms=latency * 1000, images_per_s=32 / batch,
                                                   ready_s=ready, torch_peak_gib=peak)
                print(f"  v2-{encoder[-1].upper()} {backend:<9} batch 1: {latency * 1000:6.2f} ms   batch 32: "
                      f"{32 / batch:7.0f} img/s   first use (build/compile): {ready:6.1f} s   torch peak "
                      f"{peak:.1f} GiB")
            except Exception as exc:  # noqa: BLE001 - report and go on with the next backend
                print(f"  v2-{encoder[-1].upper()} {backend:<9} failed: {type(exc).__name__}: {str(exc)[:300]}")
    (work.parent / "gpu_results.json").write_text(json.dumps({f"{k[0]}/{k[1]}": v for k, v in results.items()}))


def _cuda_time(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="network,batch,cli", help="comma-separated: network, batch, cli")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the command-line comparison")
    parser.add_argument("--compile", action="store_true", help="include torch.compile (minutes per shape on a CPU)")
    parser.add_argument("--gpu", action="store_true", help="the GPU part only")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="backends_bench_"))
    os.environ["DEPTH_ANYTHING_CACHE"] = str(work / "cache")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    try:
        if args.gpu:
            part_gpu(work, args)
            return
        checkpoint = write_checkpoint(work / "depth_anything_v2_vits.pth", "vits", seed=0)
        for part in args.parts.split(","):
            {"network": part_network, "batch": part_batch, "cli": part_cli}[part.strip()](work, checkpoint, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
