"""`backend="onnx"`: the network exported once to ONNX (`onnx_export`) and run by ONNX Runtime.

One file with dynamic batch, height and width serves every network size, so a folder of photos of every aspect
ratio needs no rebuild. The file is kept in the backends cache keyed by the weights, precision and versions;
on the CPU, ONNX Runtime's optimised form of it is kept too (keyed by the CPU and onnxruntime version), which
halves the session start. Each export is compared with the eager network before it is used.

CPU: fp32 (onnxruntime). CUDA: fp32 or fp16 with onnxruntime-gpu's CUDA provider.
"""

from __future__ import annotations

import logging
import time

import torch

from ..backends import BackendUnavailableError, GraphBackend, check_exact, relative_difference, require, without_tf32
from .artifacts import Artifact, artifact, device_description, load_or_build, versions, weights_digest
from .onnx_export import INPUT_NAME, OUTPUT_NAME, compare_with_eager, metadata, onnx_bytes, probe_pixels

log = logging.getLogger("depth_anything.backends")

CHECK_SIZE = (182, 266)  # where a new export is compared with the eager network: small, not square, not 37 x 37


class OnnxRuntimeBackend(GraphBackend):
    """Runs the network in ONNX Runtime (CPU, or CUDA with onnxruntime-gpu)."""

    name = "onnx"

    def __init__(self, model: torch.nn.Module):
        super().__init__(model)
        self.ort = require("onnxruntime", "onnx", "onnx", "onnxruntime")
        require("onnx", "onnx", "onnx")
        self._session = None
        self._session_device: torch.device | None = None
        if self.dtype == torch.bfloat16:
            raise BackendUnavailableError(
                "backend 'onnx' runs float32 or float16 weights, not bfloat16: load the model with dtype='fp32' "
                "(or 'fp16' on a GPU)."
            )

    def check_device(self, device: torch.device) -> None:
        """A BackendUnavailableError when the weights' precision or `device` cannot run here. Checked when the
        network first runs on a device (a ComfyUI model is loaded on the CPU and moved to the GPU to run)."""
        dtype = self.dtype
        if dtype == torch.float16 and device.type == "cpu":
            raise BackendUnavailableError(
                "backend 'onnx' on the CPU runs float32 (onnxruntime has no fast float16 CPU kernels): load the "
                "model with dtype='fp32', or run fp16 on a GPU."
            )
        self.providers(device)

    def providers(self, device: torch.device) -> list:
        """ONNX Runtime's execution providers for `device`."""
        if device.type == "cpu":
            return ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in self.ort.get_available_providers():
                raise BackendUnavailableError(
                    "backend 'onnx' on a CUDA device needs onnxruntime-gpu (this onnxruntime has only "
                    f"{', '.join(self.ort.get_available_providers())}): pip uninstall onnxruntime && pip install "
                    "onnxruntime-gpu"
                )
            index = device.index if device.index is not None else torch.cuda.current_device()
            options = {"device_id": index, "use_tf32": 0}  # float32 means float32 (TF32 would differ by ~1e-3)
            return [("CUDAExecutionProvider", options), "CPUExecutionProvider"]
        raise BackendUnavailableError(
            f"backend 'onnx' runs on the CPU or CUDA, not on {device.type}; use backend='eager' or 'compile' there."
        )

    # ------------------------------------------------------------------------------------------ artifacts

    def file_key(self) -> dict:
        """What the exported file depends on (not the device: the same file runs anywhere)."""
        model = self.model
        return {
            "family": model.family.name, "encoder": model.encoder, "dtype": str(self.dtype).replace("torch.", ""),
            "shape": "dynamic", "weights": weights_digest(model), "network": type(model).__qualname__,
            "exporter": "torchscript", **versions("onnx"),
        }

    def _export(self, item: Artifact) -> None:
        log.info("backend 'onnx': exporting the network to ONNX (first time for these weights; kept in %s)",
                 item.path.parent)
        start = time.perf_counter()
        data = onnx_bytes(self.model, self.dtype, properties=metadata(self.model, self.dtype, None, True))
        session = self._open_bytes(data, torch.device("cpu") if self.dtype == torch.float32 else self.device)
        difference = self._compare(session)
        item.write(lambda f: f.write(data), checked={f"{CHECK_SIZE[0]}x{CHECK_SIZE[1]}": difference},
                   seconds=round(time.perf_counter() - start, 1))

    def _compare(self, session) -> float:
        """The new file against the eager network on a probe batch: float32 files on the CPU (a file runs the
        same anywhere), float16 files on the model's GPU against the eager network in float16."""
        if self.dtype == torch.float32:
            difference = compare_with_eager(self.model, session, [CHECK_SIZE], torch.float32)[CHECK_SIZE]
        else:
            pixels = probe_pixels(1, *CHECK_SIZE).to(self.device)
            with torch.inference_mode(), without_tf32():
                reference = self._eager(pixels)
            difference = relative_difference(self._run_session(session, pixels), reference)
        return check_exact("onnx", difference, self.dtype, "the exported ONNX file")

    def session_options(self, optimize: bool = True):
        options = self.ort.SessionOptions()
        level = self.ort.GraphOptimizationLevel
        options.graph_optimization_level = level.ORT_ENABLE_ALL if optimize else level.ORT_DISABLE_ALL
        options.intra_op_num_threads = torch.get_num_threads()  # the threads torch was given (Ray workers set it)
        # Idle threads must not spin: torch's pre- and post-processing threads share the cores with them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        return options

    def _open_bytes(self, data, device: torch.device):
        options = self.session_options()
        return self.ort.InferenceSession(data, options, providers=self.providers(device))

    def _open_optimized(self, exported: Artifact, device: torch.device):
        """A session on the CPU from ONNX Runtime's optimised form of the file, made once and kept."""
        key = {**exported.key, "optimized_for": device_description(device), **versions("onnxruntime")}
        item = artifact("onnx", key, "optimized.onnx")

        def build(target: Artifact) -> None:
            options = self.session_options()
            partial = target.path.with_name(target.path.name + ".building")
            options.optimized_model_filepath = str(partial)
            try:
                self.ort.InferenceSession(str(exported.path), options, providers=["CPUExecutionProvider"])
                target.write(lambda f: f.write(partial.read_bytes()))
            finally:
                partial.unlink(missing_ok=True)

        def load(path):
            options = self.session_options(optimize=False)  # already optimised
            return self.ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        return load_or_build(item, load, build, "optimised ONNX file")

    def session(self):
        """The ONNX Runtime session for the model's current device (made on first use)."""
        device = self.device
        if self._session is None or self._session_device != device:
            self.check_device(device)
            exported = artifact("onnx", self.file_key(), "onnx")
            if device.type == "cpu":
                load_or_build(exported, lambda path: path.stat(), self._export, "ONNX file")
                try:
                    self._session = self._open_optimized(exported, device)
                except Exception as exc:  # noqa: BLE001 - the exported file itself is damaged: export again
                    log.warning("%s does not load (%s); exporting it again.", exported.path, str(exc)[:300])
                    exported.remove()
                    load_or_build(exported, lambda path: path.stat(), self._export, "ONNX file")
                    self._session = self._open_optimized(exported, device)
            else:
                self._session = load_or_build(
                    exported, lambda path: self._open_bytes(str(path), device), self._export, "ONNX file"
                )
            self._session_device = device
        return self._session

    # ------------------------------------------------------------------------------------------------ run

    def run(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._run_session(self.session(), pixels)

    def _run_session(self, session, pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.detach().to(torch.float32).contiguous()
        if pixels.device.type == "cpu":
            return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: pixels.numpy()})[0])
        import numpy as np

        batch, _, height, width = pixels.shape
        output = torch.empty(batch, height, width, dtype=torch.float32, device=pixels.device)
        index = pixels.device.index or 0
        binding = session.io_binding()
        binding.bind_input(INPUT_NAME, "cuda", index, np.float32, tuple(pixels.shape), pixels.data_ptr())
        binding.bind_output(OUTPUT_NAME, "cuda", index, np.float32, tuple(output.shape), output.data_ptr())
        torch.cuda.current_stream(pixels.device).synchronize()  # ONNX Runtime reads on its own stream
        session.run_with_iobinding(binding)
        return output

    def reset(self) -> None:
        super().reset()
        self._session = None
        self._session_device = None

