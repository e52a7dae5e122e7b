"""Baseline node for benchmarks/comfyui_cache.py: loads the model on every run, as comfyui_controlnet_aux's
depth preprocessors do (from_pretrained inside the node function, the model dropped afterwards).

Same library, same weights, same pre- and post-processing as our nodes: only the model's life cycle differs.
Linked into a scratch ComfyUI by the benchmark; not part of the node pack.
"""

import os
import sys

import comfy.model_management as mm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

from depth_anything import DepthAnything, normalize  # noqa: E402


class BenchmarkDepthReloadEveryRun:
    CATEGORY = "benchmark"
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE",),
                "checkpoint": ("STRING", {"default": ""}),
                "input_size": ("INT", {"default": 518, "min": 14, "max": 4088, "step": 14}),
            }
        }

    def run(self, image, checkpoint, input_size):
        model = DepthAnything.from_pretrained(checkpoint, device=mm.get_torch_device())
        depth = normalize(model.infer(image, input_size=input_size))
        del model
        mm.soft_empty_cache()
        return (depth[..., None].expand(-1, -1, -1, 3).contiguous(),)


NODE_CLASS_MAPPINGS = {"BenchmarkDepthReloadEveryRun": BenchmarkDepthReloadEveryRun}
