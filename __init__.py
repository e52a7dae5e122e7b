"""ComfyUI entry point: ComfyUI imports this file from custom_nodes/<this folder>/."""

import importlib.util
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))


def _import_library() -> None:
    """Make `import depth_anything` find the library beside this file, without touching sys.path.

    Putting this folder on sys.path would let its `nodes/` package shadow ComfyUI's own `nodes` module for every
    later `import nodes` (another node pack's, say); registering the one package by its path does not.
    """
    folder = os.path.join(_here, "depth_anything")
    loaded = sys.modules.get("depth_anything")
    if loaded is not None:
        if os.path.dirname(os.path.realpath(getattr(loaded, "__file__", "") or "")) != os.path.realpath(folder):
            print(f"[depth-anything-preprocessor] another 'depth_anything' package is loaded ({loaded.__file__}); "
                  "these nodes use it and may fail.", file=sys.stderr)
        return
    spec = importlib.util.spec_from_file_location(
        "depth_anything", os.path.join(folder, "__init__.py"), submodule_search_locations=[folder]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["depth_anything"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["depth_anything"]
        raise


# Outside ComfyUI (a tool importing the repository root as a package) there are no nodes to load.
if importlib.util.find_spec("folder_paths") is not None:
    _import_library()
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

WEB_DIRECTORY = None
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
