"""What depth-conditioned generators expect of their control image: polarity and size multiple, by name.

Depth ControlNets were trained on near = white maps, a few on far = white; SD1.5 / SDXL work in multiples of 8
pixels (the VAE downsamples by 8), Flux and SD3 in multiples of 16 (8 x 2 x 2 latent patches). The conditioning
stage looks a ControlNet up here by hub id, local folder or file, model or pipeline.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_MULTIPLE = 8  # SD1.5 / SDXL: the VAE downsamples by 8


@dataclass(frozen=True)
class DepthControlNet:
    """What a depth-conditioned model expects of its control image.

    Attributes:
        repo_id: the Hugging Face id; local folders and files are recognised by its last part or by `files`.
        far_is_white: trained on depth (far = bright) rather than disparity (near = bright).
        multiple: output sides must be multiples of this many pixels.
        note: the base model and where the convention comes from.
        files: single-file names (without suffix) the weights are distributed under, e.g. for ComfyUI.
    """

    repo_id: str
    far_is_white: bool
    multiple: int
    note: str
    files: tuple[str, ...] = ()


KNOWN_DEPTH_CONTROLNETS: tuple[DepthControlNet, ...] = (
    DepthControlNet("lllyasviel/control_v11f1p_sd15_depth", False, 8, "SD1.5, ControlNet 1.1 depth (fixed)",
                    ("control_v11f1p_sd15_depth",)),
    DepthControlNet("lllyasviel/control_v11p_sd15_depth", False, 8, "SD1.5, ControlNet 1.1 depth",
                    ("control_v11p_sd15_depth",)),
    DepthControlNet("lllyasviel/sd-controlnet-depth", False, 8, "SD1.5, ControlNet 1.0 depth (MiDaS)",
                    ("control_sd15_depth",)),
    DepthControlNet("diffusers/controlnet-depth-sdxl-1.0", False, 8, "SDXL"),
    DepthControlNet("diffusers/controlnet-depth-sdxl-1.0-mid", False, 8, "SDXL"),
    DepthControlNet("diffusers/controlnet-depth-sdxl-1.0-small", False, 8, "SDXL"),
    DepthControlNet("diffusers/controlnet-zoe-depth-sdxl-1.0", False, 8, "SDXL (ZoeDepth disparity maps)"),
    DepthControlNet("black-forest-labs/FLUX.1-Depth-dev", False, 16,
                    "Flux: FluxControlPipeline, the control image is VAE-encoded (trained on Depth Anything maps)",
                    ("flux1-depth-dev",)),
    DepthControlNet("black-forest-labs/FLUX.1-Depth-dev-lora", False, 16, "Flux: FLUX.1-dev + the depth LoRA",
                    ("flux1-depth-dev-lora",)),
    DepthControlNet("InstantX/FLUX.1-dev-Controlnet-Union", False, 16, "Flux ControlNet, depth mode"),
    DepthControlNet("Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro", False, 16, "Flux ControlNet, depth mode"),
    DepthControlNet("Shakker-Labs/FLUX.1-dev-ControlNet-Depth", False, 16, "Flux ControlNet"),
    DepthControlNet("XLabs-AI/flux-controlnet-depth-diffusers", False, 16, "Flux ControlNet (XLabs)"),
    # ComfyUI feeds this model `1 - image` (comfy/controlnet.py, load_controlnet_sd35, control_type 2): it was
    # trained far = white. diffusers' StableDiffusion3ControlNetPipeline passes the image unchanged, so we invert.
    DepthControlNet("stabilityai/stable-diffusion-3.5-large-controlnet-depth", True, 16,
                    "SD3.5 Large ControlNet depth: trained far = white", ("sd3.5_large_controlnet_depth",)),
)


def controlnet_name(controlnet: Any) -> str:
    """A hub id, path or file name for a name, path, ControlNet model or pipeline."""
    if isinstance(controlnet, (str, Path)):
        return str(controlnet)
    inner = getattr(controlnet, "controlnet", None)  # a ControlNet pipeline: look at its ControlNet
    if inner is not None and inner is not controlnet:
        if isinstance(inner, (list, tuple)) or hasattr(inner, "nets"):
            raise ValueError("This pipeline has several ControlNets: pass the depth ControlNet itself as controlnet=.")
        return controlnet_name(inner)
    config = getattr(controlnet, "config", None)
    name = getattr(config, "_name_or_path", None) or getattr(controlnet, "name_or_path", None)
    if not name:
        raise TypeError(
            f"Cannot tell which ControlNet {type(controlnet).__name__} is: pass its hub id or path, e.g. "
            "controlnet='diffusers/controlnet-depth-sdxl-1.0'."
        )
    return str(name)


def find_depth_controlnet(controlnet: Any) -> DepthControlNet | None:
    """The `KNOWN_DEPTH_CONTROLNETS` entry for a hub id, a local folder or file, a ControlNet model or a pipeline.

    Local copies are recognised by the repository's name as a path part (also in the Hugging Face cache's
    `models--org--name` form) or by a known single-file name.

    >>> find_depth_controlnet("stabilityai/stable-diffusion-3.5-large-controlnet-depth").far_is_white
    True
    >>> find_depth_controlnet("/models/controlnet/control_v11f1p_sd15_depth.safetensors").multiple
    8
    >>> find_depth_controlnet("my-own/controlnet") is None
    True
    """
    name = controlnet_name(controlnet).strip().replace("\\", "/").rstrip("/").lower()
    parts = name.split("/")
    stem = parts[-1].rsplit(".", 1)[0] if parts[-1].endswith((".safetensors", ".pth", ".bin", ".ckpt")) else None
    for entry in KNOWN_DEPTH_CONTROLNETS:
        repo = entry.repo_id.lower()
        if name == repo or name.endswith("/" + repo):
            return entry
        if repo.split("/")[1] in parts or "models--" + repo.replace("/", "--") in parts:
            return entry
        if stem is not None and stem in entry.files:
            return entry
    return None


@dataclass(frozen=True)
class ControlRules:
    """How a control image must look for one generator: its polarity and its size multiple (and why)."""

    invert: bool
    multiple: int
    why: str


def control_rules(controlnet: Any, invert: bool | None = None) -> ControlRules:
    """The rules for `controlnet` (None: near = white in 8-pixel steps); an explicit `invert` wins.

    An unknown ControlNet keeps near = white and warns, unless `invert` says which way it goes.

    >>> control_rules("stabilityai/stable-diffusion-3.5-large-controlnet-depth").invert
    True
    """
    default_why = "diffusers' VAE works in 8-pixel steps"
    if controlnet is None:
        return ControlRules(bool(invert), DEFAULT_MULTIPLE, default_why)
    entry = find_depth_controlnet(controlnet)
    if entry is None:
        if invert is None:
            warnings.warn(
                f"ControlNet {controlnet_name(controlnet)!r} is not in depth_anything.diffusers."
                "KNOWN_DEPTH_CONTROLNETS; assuming near = white, the convention of depth ControlNets. "
                "Pass invert=True if it was trained far = white (invert=False silences this warning).",
                UserWarning,
                stacklevel=3,
            )
        return ControlRules(bool(invert), DEFAULT_MULTIPLE, default_why)
    why = f"{entry.repo_id} works in {entry.multiple}-pixel steps"
    return ControlRules(entry.far_is_white if invert is None else bool(invert), entry.multiple, why)
