"""Write the example workflows in workflows/: UI format (drag into ComfyUI) and API format (workflows/api/).

Both formats come from the one description below; the UI format needs each node's widget order, which this
script reads from a running ComfyUI's /object_info (started here unless --server is given):

    python scripts/build_workflows.py                      # starts a scratch ComfyUI (see tests/comfyui_server.py)
    python scripts/build_workflows.py --server http://127.0.0.1:8188
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / "workflows"
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")
SEED_INPUTS = ("seed", "noise_seed")
IMAGE_NODES = (
    "LoadImage", "PreviewImage", "SaveImage", "SaveAnimatedWEBP", "DepthAnythingSaveDepth16", "LoadVideo", "SaveVideo",
)  # nodes that show a picture: drawn taller
UPLOAD_WIDGETS = ("image_upload", "video_upload")  # the front end adds an upload button widget after these inputs
# Newer ComfyUI core's video nodes as its /object_info lists them, for the workflows that use them (written from
# ComfyUI's public source; the March-2024 ComfyUI the tests run has no video nodes).
CORE_VIDEO_NODES = REPO / "scripts" / "comfyui_core_video_nodes.json"


@dataclass
class Node:
    id: int
    type: str
    inputs: dict = field(default_factory=dict)  # widget values, and links as (node id, output slot)
    pos: tuple[int, int] = (0, 0)
    title: str | None = None


@dataclass
class Note:
    id: int
    text: str
    pos: tuple[int, int] = (0, 0)
    size: tuple[int, int] = (420, 200)


@dataclass
class Workflow:
    name: str
    nodes: list


def depth_nodes(
    image: str, *, input_size=518, normalization="per_image", batch_size=4, tiling="off", x=0,
    model_name="depth_anything_v2_vits", focal_px=0.0, resize_method="upper_bound",
):
    """LoadImage -> loader -> estimate, the start of every workflow here (ids 1-3)."""
    return [
        Node(1, "LoadImage", {"image": image}, (x, 0)),
        Node(
            2,
            "DepthAnythingModelLoader",
            {"model_name": model_name, "family": "auto", "precision": "auto", "device": "auto", "backend": "eager"},
            (x, 420),
        ),
        Node(
            3,
            "DepthAnythingEstimate",
            {
                "model": (2, 0),
                "image": (1, 0),
                "input_size": input_size,
                "normalization": normalization,
                "invert": False,
                "gamma": 1.0,
                "batch_size": batch_size,
                "tiling": tiling,
                "tile_size": 0,
                "overlap": 0,
                "focal_px": focal_px,
                "resize_method": resize_method,
            },
            (x + 380, 0),
        ),
    ]


def preview_and_save_nodes(prefix: str):
    """Depth preview, colour preview and the 16-bit save with raw values, fed by the estimate (ids 4-7)."""
    return [
        Node(4, "PreviewImage", {"images": (3, 0)}, (760, 0), title="Depth"),
        Node(5, "DepthAnythingColorize", {"depth": (3, 0), "colormap": "Spectral_r"}, (760, 420)),
        Node(6, "PreviewImage", {"images": (5, 0)}, (1160, 420), title="Colour preview"),
        Node(
            7,
            "DepthAnythingSaveDepth16",
            {"depth": (3, 0), "filename_prefix": prefix, "save_npy": True, "raw_depth": (3, 2)},
            (1160, 0),
        ),
    ]


def controlnet_workflow(
    name, *, checkpoint, controlnet, width, height, steps, cfg, sampler, scheduler, strength, prompt, note
):
    return Workflow(
        name,
        [
            *depth_nodes("example.png"),
            Node(4, "PreviewImage", {"images": (3, 0)}, (760, 0), title="Depth hint"),
            Node(5, "CheckpointLoaderSimple", {"ckpt_name": checkpoint}, (0, 700)),
            Node(6, "CLIPTextEncode", {"clip": (5, 1), "text": prompt}, (380, 560), title="Positive prompt"),
            Node(7, "CLIPTextEncode", {"clip": (5, 1), "text": "blurry, low quality, deformed"}, (380, 820),
                 title="Negative prompt"),
            Node(8, "ControlNetLoader", {"control_net_name": controlnet}, (380, 1080)),
            Node(
                9,
                "ControlNetApplyAdvanced",
                {
                    "positive": (6, 0),
                    "negative": (7, 0),
                    "control_net": (8, 0),
                    "image": (3, 0),
                    "strength": strength,
                    "start_percent": 0.0,
                    "end_percent": 1.0,
                },
                (760, 560),
            ),
            Node(10, "EmptyLatentImage", {"width": width, "height": height, "batch_size": 1}, (760, 860)),
            Node(
                11,
                "KSampler",
                {
                    "model": (5, 0),
                    "positive": (9, 0),
                    "negative": (9, 1),
                    "latent_image": (10, 0),
                    "seed": 0,
                    "steps": steps,
                    "cfg": cfg,
                    "sampler_name": sampler,
                    "scheduler": scheduler,
                    "denoise": 1.0,
                },
                (1160, 560),
            ),
            Node(12, "VAEDecode", {"samples": (11, 0), "vae": (5, 2)}, (1540, 560)),
            Node(13, "SaveImage", {"images": (12, 0), "filename_prefix": f"depth_anything/{name}"}, (1880, 560)),
            Note(100, note, (1160, 0)),
        ],
    )


def da3_workflow() -> Workflow:
    """Depth Anything 3 mono: depth for ControlNets (sky black, near white, as v2's maps), the sky mask, 16 bits."""
    return Workflow(
        "da3_depth_map",
        [
            *depth_nodes("example.png", input_size=504, model_name="depth_anything_3_mono_large"),
            *preview_and_save_nodes("depth_anything/da3_depth"),
            Node(8, "MaskToImage", {"mask": (3, 4)}, (760, 760)),
            Node(9, "PreviewImage", {"images": (8, 0)}, (1160, 760), title="Sky"),
            Note(
                100,
                "Depth Anything 3 (DA3MONO-LARGE, Apache-2.0) for depth ControlNets.\n\n"
                "depth_anything_3_mono_large is read from models/geometry_estimation, where ComfyUI's own Depth "
                "Anything 3 nodes keep it (downloaded there from Comfy-Org/Depth-Anything-3 on first use).\n"
                "input_size 504 is DA3's own: its longest side (resize_method upper_bound; lower_bound sets the "
                "shortest side and sees more of wide images).\nThe depth map is inverse depth, near = white, sky "
                "black: it drops into the same ControlNet workflows as v2's maps. sky_mask is the sky itself.\n"
                "For metres use depth_anything_3_metric_large and set focal_px (0: from EXIF, else a 26 mm lens).",
                (0, 700),
            ),
        ],
    )


SD15 = dict(
    checkpoint="v1-5-pruned-emaonly.safetensors",
    controlnet="control_v11f1p_sd15_depth.pth",
    width=512,
    height=512,
    steps=25,
    cfg=7.0,
    sampler="euler",
    scheduler="normal",
    strength=1.0,
    prompt="a cozy reading room with a leather armchair, warm evening light, photograph",
)  # the SD1.5 sampling settings of the workflows that generate with SD1.5
SAVED_DEPTH_PREFIX = "depth_anything/saved_depth"


def saved_depth_workflow() -> Workflow:
    """Save depth as EXR, load it back with Load Depth and feed that to Apply ControlNet (SD1.5)."""
    workflow = controlnet_workflow(
        "saved_depth_controlnet",
        **SD15,
        note="Depth saved once, reused later: the EXR keeps the raw values and says what they are.\n\n1. Queue "
        "once: Save Depth EXR writes output/depth_anything/saved_depth_00001_.exr (float32, with the model and "
        "range in its header).\n2. Load Depth reads it back (pick any .exr, 16-bit .png or .npy; refresh to see "
        "new files) and gives the same depth map to Apply ControlNet, with no depth model in this part of the "
        "graph. Queue again.\nNeeds an SD1.5 checkpoint and control_v11f1p_sd15_depth.pth.",
    )
    nodes = {node.id: node for node in workflow.nodes}
    nodes[4] = Node(
        4,
        "DepthAnythingSaveDepthEXR",
        {"raw_depth": (3, 2), "filename_prefix": SAVED_DEPTH_PREFIX, "channel": "Y"},
        (760, 0),
    )
    nodes[14] = Node(14, "DepthAnythingLoadDepth", {"depth_file": f"{SAVED_DEPTH_PREFIX}_00001_.exr [output]"},
                     (380, 1300))  # fmt: skip
    nodes[9].inputs["image"] = (14, 0)  # the hint comes from the file, not from the estimate
    return Workflow(workflow.name, list(nodes.values()))


def video_depth_controlnet_workflow(name: str, frames_in: list[Node], frames: tuple, save, note: str) -> Workflow:
    """Frames (ids 1-2) -> Video Depth Anything -> SD1.5 depth ControlNet generation of every frame -> video.

    `frames`: the link that gives the frames; `save(node id, images link, prefix, x, y)`: the nodes that write
    a video or animation of `images`.
    """
    return Workflow(
        name,
        [
            *frames_in,
            Node(3, "ImageScale", {"image": frames, "upscale_method": "lanczos", "width": 512, "height": 0,
                                   "crop": "disabled"}, (380, 0), title="Frames at 512 px wide"),
            Node(4, "DepthAnythingModelLoader", {"model_name": "video_depth_anything_vits", "family": "auto",
                                                 "precision": "auto", "device": "auto", "backend": "eager"},
                 (380, 300)),
            Node(5, "VideoDepthAnythingEstimate", {"model": (4, 0), "images": (3, 0), "input_size": 518,
                                                   "normalization": "batch", "invert": False, "gamma": 1.0,
                                                   "batch_size": 8, "tiling": "off", "tile_size": 0,
                                                   "overlap": 0}, (760, 0)),
            Node(6, "CheckpointLoaderSimple", {"ckpt_name": SD15["checkpoint"]}, (0, 760)),
            Node(7, "CLIPTextEncode", {"clip": (6, 1), "text": "a watercolour painting, soft evening light"},
                 (380, 620), title="Positive prompt"),
            Node(8, "CLIPTextEncode", {"clip": (6, 1), "text": "blurry, low quality, deformed"}, (380, 880),
                 title="Negative prompt"),
            Node(9, "ControlNetLoader", {"control_net_name": SD15["controlnet"]}, (380, 1140)),
            Node(10, "ControlNetApplyAdvanced", {"positive": (7, 0), "negative": (8, 0), "control_net": (9, 0),
                                                 "image": (5, 0), "strength": SD15["strength"], "start_percent": 0.0,
                                                 "end_percent": 1.0}, (760, 620)),
            Node(11, "VAEEncode", {"pixels": (3, 0), "vae": (6, 2)}, (760, 920), title="One latent per frame"),
            Node(12, "KSampler", {"model": (6, 0), "positive": (10, 0), "negative": (10, 1), "latent_image": (11, 0),
                                  "seed": 0, "steps": SD15["steps"], "cfg": SD15["cfg"],
                                  "sampler_name": SD15["sampler"], "scheduler": SD15["scheduler"], "denoise": 1.0},
                 (1160, 620)),
            Node(13, "VAEDecode", {"samples": (12, 0), "vae": (6, 2)}, (1540, 620)),
            *save(14, (13, 0), f"depth_anything/{name}", 1880, 620),
            *save(16, (5, 0), f"depth_anything/{name}_depth", 1160, 0),
            Note(100, note, (0, 1100)),
        ],
    )


def save_video(node_id: int, images: tuple, prefix: str, x: int, y: int, fps=(2, 2), audio=(2, 1)) -> list[Node]:
    """Newer ComfyUI core: Create Video (the source's frame rate and sound) -> Save Video."""
    return [
        Node(node_id, "CreateVideo", {"images": images, "fps": fps, "audio": audio}, (x, y)),
        Node(node_id + 1, "SaveVideo", {"video": (node_id, 0), "filename_prefix": prefix, "format": "auto",
                                        "codec": "auto"}, (x + 340, y)),
    ]


def save_animation(node_id: int, images: tuple, prefix: str, x: int, y: int) -> list[Node]:
    """Any ComfyUI: an animated WebP at 12 frames per second."""
    return [Node(node_id, "SaveAnimatedWEBP", {"images": images, "filename_prefix": prefix, "fps": 12.0,
                                               "lossless": False, "quality": 90, "method": "default"}, (x, y))]


VIDEO_DEPTH_NOTE = (
    "Video frames -> Video Depth Anything -> depth ControlNet generation of every frame.\n\nVideo Depth Anything "
    "sees 32 frames at a time and stitches its windows, so the depth does not flicker; normalization = batch "
    "gives the clip one range. video_depth_anything_vits (Apache-2.0) is downloaded into models/depth_anything on "
    "first use. Needs an SD1.5 checkpoint in models/checkpoints and control_v11f1p_sd15_depth.pth "
    "(lllyasviel/ControlNet-v1-1) in models/controlnet.\nEvery frame is one latent of the batch: long clips "
    "need VRAM for all of them; trim the clip or lower the width for a first try."
)


def all_workflows() -> list[Workflow]:
    return [
        da3_workflow(),
        Workflow(
            "depth_map",
            [
                *depth_nodes("example.png"),
                *preview_and_save_nodes("depth_anything/depth"),
                Note(
                    100,
                    "Depth map from one image.\n\nLoad Image: your photo. Load Depth Anything Model: "
                    "depth_anything_v2_vits is downloaded into models/depth_anything on first use (or put any "
                    "official checkpoint there).\nSave Depth 16-bit writes a 16-bit PNG and a .npy of the raw "
                    "values into the output folder.",
                    (0, 700),
                ),
            ],
        ),
        controlnet_workflow(
            "sd15_depth_controlnet",
            **SD15,
            note="SD1.5 generation that follows the depth of your image.\n\nNeeds an SD1.5 checkpoint in "
            "models/checkpoints and control_v11f1p_sd15_depth.pth (lllyasviel/ControlNet-v1-1) in "
            "models/controlnet.\nThe depth hint is centre-cropped to the latent's aspect ratio: set width and "
            "height to your image's proportions.",
        ),
        controlnet_workflow(
            "sdxl_depth_controlnet",
            checkpoint="sd_xl_base_1.0.safetensors",
            controlnet="controlnet-depth-sdxl-1.0.safetensors",
            width=1024,
            height=1024,
            steps=30,
            cfg=6.0,
            sampler="dpmpp_2m",
            scheduler="karras",
            strength=0.6,
            prompt="a cozy reading room with a leather armchair, warm evening light, photograph",
            note="SDXL generation that follows the depth of your image.\n\nNeeds sd_xl_base_1.0.safetensors in "
            "models/checkpoints and an SDXL depth ControlNet in models/controlnet (diffusers/"
            "controlnet-depth-sdxl-1.0: save its diffusion_pytorch_model.safetensors as "
            "controlnet-depth-sdxl-1.0.safetensors).\nStrength 0.5-0.7 keeps SDXL's detail.",
        ),
        Workflow(
            "highres_tiled_depth",
            [
                *depth_nodes("example.png", tiling="on"),
                *preview_and_save_nodes("depth_anything/highres"),
                Note(
                    100,
                    "High-resolution depth of a large photo (4K and up).\n\ntiling = on: one pass over the whole "
                    "image for the layout plus overlapping tiles at full resolution for the detail, aligned and "
                    "blended without seams. tile_size / overlap 0 = automatic. tiling = auto tiles only images "
                    "large enough to gain.\nThe 16-bit PNG keeps the fine depth steps an 8-bit image would lose.",
                    (0, 700),
                ),
            ],
        ),
        Workflow(
            "video_frames_depth",
            [
                *depth_nodes("frames.webp", normalization="batch", batch_size=8),
                Node(
                    4,
                    "SaveAnimatedWEBP",
                    {
                        "images": (3, 0),
                        "filename_prefix": "depth_anything/video_depth",
                        "fps": 12.0,
                        "lossless": True,
                        "quality": 100,
                        "method": "default",
                    },
                    (760, 0),
                ),
                Node(
                    5,
                    "DepthAnythingSaveDepth16",
                    {"depth": (3, 0), "filename_prefix": "depth_anything/frames", "save_npy": False},
                    (1160, 0),
                ),
                Note(
                    100,
                    "Depth for a batch of video frames without flicker.\n\nnormalization = batch maps every frame "
                    "with one depth range, so brightness does not jump from frame to frame.\nLoad Image reads all "
                    "frames of an animated WebP or GIF (upload frames.webp). For .mp4 use Load Video + Get Video "
                    "Components (newer ComfyUI) or VideoHelperSuite's Load Video and connect its IMAGE output "
                    "to Depth Anything Estimate.",
                    (0, 700),
                ),
            ],
        ),
        video_depth_controlnet_workflow(
            "video_depth_anything_controlnet",
            [Node(1, "LoadVideo", {"file": "video.mp4"}, (0, 0)),
             Node(2, "GetVideoComponents", {"video": (1, 0)}, (0, 420))],
            frames=(2, 0), save=save_video,
            note=VIDEO_DEPTH_NOTE + "\nLoad Video / Create Video / Save Video are ComfyUI core nodes (2025 and "
            "later); the result keeps the source's frame rate and sound. On an older ComfyUI use "
            "video_depth_anything_controlnet_animated.",
        ),
        video_depth_controlnet_workflow(
            "video_depth_anything_controlnet_animated",
            [Node(1, "LoadImage", {"image": "frames.webp"}, (0, 0))],
            frames=(1, 0), save=save_animation,
            note=VIDEO_DEPTH_NOTE + "\nFor any ComfyUI: Load Image reads every frame of an animated WebP or GIF "
            "(upload frames.webp); the results are animated WebPs at 12 frames per second (set fps to your clip's).",
        ),
        saved_depth_workflow(),
    ]


# --------------------------------------------------------------------------------------------- conversion


def widget_inputs(info: dict) -> list[tuple[str, list]]:
    """(input name, [its widget value slots]) in the order the UI stores widgets_values."""
    widgets = []
    for section in ("required", "optional"):
        for name, spec in info["input"].get(section, {}).items():
            kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
            if isinstance(kind, list) or kind in WIDGET_TYPES:
                extra = []
                if kind == "INT" and (name in SEED_INPUTS or options.get("control_after_generate")):
                    extra.append("control_after_generate")
                if any(options.get(upload) for upload in UPLOAD_WIDGETS):
                    extra.append("upload")
                widgets.append((name, extra))
    return widgets


def linked_inputs(info: dict) -> list[tuple[str, str]]:
    """(name, type) of the inputs that take a link, in slot order."""
    slots = []
    for section in ("required", "optional"):
        for name, spec in info["input"].get(section, {}).items():
            kind = spec[0]
            if not isinstance(kind, list) and kind not in WIDGET_TYPES:
                slots.append((name, kind))
    return slots


def to_api(workflow: Workflow) -> dict:
    api = {}
    for node in workflow.nodes:
        if isinstance(node, Note):
            continue
        inputs = {k: ([str(v[0]), v[1]] if isinstance(v, tuple) else v) for k, v in node.inputs.items()}
        api[str(node.id)] = {"class_type": node.type, "inputs": inputs, "_meta": {"title": node.title or node.type}}
    return api


def widget_links(node: Node, info: dict) -> list[tuple[str, str]]:
    """(name, type) of the widgets this node takes from a link instead (e.g. a video's fps), in widget order."""
    specs = {name: spec for section in ("required", "optional") for name, spec in info["input"].get(section, {}).items()}
    return [(name, specs[name][0]) for name, _ in widget_inputs(info) if isinstance(node.inputs.get(name), tuple)]


def input_slots(node: Node, info: dict) -> list[tuple[str, str, bool]]:
    """(name, type, is a widget) of the node's input slots: the link inputs, then widgets fed by a link."""
    return [(n, k, False) for n, k in linked_inputs(info)] + [(n, k, True) for n, k in widget_links(node, info)]


def to_ui(workflow: Workflow, object_info: dict) -> dict:
    nodes = [n for n in workflow.nodes if isinstance(n, Node)]
    links = []
    for node in nodes:
        info = object_info[node.type]
        for slot, (name, kind, _) in enumerate(input_slots(node, info)):
            if name in node.inputs:
                source, source_slot = node.inputs[name]
                links.append([len(links) + 1, source, source_slot, node.id, slot, kind])
    order = _execution_order(nodes)
    ui_nodes = []
    for node in nodes:
        info = object_info[node.type]
        unknown = set(node.inputs) - {n for n, _ in widget_inputs(info)} - {n for n, _ in linked_inputs(info)}
        if unknown:
            raise ValueError(f"{workflow.name}: node {node.id} ({node.type}) has no inputs {sorted(unknown)}")
        inputs = []
        for slot, (name, kind, widget) in enumerate(input_slots(node, info)):
            link = next((l[0] for l in links if l[3] == node.id and l[4] == slot), None)
            inputs.append({"name": name, "type": kind, "link": link, **({"widget": {"name": name}} if widget else {})})
        outputs = []
        names = info.get("output_name") or info["output"]
        for slot, kind in enumerate(info["output"]):
            out_links = [l[0] for l in links if l[1] == node.id and l[2] == slot]
            outputs.append({"name": names[slot], "type": kind, "links": out_links or None, "slot_index": slot})
        widgets_values = []
        specs = {n: spec for section in ("required", "optional") for n, spec in info["input"].get(section, {}).items()}
        for name, extra in widget_inputs(info):
            value = node.inputs[name]
            if isinstance(value, tuple):  # fed by a link: the widget keeps its default
                value = specs[name][1].get("default")
            widgets_values.append(value)
            for kind in extra:
                widgets_values.append("fixed" if kind == "control_after_generate" else "image")
        entry = {
            "id": node.id,
            "type": node.type,
            "pos": list(node.pos),
            "size": _node_size(node.type, len(widgets_values), max(len(inputs), len(outputs))),
            "flags": {},
            "order": order[node.id],
            "mode": 0,
            "inputs": inputs,
            "outputs": outputs,
            "properties": {"Node name for S&R": node.type},
            "widgets_values": widgets_values,
        }
        if node.title:
            entry["title"] = node.title
        ui_nodes.append(entry)
    for note in (n for n in workflow.nodes if isinstance(n, Note)):
        ui_nodes.append({
            "id": note.id, "type": "Note", "pos": list(note.pos), "size": list(note.size), "flags": {},
            "order": len(ui_nodes), "mode": 0, "properties": {"text": ""}, "widgets_values": [note.text],
            "color": "#432", "bgcolor": "#653",
        })  # fmt: skip
    return {
        "last_node_id": max(n.id for n in workflow.nodes),
        "last_link_id": len(links),
        "nodes": ui_nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }


def _node_size(node_type: str, widgets: int, slots: int) -> list[int]:
    """Room for the node's rows; nodes that show images get space for the picture."""
    height = 60 + 26 * (widgets + slots)
    if node_type in IMAGE_NODES:
        return [360, max(height, 340)]
    return [340, height]


def _execution_order(nodes: list[Node]) -> dict[int, int]:
    done: dict[int, int] = {}
    remaining = {n.id: {v[0] for v in n.inputs.values() if isinstance(v, tuple)} for n in nodes}
    while remaining:
        ready = sorted(i for i, deps in remaining.items() if deps <= set(done))
        if not ready:
            raise ValueError("workflow has a cycle")
        for i in ready:
            done[i] = len(done)
            del remaining[i]
    return done


def core_video_nodes() -> dict:
    """Newer ComfyUI core's video node definitions (/object_info entries), from CORE_VIDEO_NODES."""
    return {k: v for k, v in json.loads(CORE_VIDEO_NODES.read_text()).items() if not k.startswith("_")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", help="URL of a running ComfyUI with this node pack (default: start one)")
    args = parser.parse_args(argv)
    server = None
    url = args.server
    if url is None:
        sys.path.insert(0, str(REPO))
        from tests.comfyui_server import start_server, stop_server

        server = start_server(Path(tempfile.mkdtemp(prefix="build_workflows_")))
        url = server.url
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/object_info", timeout=60) as response:
            object_info = {**core_video_nodes(), **json.load(response)}  # the server's own definitions win
    finally:
        if server is not None:
            stop_server(server)
    (WORKFLOWS / "api").mkdir(parents=True, exist_ok=True)
    for workflow in all_workflows():
        ui = to_ui(workflow, object_info)
        (WORKFLOWS / f"{workflow.name}.json").write_text(json.dumps(ui, indent=2) + "\n")
        (WORKFLOWS / "api" / f"{workflow.name}.json").write_text(json.dumps(to_api(workflow), indent=2) + "\n")
        print(f"wrote workflows/{workflow.name}.json and workflows/api/{workflow.name}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
