"""ComfyUI entry point: ComfyUI imports this file from custom_nodes/<this folder>/."""

import importlib.util
import os
import sys

# ComfyUI imports a node pack as a package without putting its folder on sys.path; the library lives beside us.
_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

# Outside ComfyUI (a tool importing the repository root as a package) there are no nodes to load.
if importlib.util.find_spec("folder_paths") is not None:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

WEB_DIRECTORY = None
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
