"""A Depth Anything network as a standalone ONNX file: normalised pixels in, the raw prediction out.

The file takes `pixel_values` (N, 3, H, W) float32, the official pre-processing's output (RGB in [0, 1], resized so
that the short side is the input size and both sides are multiples of 14, normalised with the ImageNet mean and
std), and returns `depth` (N, H, W) float32: disparity for v1 / v2, metres for metric models. A float16 file
keeps float32 at its two ends. The position embedding follows the official rule (bicubic with the +0.1 scale
factor) at every input size, as graph operations (`DinoV2Encoder.position_embedding`), and `export_onnx` checks
the file against the eager network at each size it was exported for.

    depth-anything export --checkpoint depth_anything_v2_vits --format onnx --output depth_anything_v2_vits.onnx
"""

from __future__ import annotations

import copy
import io
import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..devices import choose_dtype
from ..files import write_atomic
from ..options import PATCH

OPSET = 17
INPUT_NAME = "pixel_values"
OUTPUT_NAME = "depth"
CHECK_SIZES = ((518, 518), (518, 784), (784, 518))  # where a dynamic file is checked when no sizes are given
TRACE_SIZE = (196, 266)  # the example the graph is traced at: small, and not the stored 37 x 37 grid


class ExportError(ValueError):
    """Export options that cannot work, or a file that does not reproduce the network."""


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'518x518,518x784' -> [(518, 518), (518, 784)] as (height, width); each side a positive multiple of 14.

    >>> parse_sizes("518x518, 518x784")
    [(518, 518), (518, 784)]
    """
    sizes = []
    for part in (p.strip() for p in text.split(",")):
        match = re.fullmatch(r"(\d+)\s*[xX]\s*(\d+)", part)
        if not match:
            raise ExportError(f"--sizes takes HEIGHTxWIDTH pairs separated by commas (e.g. 518x518,518x784), got {part!r}.")
        height, width = int(match[1]), int(match[2])
        if height <= 0 or width <= 0 or height % PATCH or width % PATCH:
            raise ExportError(
                f"size {part}: both sides must be positive multiples of {PATCH} (the network's patch), e.g. "
                f"{max(PATCH, round(height / PATCH) * PATCH)}x{max(PATCH, round(width / PATCH) * PATCH)}."
            )
        sizes.append((height, width))
    if not sizes:
        raise ExportError("--sizes is empty; give at least one HEIGHTxWIDTH, e.g. 518x518.")
    return sizes


class ExportedNetwork(nn.Module):
    """What the ONNX file computes: float32 pixels -> the network in its precision -> float32 prediction."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        self.precision = next(network.parameters()).dtype

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.network(pixel_values.to(self.precision)).float()


@dataclass
class ExportResult:
    """An exported file and how it compares with the eager network (relative difference per checked size)."""

    path: Path
    dtype: torch.dtype
    sizes: list[tuple[int, int]] | None  # None: any size (dynamic height and width)
    checked: dict[tuple[int, int], float] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    dynamic: bool = True


def metadata(model, dtype: torch.dtype, sizes: Sequence[tuple[int, int]] | None, dynamic: bool) -> dict[str, str]:
    """What a user of the file needs to know, stored in the file (`metadata_props`)."""
    from .. import __version__

    rule = model.family.preprocessing
    return {
        "producer": f"depth-anything-preprocessor {__version__}",
        "family": model.family.name,
        "encoder": model.encoder,
        "output": model.output_kind,
        "dtype": str(dtype).replace("torch.", ""),
        "input_size": str(rule.input_size),
        "mean": json.dumps([float(v) for v in rule.mean]),
        "std": json.dumps([float(v) for v in rule.std]),
        "shape": "dynamic" if dynamic else "static",  # static: the one size in "sizes" only
        "sizes": ",".join(f"{h}x{w}" for h, w in sizes or ()),  # the sizes it was exported for and checked at
        "input": f"{INPUT_NAME}: (N, 3, H, W) float32, RGB in [0, 1] normalised with mean and std, H and W multiples of 14",
        "output_name": f"{OUTPUT_NAME}: (N, H, W) float32, {model.output_kind}",
    }


