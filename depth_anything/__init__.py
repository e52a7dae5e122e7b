"""Depth Anything as a depth preprocessor for image and video generation.

One pipeline for every surface (library, command line, ComfyUI nodes, diffusers helpers):
prepare -> predict -> restore -> condition; see `depth_anything.pipeline` and docs/architecture.md.
"""

from .configs import ENCODERS, KnownModel
from .conditioning import NORMALIZE_MODES, OUTPUT_KINDS, DepthRange, condition, normalize
from .depth_files import DepthFile, DepthFileError, DepthMetadata, depth_metadata, load_depth, save_depth
from .families import FAMILIES, ModelFamily, get_family, register_family
from .families.depth_anything import DepthAnything
from .loading import (
    Checkpoint,
    CheckpointError,
    ModelNotAvailableError,
    default_cache_dir,
    list_models,
    resolve_checkpoint,
)
from .model import DepthModel
from .pipeline import NetworkBatch, OutputWindow
from .postprocess import COLORMAPS, colorize
from .transforms import processing_size

__version__ = "0.1.0"

__all__ = [
    "COLORMAPS",
    "ENCODERS",
    "FAMILIES",
    "NORMALIZE_MODES",
    "OUTPUT_KINDS",
    "Checkpoint",
    "CheckpointError",
    "DepthAnything",
    "DepthFile",
    "DepthFileError",
    "DepthMetadata",
    "DepthModel",
    "DepthRange",
    "KnownModel",
    "ModelFamily",
    "ModelNotAvailableError",
    "NetworkBatch",
    "OutputWindow",
    "colorize",
    "condition",
    "default_cache_dir",
    "depth_metadata",
    "get_family",
    "list_models",
    "load_depth",
    "normalize",
    "processing_size",
    "register_family",
    "resolve_checkpoint",
    "save_depth",
]
