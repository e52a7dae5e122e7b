"""Compiled forms of a network kept on disk, so that a second run does not export, build or compile again.

An artifact (an ONNX file, a TensorRT engine, a decision of the "auto" backend) lives under
`<cache dir>/backends/<kind>/` as `<name>.<suffix>` plus `<name>.json`, the key it was built for. The name is a
digest of that key: the weights (`weights_digest`), the shape profile, the precision, the device (GPU model and
compute capability, or the CPU's instruction set) and the versions of everything that shapes the result (this
library, torch, the runtime). Anything that changes the result changes the name, so a stale artifact is never
found; one whose stored key disagrees, or that does not load, is rebuilt (`ArtifactStore`).

Writes go through `files.write_atomic`: a run killed while building leaves no half-written artifact behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..files import write_atomic

log = logging.getLogger("depth_anything.backends")

CACHE_FOLDER = "backends"


def cache_root() -> Path:
    """Where backends keep their artifacts: `<cache dir>/backends` ($DEPTH_ANYTHING_CACHE or
    ~/.cache/depth_anything)."""
    from ..loading import default_cache_dir

    return default_cache_dir() / CACHE_FOLDER


def weights_digest(model: torch.nn.Module) -> str:
    """A digest of every parameter and buffer: names, dtypes, shapes and values (20 hex digits).

    Two models share artifacts exactly when this agrees. About 0.1 s for v2-S, 1-2 s for v2-L (read once per
    backend, after the weights last moved).
    """
    digest = hashlib.blake2b(digest_size=10)
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        data = tensor.to("cpu").contiguous()
        if data.dtype == torch.bfloat16:  # numpy has no bfloat16: hash its bits
            data = data.view(torch.int16)
        digest.update(data.numpy().tobytes())
    return digest.hexdigest()


def device_description(device: torch.device) -> str:
    """What compiled code depends on: the GPU's name and compute capability, or the CPU's architecture and
    instruction set. Engines built for one are refused on another."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        return f"cuda:{torch.cuda.get_device_name(index)}:sm{major}{minor}"
    if device.type == "cpu":
        capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
        return f"cpu:{platform.machine()}:{capability}"
    return device.type


def versions(*packages: str) -> dict[str, str]:
    """Versions of this library, torch and `packages` (installed distributions; absent ones read "none")."""
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    found = {"depth_anything": __version__, "torch": torch.__version__}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "none"
    return found


@dataclass(frozen=True)
class Artifact:
    """One artifact's place on disk: `path` holds it, `record` the key it was built for."""

    path: Path
    record: Path
    key: dict[str, Any]

    def exists(self) -> bool:
        return self.path.is_file() and self.record.is_file()

    def stored_key(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.record.read_text()).get("key")
        except (OSError, ValueError, AttributeError):
            return None

    def mismatch(self) -> str | None:
        """None when the stored record is this key; else which entries differ (or that it is unreadable)."""
        stored = self.stored_key()
        if stored is None:
            return f"{self.record} is missing or unreadable"
        wanted = json.loads(json.dumps(self.key))  # the key as JSON reads it back (tuples become lists)
        differing = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        if not differing:
            return None
        return "; ".join(f"{k}: built for {stored.get(k)!r}, this run is {wanted.get(k)!r}" for k in differing)

    def write(self, write: Callable[[Any], None], **details: Any) -> None:
        """Write the artifact (through `write(file)`) and then its record, each atomically."""
        write_atomic(self.path, write)
        self.write_record(**details)

    def write_record(self, **details: Any) -> None:
        text = json.dumps({"key": self.key, **details}, indent=2, sort_keys=True, default=str)
        write_atomic(self.record, lambda f: f.write(text.encode()))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.record.unlink(missing_ok=True)


def artifact(kind: str, key: dict[str, Any], suffix: str, root: Path | None = None) -> Artifact:
    """Where the artifact of `kind` ("onnx", "tensorrt", "auto", ...) for `key` is kept.

    The file name starts with the readable parts of the key (family, encoder, precision, shape) and ends in a
    digest of all of it.
    """
    text = json.dumps(key, sort_keys=True, default=str)
    digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
    readable = "-".join(str(key[k]) for k in ("family", "encoder", "dtype", "shape") if key.get(k) not in (None, ""))
    name = f"{readable}-{digest}" if readable else digest
    folder = (root or cache_root()) / kind
    return Artifact(folder / f"{name}.{suffix}", folder / f"{name}.json", key)


def load_or_build(item: Artifact, load: Callable[[Path], Any], build: Callable[[Artifact], None], what: str) -> Any:
    """`load(item.path)` when a matching artifact is on disk; else (or when it fails to load: a truncated or
    damaged file) `build(item)` and load that. A fresh build that does not load either is a RuntimeError."""
    if item.exists():
        problem = item.mismatch()
        if problem is None:
            try:
                return load(item.path)
            except Exception as exc:  # noqa: BLE001 - any failure to load a cached file means: rebuild it
                log.warning("%s: the cached %s does not load (%s); building it again.", item.path, what,
                            _first_line(exc))
        else:
            log.warning("%s: the cached %s was built for something else (%s); building it again.", item.path,
                        what, problem)
        item.remove()
    build(item)
    try:
        return load(item.path)
    except Exception as exc:  # noqa: BLE001
        item.remove()
        raise RuntimeError(f"the {what} just built at {item.path} does not load: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
