"""The one checkpoint resolver: source (+ optional family) -> file, family and licence -> a loaded model.

    source ──locate──> file or folder ──identify──> Checkpoint ──family.build──> DepthModel
    (path, folder,      (known names      (family from the       (strict: every tensor
     known name)         download once)    option, the name,      used, none missing,
                                           config.json or the     all finite)
                                           weights' layout)

Every surface resolves checkpoints here: `from_pretrained`, the command line and the ComfyUI loader, which
caches models keyed on what `resolve_checkpoint` decided. Loading is safe: pickles are read weights-only, so a
file that would run code is refused.
"""

from __future__ import annotations

import difflib
import json
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .configs import KnownModel
from .devices import choose_device, choose_dtype
from .families import (
    FAMILIES,
    ModelFamily,
    families_with_layout,
    family_from_config,
    family_from_name,
    get_family,
    known_models,
)

WEIGHT_FILE_NAMES = ("model.safetensors", "pytorch_model.bin", "model.pth")
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint; the message names the file and what to do."""


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
    return list(known_models().values())


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


def _read_config(folder: Path) -> dict | None:
    path = folder / "config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not readable JSON ({exc}); fix or remove the file.") from exc


def _weights_file(folder: Path) -> Path:
    for name in WEIGHT_FILE_NAMES:
        if (folder / name).is_file():
            return folder / name
    candidates = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    if len(candidates) == 1:
        return candidates[0]
    raise CheckpointError(f"{folder}: found no single weights file (looked for {', '.join(WEIGHT_FILE_NAMES)}).")


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


def locate(source: str | Path, cache_dir: str | Path | None = None) -> tuple[Path, KnownModel | None]:
    """(file or folder, the known model it is, if any) for a path or a known model name (downloaded once)."""
    path = Path(source).expanduser()
    if path.exists():
        return path, known_models().get(path.stem) if path.is_file() else None
    name = str(source)
    known = known_models()
    if name in known:
        return fetch_known_model(known[name], cache_dir), known[name]
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else f" Known names: {', '.join(known)}."
    raise FileNotFoundError(f"{name!r} is neither an existing file or folder nor a known model name.{hint}")


# ---------------------------------------------------------------------------------------------- resolving


@dataclass
class Checkpoint:
    """A checkpoint on disk and what it is. Made by `resolve_checkpoint`; the weights are read on first use.

    Attributes:
        source: what the user gave (a path or a known name).
        path: the checkpoint file, or the folder of a transformers export.
        weights_file: the file holding the tensors.
        family: the model family, decided once here.
        config: a folder's config.json, when there is one.
        known: the released model this is, when it is one (its repository and licence).
    """

    source: str
    path: Path
    weights_file: Path
    family: ModelFamily
    config: dict | None = None
    known: KnownModel | None = None
    _state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def license(self) -> str | None:
        return self.known.license if self.known else None

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The checkpoint's tensors (read once, kept until `release`)."""
        if self._state is None:
            self._state = read_state_dict(self.weights_file)
        return self._state

    def release(self) -> None:
        """Drop the tensors read, once a model holds them."""
        self._state = None


def resolve_checkpoint(
    source: str | Path, *, family: str | ModelFamily | None = None, cache_dir: str | Path | None = None
) -> Checkpoint:
    """Find a checkpoint and decide its family, once, for every surface.

    The family is, in this order: `family` when given; the known model's; what a folder's config.json says;
    what the file (or folder) name says; and last what the weights' layout says, when only one family has it.
    v1, v2 and v2-metric share one layout, so a renamed file of theirs is refused with a message that asks for
    the family instead of silently giving wrong depth.

    Example:
        >>> checkpoint = resolve_checkpoint("depth_anything_v2_vits")  # doctest: +SKIP
        >>> checkpoint.family.name, checkpoint.license  # doctest: +SKIP
        ('v2', 'Apache-2.0')
    """
    path, known = locate(source, cache_dir)
    if path.is_dir():
        weights_file, config = _weights_file(path), _read_config(path)
    else:
        weights_file, config = path, None
    checkpoint = Checkpoint(str(source), path, weights_file, None, config, known)  # type: ignore[arg-type]
    checkpoint.family = _decide_family(checkpoint, family)
    return checkpoint


