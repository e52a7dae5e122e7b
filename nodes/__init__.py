"""ComfyUI nodes for Depth Anything (filled in by the node-pack work)."""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
