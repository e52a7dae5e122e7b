"""Depth Anything v1 / v2 / v2-metric as a depth preprocessor for image generation."""

from .configs import ENCODERS, FAMILIES, KnownModel
from .loading import CheckpointError, ModelNotAvailableError, default_cache_dir, list_models
from .model import DepthAnything
from .postprocess import COLORMAPS, NORMALIZE_MODES, colorize, normalize
from .transforms import processing_size

__version__ = "0.1.0"

__all__ = [
    "COLORMAPS",
    "ENCODERS",
    "FAMILIES",
    "NORMALIZE_MODES",
    "CheckpointError",
    "DepthAnything",
    "KnownModel",
    "ModelNotAvailableError",
    "colorize",
    "default_cache_dir",
    "list_models",
    "normalize",
    "processing_size",
]
