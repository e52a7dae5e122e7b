"""Checkpoint loading: official .pth, safetensors repacks, transformers folders and known model names.

Loading is strict (every tensor used, none missing) and safe (pickles are read weights-only).
"""

from __future__ import annotations

import difflib
import json
import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from .configs import ENCODER_BY_DIM, KNOWN_MODELS, Family, KnownModel, resolve_family
from .hf_format import family_from_config, from_transformers_state, is_transformers_layout

WEIGHT_FILE_NAMES = ("model.safetensors", "pytorch_model.bin", "model.pth")
DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}


class CheckpointError(ValueError):
    """A file that is not a usable Depth Anything checkpoint."""


class ModelNotAvailableError(FileNotFoundError):
    """A known model that is neither in the cache folder nor downloadable now."""


def default_cache_dir() -> Path:
    """Where known models are kept: $DEPTH_ANYTHING_CACHE, else ~/.cache/depth_anything."""
    return Path(os.environ.get("DEPTH_ANYTHING_CACHE") or Path.home() / ".cache" / "depth_anything").expanduser()


def list_models() -> list[KnownModel]:
    """The officially released checkpoints `from_pretrained` accepts by name, with their source and licence.

    >>> [m.name for m in list_models()][:2]
    ['depth_anything_vits14', 'depth_anything_vitb14']
    """
    return list(KNOWN_MODELS.values())


# ---------------------------------------------------------------------------------------------- reading files


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors or pickled (.pth / .bin / .pt) checkpoint, read safely."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc}). Is it truncated?") from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc):  # not a torch.save file at all (text, plain pickle, another format)
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint (it is not a torch.save file). "
                "Use an official .pth or a .safetensors file."
            ) from exc
        raise CheckpointError(
            f"{path}: refused to load. The file needs arbitrary code to unpickle, which could run anything on "
            "this machine; official Depth Anything checkpoints hold plain tensors. Get the file from its official "
            "source, or a .safetensors version of it."
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({str(exc).splitlines()[0]}). "
            "The file may be truncated or of another kind; download it again."
        ) from exc
    return _unwrap(state, path)


def _unwrap(state, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: does not hold a state dict of tensors, so it is not a model checkpoint.")
    return state


# ----------------------------------------------------------------------------------------------- the family


def family_from_name(name: str) -> str | None:
    """The family a checkpoint's file or folder name tells, or None when it does not."""
    n = name.lower().replace("-", "_")
    if "metric" in n or "hypersim" in n or "vkitti" in n:
        if "hypersim" in n or "indoor" in n:
            return "metric_indoor"
        if "vkitti" in n or "outdoor" in n:
            return "metric_outdoor"
        return None
    if re.search(r"(^|[^a-z0-9])v2([^0-9]|$)|anything_?v2", n):
        return "v2"
    if re.search(r"(^|[^a-z0-9])v1([^0-9]|$)|anything_?v1|vit[sblg]14", n):
        return "v1"
    return None


def _ambiguous_family(path: Path) -> CheckpointError:
    return CheckpointError(
        f"{path}: cannot tell whether this is a Depth Anything v1, v2 or v2-metric checkpoint: their weights have "
        "identical keys, so loading the wrong one silently gives wrong depth. Pass family='v1', 'v2', "
        "'metric_indoor' or 'metric_outdoor' (or keep the official file name, e.g. depth_anything_v2_vits.pth)."
    )


# -------------------------------------------------------------------------------------------- known models


def fetch_known_model(model: KnownModel, cache_dir: str | Path | None = None) -> Path:
    """Path of a known model's file in the cache folder, downloading it there when missing."""
    folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    local = folder / Path(model.filename).name
    if local.is_file():
        return local
    try:
        from huggingface_hub import hf_hub_download

        downloaded = Path(
            hf_hub_download(model.repo_id, model.filename, repo_type=model.repo_type, local_dir=str(folder))
        )
    except Exception as exc:  # offline, no route, HTTP error: all end in the same advice
        raise ModelNotAvailableError(
            f"Model {model.name!r} is not in {folder} and could not be downloaded ({type(exc).__name__}). "
            f"Download {Path(model.filename).name} from {model.url} (licence {model.license}) and put it in "
            f"{folder}, or set DEPTH_ANYTHING_CACHE to the folder that holds it."
        ) from exc
    if downloaded != local:
        local.parent.mkdir(parents=True, exist_ok=True)
        os.replace(downloaded, local)  # local_dir keeps the repo's subfolders; we keep a flat folder
    return local


def resolve_source(source: str | Path, cache_dir: str | Path | None = None) -> tuple[Path, str | None]:
    """(path, family known from the name registry) for a file, folder or known model name."""
    path = Path(source).expanduser()
    if path.exists():
        return path, None
    name = str(source)
    if name in KNOWN_MODELS:
        model = KNOWN_MODELS[name]
        return fetch_known_model(model, cache_dir), model.family
    close = difflib.get_close_matches(name, KNOWN_MODELS, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else f" Known names: {', '.join(KNOWN_MODELS)}."
    raise FileNotFoundError(f"{name!r} is neither an existing file or folder nor a known model name.{hint}")


# ------------------------------------------------------------------------------------------------- loading


def _read_source(path: Path) -> tuple[dict[str, torch.Tensor], Path, dict | None]:
    """(state dict, the weights file, config.json of a folder if any)."""
    if path.is_dir():
        config_path = path / "config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else None
        for name in WEIGHT_FILE_NAMES:
            if (path / name).is_file():
                return read_state_dict(path / name), path / name, config
        candidates = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".pth", ".bin", ".pt"))
        if len(candidates) == 1:
            return read_state_dict(candidates[0]), candidates[0], config
        raise CheckpointError(f"{path}: found no single weights file (looked for {', '.join(WEIGHT_FILE_NAMES)}).")
    return read_state_dict(path), path, None


