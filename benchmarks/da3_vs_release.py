"""Our Depth Anything 3 vs the release's own network (`depth-anything-3` from PyPI): same weights, same input.

Reports, side by side and interleaved so that machine noise hits both alike:
  1. the network alone on one pre-processed image at the release's 504 (504 x 378, a 4:3 photo): ours
     `model.predict` (network + the sky rule, and metres for metric) vs the release's `DepthAnything3Net`
     forward (which applies the same sky rule), in float32 on the CPU, with the largest relative difference;
  2. end to end from an 8-bit 4:3 photo of 1600 x 1200: ours `model.infer` (pre-processing, network, sky, depth
     back at the photo's size) vs the release's `InputProcessor` + network (its output stays at 504 x 378).
On a GPU (`--device cuda`), ours runs in fp16 and the release under the fp16 autocast its API uses.
Weights are seeded random in the official layout (no downloads here): speed does not depend on their values.

    python benchmarks/da3_vs_release.py --repeats 5                      # DA3MONO-LARGE on the CPU
    python benchmarks/da3_vs_release.py --device cuda --repeats 20       # on a GPU, fp16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # runnable from a checkout without installing
from checkpoints import random_da3_state_dict  # noqa: E402

from depth_anything.families.depth_anything_3 import DepthAnything3, config_from_state, to_own_names  # noqa: E402
from depth_anything.loading import load_weights  # noqa: E402

CONFIGS = {"mono_large": ("da3mono-large", "da3_mono"), "small": ("da3-small", "da3")}


def interleaved(fns: dict, repeats: int, sync) -> dict[str, list[float]]:
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def release_network(config: str, state: dict, device: torch.device):
    from depth_anything_3.cfg import create_object, load_config
    from depth_anything_3.registry import MODEL_REGISTRY

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = create_object(load_config(MODEL_REGISTRY[config]))
    full = random_da3_state_dict(seed=0, shapes={k: tuple(v.shape) for k, v in net.state_dict().items()})
    full.update(state)
    net.load_state_dict(full, strict=True)
    return net.eval().to(device)


def report(title: str, times: dict[str, list[float]]) -> None:
    ours, theirs = (statistics.median(times[k]) * 1000 for k in ("ours", "release"))
    print(f"{title}: ours {ours:.0f} ms, release {theirs:.0f} ms -> ours is {theirs / ours:.2f}x the speed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="mono_large", choices=list(CONFIGS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    half = device.type != "cpu"
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    config, family = CONFIGS[args.variant]
    state = random_da3_state_dict(args.variant, seed=0)
    theirs = release_network(config, state, device)
    own = to_own_names(state)
    with torch.device("meta"):
        ours = DepthAnything3(config_from_state(own, "random"), family=family)
    load_weights(ours, own, Path("random"), torch.float16 if half else torch.float32)
    ours = ours.to(device).eval()
    ours.head.to(memory_format=torch.channels_last)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.variant} on {device} "
          f"({'fp16' if half else 'fp32'}), repeats {args.repeats}")  # fmt: skip

    pixels = torch.randn(1, 3, 378, 504, generator=torch.Generator().manual_seed(0)).to(device)
    autocast = torch.autocast(device.type, dtype=torch.float16, enabled=half)

    def release_forward(x):
        with torch.inference_mode(), autocast:
            return theirs(x[:, None])

    depth_ours = ours.predict(pixels)
    reference = release_forward(pixels)
    depth_release = reference["depth"][:, 0].float()
    relative = (depth_ours - depth_release).abs() / depth_release.abs()
    if "sky" in reference:  # the release draws 100,000 random pixels for the sky's depth; we take them all
        ground = reference["sky"][:, 0] < 0.3
        in_sky = f"{float(relative[~ground].max()):.2e} in it" if (~ground).any() else "no sky in this image"
        print(f"largest relative difference of the depth: {float(relative[ground].max()):.2e} outside the sky "
              f"({float(ground.float().mean()):.0%} of the pixels), {in_sky}")  # fmt: skip
    else:
        print(f"largest relative difference of the depth: {float(relative.max()):.2e}")
    network = {"ours": lambda: ours.predict(pixels), "release": lambda: release_forward(pixels)}
    report("network at 504 x 378", interleaved(network, args.repeats, sync))

    from depth_anything_3.utils.io.input_processor import InputProcessor

    photo = (np.random.default_rng(0).random((1200, 1600, 3)) * 255).astype(np.uint8)
    processor = InputProcessor()

    def release_end_to_end():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batch, _, _ = processor([photo], process_res=504, process_res_method="upper_bound_resize", num_workers=1)
        return release_forward(batch.to(device))

    report(
        "end to end, a 1600 x 1200 photo",
        interleaved({"ours": lambda: ours.infer(photo), "release": release_end_to_end}, args.repeats, sync),
    )


if __name__ == "__main__":
    main()
