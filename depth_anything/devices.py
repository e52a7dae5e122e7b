"""Which device and precision a model runs in: one policy for the library, the command line, ComfyUI and examples.

Device: an explicit choice wins; "auto" (or None) takes CUDA, then Apple's MPS, then the CPU.
Precision: an explicit choice wins; "auto" is float32 on the CPU (half precision is slow there) and float16 on an
accelerator, unless the caller knows half precision is slow on it (ComfyUI passes `mm.should_use_fp16`).
float16 overflow is never silent: the predict stage recomputes such a batch in float32.
"""

from __future__ import annotations

import torch

DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: `device` itself, or for None / "auto" the best one available.

    >>> choose_device("cpu")
    device(type='cpu')
    """
    if device is not None and str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def choose_dtype(
    dtype: str | torch.dtype | None, device: torch.device, *, half_is_fast: bool | None = None
) -> torch.dtype:
    """The weights' precision: `dtype` itself, or for None / "auto" the policy above.

    Args:
        dtype: "fp32", "fp16", "bf16" (or their long names), a torch dtype, or None / "auto".
        device: where the model runs.
        half_is_fast: whether float16 is fast on `device` (None: assume so on any accelerator).

    >>> choose_dtype("auto", torch.device("cpu")), choose_dtype("bf16", torch.device("cpu"))
    (torch.float32, torch.bfloat16)
    """
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}.")
        return dtype
    if dtype is None or str(dtype) == "auto":
        if device.type == "cpu" or half_is_fast is False:
            return torch.float32
        return torch.float16
    key = str(dtype).lower()
    if key not in DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}; use one of {', '.join(PRECISIONS)}.")
    return DTYPES[key]
