"""What a batch run reads: files, folders, list files and globs -> sources, and images -> arrays.

Each source carries the path of its output relative to the output folder, so that the input folder structure
is mirrored and two inputs never write the same file.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from PIL import Image

from ..images import UnreadableImageError, preview_rgb, read_image  # noqa: F401 - what a batch run reads with

# Raster formats worth walking a folder for (Pillow also opens .mpg, .eps, .h5 ... which are not photos).
_RASTER = (
    ".png .apng .jpg .jpeg .jpe .jfif .bmp .dib .tif .tiff .webp .gif .ppm .pgm .pbm .pnm .pfm .tga .qoi .avif "
    ".jp2 .j2k .jpx .sgi .pcx .dds"
).split()
IMAGE_EXTENSIONS = frozenset(ext for ext in _RASTER if Image.registered_extensions().get(ext) in Image.OPEN)
VIDEO_EXTENSIONS = frozenset(".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .wmv .flv .ts .mts .m2ts .3gp .ogv".split())


@dataclass(frozen=True)
class Source:
    """One input file and its output path under --outdir, without the suffix (e.g. `trip/day1/IMG_0001`)."""

    path: Path
    relative: PurePath


@dataclass
class Discovery:
    """The result of expanding the user's input arguments."""

    sources: list[Source] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)  # files in a walked folder that are not of the wanted kind
    missing: list[tuple[str, str]] = field(default_factory=list)  # (what the user named, why it gives nothing)


def _has_magic(text: str) -> bool:
    return any(c in text for c in "*?[")


def _glob_root(pattern: str) -> Path:
    """The folder a glob pattern starts from: `data/**/*.jpg` -> `data`."""
    parts = []
    for part in Path(pattern).parts:
        if _has_magic(part):
            break
        parts.append(part)
    root = Path(*parts) if parts else Path(".")
    return root if root.is_dir() else root.parent


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder)
    except ValueError:
        return False
    return True


def _walk(folder: Path, exclude: Path | None) -> list[Path]:
    """Files under `folder`, recursively, sorted by path; hidden entries and the output folder left out."""
    files, visited = [], {folder.resolve()}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        here = Path(dirpath)
        kept = []
        for name in dirnames:
            real = (here / name).resolve()
            if not name.startswith(".") and not _inside(real, exclude) and real not in visited:
                visited.add(real)  # a linked folder is walked once, and a link loop ends
                kept.append(name)
        dirnames[:] = kept
        files.extend(here / name for name in filenames if not name.startswith("."))
    return sorted(files, key=lambda path: path.relative_to(folder).parts)


def _glob(pattern: str, exclude: Path | None) -> list[Path]:
    """The paths a glob matches, sorted. `**` is matched over the folder walk of `_walk`, so that a symbolic link
    loop is followed once (the standard glob follows it 40 levels deep, or practically forever with several)."""
    if "**" not in pattern:
        return sorted(Path(p) for p in glob.glob(pattern))
    parts = Path(pattern).parts
    first_magic = next(i for i, part in enumerate(parts) if _has_magic(part))
    root = Path(*parts[:first_magic]) if first_magic else Path(".")
    if not root.is_dir():
        return []
    return [path for path in _walk(root, exclude) if _match_parts(path.relative_to(root).parts, parts[first_magic:])]


def _match_parts(names: Sequence[str], patterns: Sequence[str]) -> bool:
    """Whether path components match glob components, `**` standing for any number of folders (as glob's)."""
    if not patterns:
        return not names
    if patterns[0] == "**":
        return any(_match_parts(names[skip:], patterns[1:]) for skip in range(len(names) + 1))
    return bool(names) and fnmatch.fnmatchcase(names[0], patterns[0]) and _match_parts(names[1:], patterns[1:])


def _stem(path: Path) -> PurePath:
    return PurePath(path.name).with_suffix("") if path.suffix else PurePath(path.name)


