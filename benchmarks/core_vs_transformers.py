"""Our Depth Anything vs transformers' DepthAnythingForDepthEstimation: same weights, same inputs, interleaved.

Reports, on the CPU in float32:
  1. one 518x518 image, the network alone (both take the same normalised tensor);
  2. a batch of 4 mixed-size images end to end: ours `model.infer` vs transformers' image processor + model +
     `post_process_depth_estimation` (each image at its own size, as a user gets it);
  3. the model's GFLOP/s next to this machine's measured fp32 matmul GFLOP/s.
Weights are random (the official layout; no downloads here): speed does not depend on their values.

    python benchmarks/core_vs_transformers.py --encoder vits --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # runnable from a checkout without installing
from checkpoints import write_checkpoint  # noqa: E402

from depth_anything import DepthAnything  # noqa: E402
from depth_anything.hf_format import save_transformers  # noqa: E402


def interleaved(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Time each callable `repeats` times, alternating between them so that machine noise hits all alike."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="vits", choices=["vits", "vitb", "vitl"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import AutoImageProcessor, DepthAnythingForDepthEstimation

    work = Path(tempfile.mkdtemp())
    path = write_checkpoint(work / f"depth_anything_v2_{args.encoder}.pth", args.encoder)
    ours = DepthAnything.from_pretrained(path, device="cpu", dtype="fp32")
    folder = save_transformers(ours, work / "hf")
    theirs = DepthAnythingForDepthEstimation.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)

    print(f"torch {torch.__version__}, {args.threads} threads, encoder {args.encoder}, repeats {args.repeats}")

    x = torch.randn(1, 3, 518, 518)
    with torch.inference_mode():
        assert torch.allclose(ours(x), theirs(pixel_values=x).predicted_depth, rtol=1e-4, atol=1e-4)
        single = interleaved({"ours": lambda: ours(x), "transformers": lambda: theirs(pixel_values=x)}, args.repeats)

    rng = np.random.default_rng(0)
    from PIL import Image

    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in
              [(480, 640), (720, 1280), (512, 512), (768, 576)]]

    def transformers_end_to_end():
        with torch.inference_mode():
            out = []
            for image in images:  # its processor pads nothing: different sizes cannot share a batch
                inputs = processor(images=image, return_tensors="pt")
                depth = theirs(**inputs)
                out.append(processor.post_process_depth_estimation(depth, target_sizes=[image.size[::-1]]))
            return out

    mixed = interleaved({"ours": lambda: ours.infer(images), "transformers": transformers_end_to_end}, args.repeats)

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        ours(x)
    flops = counter.get_total_flops()
    machine = matmul_gflops()

    def report(title, times):
        a, b = statistics.median(times["ours"]), statistics.median(times["transformers"])
        print(f"{title}: ours {a * 1000:.0f} ms, transformers {b * 1000:.0f} ms (median of {args.repeats}); "
              f"speed-up x{b / a:.2f}")
        return a

    t_single = report("518x518, batch 1, network", single)
    report("4 mixed-size images, end to end", mixed)
    print(f"model: {flops / 1e9:.1f} GFLOP per 518x518 image -> {flops / t_single / 1e9:.1f} GFLOP/s; "
          f"machine fp32 matmul (2048^2): {machine:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