def onnx_bytes(
    model,
    dtype: torch.dtype,
    *,
    static_size: tuple[int, int] | None = None,
    properties: dict[str, str] | None = None,
) -> bytes:
    """The network as ONNX: dynamic batch, and dynamic height / width unless `static_size` fixes them."""
    network = copy.deepcopy(model).to(device="cpu", dtype=dtype).eval()
    wrapped = ExportedNetwork(network)
    height, width = static_size or TRACE_SIZE
    example = torch.zeros(1, 3, height, width)
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    if static_size is None:
        axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch", 1: "height", 2: "width"}}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about the size checks it turns into constants, and about itself being the older
        # exporter; the graph is checked against the eager network instead.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped, (example,), buffer, dynamo=False, opset_version=OPSET, input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], dynamic_axes=axes, do_constant_folding=True,
        )
    data = buffer.getvalue()
    if properties:
        data = _with_metadata(data, properties)
    return data


def _with_metadata(data: bytes, properties: dict[str, str]) -> bytes:
    import onnx

    proto = onnx.load_from_string(data)
    del proto.metadata_props[:]
    for key, value in properties.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def probe_pixels(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Normalised-looking pixels for comparing a compiled network with the eager one."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, height, width, generator=generator)


def compare_with_eager(model, session, sizes: Sequence[tuple[int, int]], dtype: torch.dtype) -> dict:
    """Relative difference of the file (an onnxruntime session) from the eager network at each size."""
    import numpy as np

    from ..backends import relative_difference

    reference_model = model if (model.dtype == dtype and model.device.type == "cpu") else None
    if reference_model is None:
        reference_model = copy.deepcopy(model).to(device="cpu", dtype=dtype).eval()
    checked = {}
    for height, width in sizes:
        pixels = probe_pixels(1, height, width)
        with torch.inference_mode():
            reference = reference_model(pixels.to(dtype)).float()
        result = session.run(None, {INPUT_NAME: pixels.numpy().astype(np.float32)})[0]
        checked[(height, width)] = relative_difference(torch.from_numpy(result), reference)
    return checked


def export_onnx(
    model,
    path: str | Path,
    *,
    dtype: str | torch.dtype | None = None,
    sizes: Sequence[tuple[int, int]] | None = None,
    dynamic: bool | None = None,
    check: bool = True,
) -> ExportResult:
    """Write `model`'s network as a standalone ONNX file that onnxruntime runs on the official pre-processing.

    Args:
        model: a loaded `DepthModel` (any device; it is copied to the CPU for export).
        path: the .onnx file to write (atomically: an interrupted export leaves no file).
        dtype: "fp32" (default) or "fp16"; input and output stay float32 either way.
        sizes: (height, width) pairs, multiples of 14. One size and `dynamic` not set: the file takes that size
            only (the fastest form for TensorRT); several: any size, checked at each of these.
        dynamic: any height and width (the default when `sizes` is not given).
        check: run the file with onnxruntime at each size and refuse it (ExportError) when it differs from the
            eager network by more than float rounding (1e-4 relative in fp32). fp16 files are checked only where
            onnxruntime runs float16 kernels (skipped on a CPU-only onnxruntime).

    Returns:
        An `ExportResult` with the relative difference at each checked size.

    Example:
        >>> model = DepthAnything.from_pretrained("depth_anything_v2_vits", device="cpu")  # doctest: +SKIP
        >>> export_onnx(model, "v2_vits.onnx", sizes=[(518, 518), (518, 784)]).checked  # doctest: +SKIP
        {(518, 518): 8.6e-06, (518, 784): 1.9e-05}
    """
    target = choose_dtype(dtype or "fp32", torch.device("cpu"))
    if target not in (torch.float32, torch.float16):
        raise ExportError(f"ONNX export takes --dtype fp32 or fp16, got {dtype}.")
    sizes = list(sizes) if sizes else None
    if dynamic is None:
        dynamic = sizes is None or len(sizes) > 1
    if not dynamic and (sizes is None or len(sizes) != 1):
        raise ExportError("a fixed-size file has exactly one size: give one --sizes entry, or --dynamic.")
    static = None if dynamic else sizes[0]
    properties = metadata(model, target, sizes, dynamic)
    data = onnx_bytes(model, target, static_size=static, properties=properties)
    result = ExportResult(Path(path), target, sizes, metadata=properties, dynamic=dynamic)

    if check:
        checked_sizes = sizes or list(CHECK_SIZES)
        session = _session_for_check(data, target)
        if session is not None:
            from ..backends import EXACT_TOLERANCE, HALF_TOLERANCE

            result.checked = compare_with_eager(model, session, checked_sizes, target)
            tolerance = EXACT_TOLERANCE if target == torch.float32 else HALF_TOLERANCE
            bad = {size: diff for size, diff in result.checked.items() if not diff <= tolerance}
            if bad:
                listed = ", ".join(f"{h}x{w}: {d:.3g}" for (h, w), d in bad.items())
                raise ExportError(
                    f"the exported graph differs from the eager network ({listed}; allowed {tolerance:g}), so it "
                    "was not written. Please report this with your torch and onnxruntime versions."
                )
    write_atomic(result.path, lambda f: f.write(data))
    return result


def _session_for_check(data: bytes, dtype: torch.dtype):
    """An onnxruntime CPU session on `data`, or None where it cannot check this file (not installed, or no
    float16 kernels for the CPU)."""
    try:
        import onnxruntime as ort
    except ImportError:
        warnings.warn("onnxruntime is not installed, so the exported file was not checked against the eager "
                      "network. pip install onnxruntime to check it.", RuntimeWarning, stacklevel=3)
        return None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - a float16 graph without CPU kernels for some node
        if dtype == torch.float32:
            raise
        warnings.warn("onnxruntime's CPU kernels do not run this float16 graph, so it was not checked here; "
                      "run it with a GPU provider.", RuntimeWarning, stacklevel=3)
        return None


def usage(result: ExportResult) -> str:
    """How to run the file with onnxruntime alone, on the official pre-processing (printed by the command)."""
    meta = result.metadata
    mean, std = json.loads(meta["mean"]), json.loads(meta["std"])
    size = int(meta["input_size"])
    shapes = f"any size (checked at {meta['sizes']})" if meta["sizes"] else "any size"
    if not result.dynamic:
        shapes = f"{meta['sizes']} (height x width) only: resize every photo to that size"
    return f'''# {result.path.name}: {meta['family']} {meta['encoder']}, {meta['dtype']}, takes {shapes}
import math, cv2, numpy as np, onnxruntime as ort
session = ort.InferenceSession("{result.path}", providers=["CPUExecutionProvider"])  # or CUDAExecutionProvider
image = cv2.cvtColor(cv2.imread("photo.jpg"), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
h, w = image.shape[:2]
scale = max({size} / h, {size} / w)  # short side to {size}; each side a multiple of 14, rounded up below {size}
def side(n):
    s = round(scale * n / 14) * 14
    return s if s >= {size} else math.ceil(scale * n / 14) * 14
x = cv2.resize(image, (side(w), side(h)), interpolation=cv2.INTER_CUBIC)
x = (x - np.array({mean}, np.float32)) / np.array({std}, np.float32)
depth = session.run(None, {{"{INPUT_NAME}": x.transpose(2, 0, 1)[None].astype(np.float32)}})[0][0]
depth = cv2.resize(depth, (w, h), interpolation=cv2.INTER_LINEAR)  # {meta['output']} at the photo's size (the library
# resizes back with bilinear align_corners=True, which cv2 has not: sub-pixel differences)
'''