def discover(
    specs: Sequence[str],
    extensions: frozenset[str],
    *,
    exclude: str | Path | None = None,
) -> Discovery:
    """Expand files, folders (recursively, sorted), `.txt` lists (one path per line) and globs into sources.

    Files inside a walked folder or glob whose suffix is not in `extensions` are ignored (and listed in
    `ignored`); a file named directly or in a list is always tried. `exclude` (the output folder) is never
    walked, so that outputs written inside an input folder are not read back as inputs.

    Example:
        >>> found = discover(["photos", "more/*.jpg", "list.txt"], IMAGE_EXTENSIONS)  # doctest: +SKIP
        >>> found.sources[0].relative  # doctest: +SKIP
        PurePosixPath('holiday/IMG_0001')
    """
    exclude_dir = Path(exclude).resolve() if exclude is not None else None
    found = Discovery()

    def add_folder(folder: Path) -> None:
        for path in _walk(folder, exclude_dir):
            if path.suffix.lower() in extensions:
                found.sources.append(Source(path, path.relative_to(folder).with_suffix("")))
            else:
                found.ignored.append(path)

    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_dir():
            add_folder(path)
        elif path.is_file() and path.suffix.lower() == ".txt":
            _add_list(path, found, add_folder)
        elif path.is_file():
            found.sources.append(Source(path, _stem(path)))
        elif _has_magic(spec):
            pattern = os.path.expanduser(spec)
            root = _glob_root(pattern)
            files = [p for p in _glob(pattern, exclude_dir) if p.is_file() and not _inside(p, exclude_dir)]
            if not files:
                found.missing.append((spec, "the pattern matches no file"))
            for match in files:
                if match.suffix.lower() in extensions:
                    found.sources.append(Source(match, match.relative_to(root).with_suffix("")))
                else:
                    found.ignored.append(match)
        else:
            found.missing.append((spec, "no such file or folder"))
    found.sources = _unique_outputs(found.sources)
    return found


def _add_list(list_file: Path, found: Discovery, add_folder) -> None:
    """Entries of a list file: relative paths are taken from the current folder, as the official run.py does,
    or else from the list file's own folder."""
    files = []
    for line in list_file.read_text(encoding="utf-8-sig").splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry).expanduser()
        if not path.is_absolute() and not path.exists() and (list_file.parent / path).exists():
            path = list_file.parent / path
        if path.is_dir():
            add_folder(path)
        elif path.is_file():
            files.append(path)
        else:
            found.missing.append((entry, f"listed in {list_file} but not found"))
    if files:
        # Mirror the listed files below their deepest common folder.
        root = Path(os.path.commonpath([str(p.resolve().parent) for p in files]))
        for path in files:
            found.sources.append(Source(path, path.resolve().relative_to(root).with_suffix("")))


def _unique_outputs(sources: list[Source]) -> list[Source]:
    """Give inputs that would share an output (photo.jpg and photo.png) names that keep their suffix.

    Duplicate paths (the same file named twice) are kept once.
    """
    seen_paths: set[Path] = set()
    unique = []
    for source in sources:
        key = source.path.resolve()
        if key not in seen_paths:
            seen_paths.add(key)
            unique.append(source)

    def key_of(relative: PurePath) -> str:
        return str(relative).casefold()  # case-insensitive file systems collide on case too

    counts: dict[str, int] = {}
    for source in unique:
        counts[key_of(source.relative)] = counts.get(key_of(source.relative), 0) + 1
    taken = {key_of(s.relative) for s in unique if counts[key_of(s.relative)] == 1}
    result = []
    for source in unique:
        relative = source.relative
        if counts[key_of(relative)] > 1:
            base = relative.with_name(f"{relative.name}_{source.path.suffix.lstrip('.').lower() or 'file'}")
            relative, n = base, 1
            while key_of(relative) in taken:
                n += 1
                relative = base.with_name(f"{base.name}_{n}")
            taken.add(key_of(relative))
        result.append(Source(source.path, relative))
    return result
