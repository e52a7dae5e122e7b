"""A second node pack for the tests, loaded after ours.

- NodesModuleProbe reports which `nodes` module `import nodes` finds. ComfyUI's own `nodes.py` must be what
  every later `import nodes` finds; a pack that puts its folder at the front of sys.path would shadow it with its
  own `nodes/` package. The probe asks the path finder (not sys.modules, where ComfyUI's module is cached
  already) at run time, after every pack has loaded.
- TestConditioning gives SD1.5-shaped conditioning (1, 77, 768) from a seed, so that a sampling test needs no
  250 MB text encoder.
- TextProbe shows a STRING output in the prompt's results (ComfyUI has no core node for that).
"""

import importlib.machinery

import torch


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


class TestConditioning:
    CATEGORY = "tests"
    FUNCTION = "encode"
    RETURN_TYPES = ("CONDITIONING",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31})}}

    def encode(self, seed):
        generator = torch.Generator().manual_seed(seed)
        return ([[torch.randn(1, 77, 768, generator=generator), {}]],)


class TextProbe:
    CATEGORY = "tests"
    FUNCTION = "show"
    RETURN_TYPES = ()
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"forceInput": True})}}

    def show(self, text):
        return {"ui": {"text": [text]}}


NODE_CLASS_MAPPINGS = {
    "NodesModuleProbe": NodesModuleProbe,
    "TestConditioning": TestConditioning,
    "TextProbe": TextProbe,
}