def family_hint(candidates) -> str:
    """How to choose among `candidates` on every surface."""
    names = [f"'{family.name}'" for family in candidates]
    listed = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
    return (
        f"set the family: family={listed} in Python, --family on the command line, or 'family' on the Load "
        "Depth Anything Model node"
    )


def _decide_family(checkpoint: Checkpoint, family: str | ModelFamily | None) -> ModelFamily:
    if family is not None:
        return get_family(family)
    if checkpoint.known is not None:
        return get_family(checkpoint.known.family)
    told = None
    if checkpoint.config is not None:
        told = family_from_config(checkpoint.config)
    told = told or family_from_name(checkpoint.weights_file.name)
    if told is None and checkpoint.path.is_dir():
        told = family_from_name(checkpoint.path.name)
    if told is not None:
        return told
    candidates = families_with_layout(checkpoint.state_dict())
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        keys = ", ".join(list(checkpoint.state_dict())[:3])
        raise CheckpointError(
            f"{checkpoint.weights_file}: its tensors (first keys: {keys}) fit no supported model family "
            f"({', '.join(FAMILIES)}), so it is not a checkpoint this library can load."
        )
    names = " / ".join(f.name for f in candidates)
    example = next((Path(m.filename).name for f in candidates for m in f.known_models), "depth_anything_v2_vits.pth")
    raise CheckpointError(
        f"{checkpoint.weights_file}: cannot tell whether this is a {names} checkpoint: their weights have "
        f"identical keys, so loading the wrong one silently gives wrong depth. Keep the official file name "
        f"(e.g. {example}), or {family_hint(candidates)}."
    )


# ------------------------------------------------------------------------------------------------- loading


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], weights_file: Path, dtype: torch.dtype) -> None:
    """Load `state` into `model` (built on the meta device) strictly, cast tensor by tensor to `dtype`.

    Missing, unexpected and wrong-shape tensors are one CheckpointError naming the file, as are non-finite
    weights (a model with NaN weights would write black maps without a word).
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{weights_file}: does not fit {model.family.description}: "
            f"{len(missing)} missing tensors (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})."
        )
    wrong_shape = [k for k, v in state.items() if v.shape != expected[k].shape]
    if wrong_shape:
        k = wrong_shape[0]
        raise CheckpointError(
            f"{weights_file}: tensor {k} has shape {tuple(state[k].shape)}, expected {tuple(expected[k].shape)}."
        )
    broken = next((k for k, v in state.items() if v.is_floating_point() and not _all_finite(v)), None)
    if broken is not None:
        raise CheckpointError(
            f"{weights_file}: tensor {broken} holds NaN or infinite values; the file is damaged. Download it again."
        )
    # Cast tensor by tensor straight to the target dtype: a giant model never exists twice in float32.
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)


def _all_finite(tensor: torch.Tensor) -> bool:
    # max |x| is finite exactly when every value is (NaN propagates through amax); on the CPU this is ~100x
    # faster than isfinite(x).all(), which took 2-4 s of the command's start-up for v2-S.
    return tensor.numel() == 0 or bool(torch.isfinite(tensor.abs().amax()))


def load_model(
    checkpoint: Checkpoint,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    backend: str = "eager",
):
    """A resolved checkpoint -> its family's model on `device` in `dtype` (the device / dtype policy of
    `depth_anything.devices`), running on `backend`."""
    target_device = choose_device(device)
    target_dtype = choose_dtype(dtype, target_device)
    model = checkpoint.family.build(checkpoint, target_dtype)
    checkpoint.release()
    model = model.to(device=target_device).eval()
    model.source = checkpoint.source
    model.checkpoint = checkpoint
    return model.use_backend(backend)
