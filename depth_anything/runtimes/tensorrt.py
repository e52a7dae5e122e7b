"""`backend="tensorrt"`: TensorRT engines on NVIDIA GPUs, built from the network's ONNX export.

One engine per network size (height x width), for batches of 1 to MAX_BATCH (larger batches run in chunks):
static sizes give TensorRT its fastest kernels, and the prepare stage groups images by network size, so a run
meets few of them. Engines are kept in the backends cache, keyed by the weights, the size, the precision, the
GPU (name and compute capability) and the TensorRT, torch and library versions: an engine from another GPU or
version is never loaded (TensorRT engines are not portable); it is rebuilt, with a warning. A damaged engine
file is rebuilt too. The first build of a size takes a minute or more and says so.

float16 engines are built strongly typed from the float16 ONNX graph, so each layer runs in the precision the
eager network uses; each new engine is compared once with the eager network before use.
"""

from __future__ import annotations

import logging
import time

import torch

from ..backends import BackendUnavailableError, GraphBackend, check_exact, relative_difference, require, without_tf32
from .artifacts import Artifact, artifact, device_description, load_or_build, versions, weights_digest
from .onnx_export import INPUT_NAME, OUTPUT_NAME, metadata, onnx_bytes, probe_pixels

log = logging.getLogger("depth_anything.backends")

MAX_BATCH = 16  # largest batch an engine takes; larger batches run in chunks of this
OPT_BATCH = 4  # the batch TensorRT tunes for (the command line's and nodes' default batch size)


def engine_key(model, size: tuple[int, int], gpu: str, *, digest: str | None = None) -> dict:
    """What an engine depends on; any change gives another engine file (see `artifacts.artifact`)."""
    return {
        "family": model.family.name, "encoder": model.encoder, "dtype": str(model.dtype).replace("torch.", ""),
        "shape": f"{size[0]}x{size[1]}", "batch": f"1-{MAX_BATCH}", "weights": digest or weights_digest(model),
        "network": type(model).__qualname__, "gpu": gpu, **versions("tensorrt", "onnx"),
    }


def no_gpu_problem() -> str | None:
    """Why TensorRT cannot run on this machine, or None."""
    if not torch.cuda.is_available():
        return (
            "backend 'tensorrt' runs on NVIDIA GPUs, and no CUDA device is available here "
            "(torch.cuda.is_available() is False). Use backend='onnx' or 'compile', or run on a machine with an "
            "NVIDIA GPU and pip install 'depth-anything-preprocessor[tensorrt]'."
        )
    return None


class TensorRTBackend(GraphBackend):
    """Runs the network as TensorRT engines, one per network size."""

    name = "tensorrt"

    def __init__(self, model: torch.nn.Module):
        super().__init__(model)
        problem = no_gpu_problem()
        if problem is not None:
            raise BackendUnavailableError(problem)
        self.trt = require("tensorrt", "tensorrt", "tensorrt")
        require("onnx", "tensorrt", "tensorrt")
        if self.dtype not in (torch.float32, torch.float16):
            raise BackendUnavailableError(
                f"backend 'tensorrt' builds float32 or float16 engines, not {self.dtype}: load with dtype='fp16' or 'fp32'."
            )
        self._logger = self.trt.Logger(self.trt.Logger.WARNING)
        self._engines: dict[tuple[int, int], object] = {}
        self._contexts: dict[tuple[int, int], object] = {}
        self._digest: str | None = None

    # ------------------------------------------------------------------------------------------- engines

    def _engine_artifact(self, size: tuple[int, int]) -> Artifact:
        if self._digest is None:
            self._digest = weights_digest(self.model)
        key = engine_key(self.model, size, device_description(self.device), digest=self._digest)
        return artifact("tensorrt", key, "engine")

    def _build(self, item: Artifact, size: tuple[int, int]) -> None:
        trt = self.trt
        height, width = size
        log.warning("backend 'tensorrt': building the engine for %dx%d, batch 1-%d (first time for this size on "
                    "this GPU; a minute or more; kept in %s)", height, width, MAX_BATCH, item.path.parent)
        start = time.perf_counter()
        free_before = torch.cuda.mem_get_info(self.device)[0]
        data = onnx_bytes(self.model, self.dtype, static_size=size,
                          properties=metadata(self.model, self.dtype, [size], False))
        builder = trt.Builder(self._logger)
        strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(data):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not read the exported network: {errors}")
        config = builder.create_builder_config()
        if strongly_typed is None and self.dtype == torch.float16:  # TensorRT 8: precision is a builder flag
            config.set_flag(trt.BuilderFlag.FP16)
        if self.dtype == torch.float32 and hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)  # float32 means float32: TF32 would differ by ~1e-3
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, (1, 3, height, width), (min(OPT_BATCH, MAX_BATCH), 3, height, width),
                          (MAX_BATCH, 3, height, width))
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"TensorRT could not build an engine for {height}x{width} (see its log above)")
        engine_bytes = bytes(serialized)
        seconds = time.perf_counter() - start
        used = free_before - torch.cuda.mem_get_info(self.device)[0]
        # Compare with the eager network before the engine is kept.
        engine = self._deserialize(engine_bytes)
        pixels = probe_pixels(1, height, width).to(self.device)
        with without_tf32():
            reference = self._eager(pixels)
        difference = relative_difference(self._execute(engine, engine.create_execution_context(), pixels), reference)
        check_exact("tensorrt", difference, self.dtype, f"the engine for {height}x{width}")
        item.write(lambda f: f.write(engine_bytes), build_seconds=round(seconds, 1), checked=difference,
                   vram_in_use_after_build=used)
        log.warning("backend 'tensorrt': engine for %dx%d built in %.0f s", height, width, seconds)

    def _deserialize(self, data: bytes):
        engine = self.trt.Runtime(self._logger).deserialize_cuda_engine(data)
        if engine is None:
            raise RuntimeError("TensorRT could not deserialize the engine (damaged, or from another version)")
        return engine

    def engine(self, size: tuple[int, int]):
        """The engine for a network size: from the cache when it was built here, else built now."""
        if size not in self._engines:
            item = self._engine_artifact(size)
            self._engines[size] = load_or_build(
                item, lambda path: self._deserialize(path.read_bytes()), lambda it: self._build(it, size),
                "TensorRT engine",
            )
            self._contexts[size] = self._engines[size].create_execution_context()
        return self._engines[size], self._contexts[size]

    # ------------------------------------------------------------------------------------------------ run

    def run(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.device.type != "cuda":
            raise BackendUnavailableError(
                f"backend 'tensorrt' runs on the GPU; the model is on {pixels.device}. Move it with model.to('cuda')."
            )
        size = (int(pixels.shape[-2]), int(pixels.shape[-1]))
        engine, context = self.engine(size)
        chunks = [self._execute(engine, context, chunk) for chunk in pixels.split(MAX_BATCH)]
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks)

    def _execute(self, engine, context, pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.detach().to(torch.float32).contiguous()
        batch, _, height, width = pixels.shape
        output = torch.empty(batch, height, width, dtype=torch.float32, device=pixels.device)
        context.set_input_shape(INPUT_NAME, tuple(pixels.shape))
        context.set_tensor_address(INPUT_NAME, pixels.data_ptr())
        context.set_tensor_address(OUTPUT_NAME, output.data_ptr())
        stream = torch.cuda.current_stream(pixels.device)
        if not context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT failed to run the engine for {height}x{width}")
        return output

    def reset(self) -> None:
        super().reset()
        self._engines.clear()
        self._contexts.clear()
        self._digest = None
