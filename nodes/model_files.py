"""Where Depth Anything checkpoints live in ComfyUI: the `depth_anything` model folder and known model names.

The folder is registered with `folder_paths`, so `ComfyUI/models/depth_anything` works out of the box and users
can add folders through `extra_model_paths.yaml` (key `depth_anything`). Known model names
(`depth_anything.list_models()`) are always offered: one found in a model folder is used from there, a missing
one is downloaded into the first model folder.

Depth Anything 3 files are also read from `models/geometry_estimation`, where ComfyUI core's own DA3 nodes keep
them (registered here for ComfyUI versions without them), so a 1.3 GB file is never needed twice; a known DA3
model that is missing is downloaded there.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import folder_paths

from depth_anything import list_models
from depth_anything.families import family_from_name
from depth_anything.loading import WEIGHT_FILE_NAMES, fetch_known_model

FOLDER_NAME = "depth_anything"
SHARED_FOLDER = "geometry_estimation"  # ComfyUI core's Depth Anything 3 folder, read too
EXTENSIONS = {".pth", ".pt", ".bin", ".safetensors"}
DEFAULT_MODEL = "depth_anything_v2_vits"  # Apache-2.0, small, v2: the sensible first choice


def register_model_folder() -> None:
    """Add `models/depth_anything` (first) and `models/geometry_estimation` to ComfyUI's model folders, keeping the
    folders extra_model_paths.yaml (or ComfyUI itself) added."""
    for name in (FOLDER_NAME, SHARED_FOLDER):
        default = os.path.join(folder_paths.models_dir, name)
        entry = folder_paths.folder_names_and_paths.get(name)
        if entry is None:
            folder_paths.folder_names_and_paths[name] = ([default], set(EXTENSIONS))
            continue
        paths, extensions = entry
        if default not in paths:
            paths.insert(0, default)
        # A yaml entry for an unknown folder name arrives with no extensions (= every file); list checkpoints only.
        folder_paths.folder_names_and_paths[name] = (paths, set(extensions) | EXTENSIONS)


def model_folders() -> list[str]:
    return folder_paths.get_folder_paths(FOLDER_NAME)


def download_folder(folder: str = FOLDER_NAME) -> Path:
    """Where a known model that is in no model folder gets downloaded: the first folder of its kind."""
    return Path(folder_paths.get_folder_paths(folder)[0])


def known_models() -> dict:
    return {m.name: m for m in list_models()}


def shared_files() -> list[str]:
    """Checkpoints in models/geometry_estimation that a family here recognises by name (core keeps other
    geometry models there too), and that models/depth_anything does not hold under the same name."""
    own = set(folder_paths.get_filename_list(FOLDER_NAME))
    files = folder_paths.get_filename_list(SHARED_FOLDER)
    return sorted(f for f in files if f not in own and family_from_name(Path(f).name) is not None)


def full_path(name: str) -> str | None:
    """A file in the model folders: models/depth_anything first, then models/geometry_estimation."""
    path = folder_paths.get_full_path(FOLDER_NAME, name)
    if path is None and family_from_name(Path(name).name) is not None:
        path = folder_paths.get_full_path(SHARED_FOLDER, name)
    return path


def model_names() -> list[str]:
    """The loader's choices: checkpoint files in the model folders, then every known model name."""
    return sorted(folder_paths.get_filename_list(FOLDER_NAME)) + shared_files() + list(known_models())


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a model choice (outside the model folders, or found nowhere), or None when it can."""
    if not isinstance(name, str) or not name.strip():
        return "No model chosen: pick a checkpoint from the list."
    normalized = posixpath.normpath(name.replace("\\", "/"))
    if os.path.isabs(name) or normalized.startswith("../") or normalized == ".." or ":" in normalized.split("/")[0]:
        return (
            f"'{name}' points outside the Depth Anything model folders. Put the checkpoint in one of "
            f"{', '.join(model_folders())} and choose it by its name there."
        )
    if name in known_models() or full_path(name) is not None:
        return None
    return (
        f"Model file '{name}' not found in {', '.join(model_folders())}. Put the checkpoint there (or add its folder "
        f"to extra_model_paths.yaml under 'depth_anything'), or choose a known model such as {DEFAULT_MODEL}, which "
        "is downloaded on first use."
    )


def find_local(name: str) -> Path | None:
    """The checkpoint on disk for a loader choice, or None for a known model not downloaded yet."""
    problem = name_problem(name)
    if problem is not None:
        raise FileNotFoundError(problem)
    known = known_models().get(name)
    if known is not None:
        local = full_path(Path(known.filename).name)
        return Path(local) if local else None
    path = Path(full_path(name))
    # A transformers export is a folder (config.json + weights): load the folder so its config sets the family.
    if path.name in WEIGHT_FILE_NAMES and (path.parent / "config.json").is_file():
        return path.parent
    return path


def resolve(name: str) -> Path:
    """The checkpoint file or transformers folder for a loader choice.

    A known model that is in no model folder is downloaded into the first one (offline: a
    ModelNotAvailableError that names the file, where to get it and where to put it).
    """
    path = find_local(name)
    if path is None:
        known = known_models()[name]
        path = fetch_known_model(known, cache_dir=download_folder(known.comfyui_folder))
    return path


def signature(path: Path) -> tuple:
    """Changes when the checkpoint on disk changes: (name, size, mtime) of the file or of a folder's files."""
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
