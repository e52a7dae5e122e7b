"""ComfyUI nodes for Depth Anything: model loader, depth estimate, all-in-one, colorize, 16-bit save."""

from .model_files import register_model_folder

register_model_folder()

from .depth_nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
