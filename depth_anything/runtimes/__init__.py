"""The fast backends: where the network runs when it is not eager PyTorch.

- `torch_compile`: `backend="compile"`, torch.compile (inductor), its caches in the backends cache folder;
- `onnx_runtime`: `backend="onnx"`, ONNX Runtime on the CPU or CUDA, from a file made by `onnx_export`;
- `tensorrt`: `backend="tensorrt"`, TensorRT engines on NVIDIA GPUs, built from the ONNX file per network size;
- `auto`: `backend="auto"`, the fastest of these that is installed and measured exact on this device;
- `artifacts`: how their files are kept on disk (keyed by weights, shape, precision, device and versions).

They are imported only when chosen (`depth_anything.backends.BACKENDS`), so plain use pays nothing for them.
"""
