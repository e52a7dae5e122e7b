"""A second node pack for the tests, loaded after ours: it reports which `nodes` module `import nodes` finds.

ComfyUI's own `nodes.py` must be what every later `import nodes` finds; a pack that puts its folder at the front
of sys.path would shadow it with its own `nodes/` package. The probe asks the path finder (not sys.modules,
where ComfyUI's module is cached already) at run time, after every pack has loaded.
"""

import importlib.machinery


class NodesModuleProbe:
    CATEGORY = "tests"
    FUNCTION = "probe"
    RETURN_TYPES = ()
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def probe(self):
        spec = importlib.machinery.PathFinder.find_spec("nodes")
        import nodes

        return {"ui": {"text": [spec.origin if spec else "", nodes.__file__, str(hasattr(nodes, "KSampler"))]}}


NODE_CLASS_MAPPINGS = {"NodesModuleProbe": NodesModuleProbe}
