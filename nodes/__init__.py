"""ComfyUI nodes for Depth Anything: model loader, depth estimate, all-in-one, colorize, 16-bit and EXR save,
depth file loading, and Video Depth Anything for frame batches."""

import importlib

from .model_files import register_model_folder

register_model_folder()

NODE_MODULES = ("depth_nodes", "depth_file_nodes", "video_nodes")  # modules of this package that define nodes

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
for _name in NODE_MODULES:
    _module = importlib.import_module(f"{__name__}.{_name}")
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