def _encoder_from_state(state: dict[str, torch.Tensor], path: Path) -> str:
    cls_token = state.get("pretrained.cls_token")
    if cls_token is None:
        raise CheckpointError(
            f"{path}: has no 'pretrained.cls_token' tensor, so it is not a Depth Anything checkpoint "
            f"(first keys: {', '.join(list(state)[:3])})."
        )
    cfg = ENCODER_BY_DIM.get(cls_token.shape[-1])
    if cfg is None:
        raise CheckpointError(f"{path}: encoder width {cls_token.shape[-1]} matches no Depth Anything encoder.")
    blocks = {int(k.split(".")[2]) for k in state if k.startswith("pretrained.blocks.")}
    if len(blocks) != cfg.depth:
        raise CheckpointError(f"{path}: has {len(blocks)} encoder blocks; {cfg.name} has {cfg.depth}.")
    return cfg.name


def _to_timm_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # DINOv2-giant's fused SwiGLU is `w12` / `w3` officially, `fc1` / `fc2` in timm.
    return {k.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2."): v for k, v in state.items()}


def pick_device(device: str | torch.device | None) -> torch.device:
    if device is not None and str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}.")
        return dtype
    if dtype is None or str(dtype) == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    if str(dtype).lower() not in DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}; use fp32, fp16 or bf16.")
    return DTYPES[str(dtype).lower()]


def load_model(cls, source, *, family=None, device=None, dtype=None, cache_dir=None):
    """Implements `DepthAnything.from_pretrained` (see there)."""
    path, registry_family = resolve_source(source, cache_dir)
    state, weights_file, config = _read_source(path)

    max_depth = None
    if is_transformers_layout(state):
        state = from_transformers_state(state)
        if config is not None and family is None:
            family, max_depth = family_from_config(config)
    chosen: str | Family | None = family or registry_family or family_from_name(weights_file.name)
    if chosen is None and path.is_dir():
        chosen = family_from_name(path.name)
    if chosen is None:
        raise _ambiguous_family(weights_file)
    family_obj = resolve_family(chosen) if isinstance(chosen, str) else chosen
    if max_depth is not None and max_depth == family_obj.max_depth:
        max_depth = None

    encoder = _encoder_from_state(state, weights_file)
    with torch.device("meta"):
        model = cls(encoder=encoder, family=family_obj, max_depth=max_depth)
    state = _to_timm_names(state)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{weights_file}: does not fit Depth Anything {encoder}: "
            f"{len(missing)} missing tensors (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})."
        )
    wrong_shape = [k for k, v in state.items() if v.shape != expected[k].shape]
    if wrong_shape:
        k = wrong_shape[0]
        raise CheckpointError(
            f"{weights_file}: tensor {k} has shape {tuple(state[k].shape)}, expected {tuple(expected[k].shape)}."
        )

    target_device = pick_device(device)
    target_dtype = pick_dtype(dtype, target_device)
    # Cast tensor by tensor straight to the target dtype: a giant model never exists twice in float32.
    model.load_state_dict({k: v.to(target_dtype) for k, v in state.items()}, strict=True, assign=True)
    # The head's convolutions run 1.5-1.7x faster channels-last (oneDNN on CPU, tensor cores on GPU).
    model.depth_head.to(memory_format=torch.channels_last)
    model = model.to(device=target_device).eval()
    model.source = str(source)
    return model
