"""ComfyUI entry point: ComfyUI imports this file from custom_nodes/<this folder>/."""

import os
import sys

# ComfyUI imports a node pack as a package without putting its folder on sys.path; the library lives beside us.
_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

WEB_DIRECTORY = None
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
