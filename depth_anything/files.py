"""Writing files so that a crash, a kill or a full disk never leaves a half-written one.

Every surface (the command line, the ComfyUI save nodes, the examples) writes through `write_atomic`: the data
goes to a temporary file in the target's own folder, is flushed to disk, and is renamed into place when complete.
The temporary names carry the host and process id, so `remove_stale_partials` can clean up after killed runs
without touching those of a run still going.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

PARTIAL_SUFFIX = ".partial"
_HOST = socket.gethostname().replace(".", "_").replace("-", "_")


def partial_path(path: Path, tag: str = "") -> Path:
    """A temporary name beside `path`, unique to this host and process: `.name[.tag].host-pid.partial`."""
    middle = f".{tag}" if tag else ""
    return path.with_name(f".{path.name}{middle}.{_HOST}-{os.getpid()}{PARTIAL_SUFFIX}")


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None], *, overwrite: bool = True) -> Path:
    """Write `path` through a temporary file in the same folder, moved into place only when complete.

    Args:
        path: the file to write; its folder is created when missing.
        write: called with the open temporary file (binary); whatever it raises leaves nothing behind.
        overwrite: False never replaces an existing file: FileExistsError instead (the move is atomic either way).

    Example:
        >>> write_atomic(Path("out/depth.npy"), lambda f: np.save(f, depth))  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = partial_path(path)
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())  # the rename must not land before the data
        if overwrite:
            os.replace(temporary, path)
        else:
            _move_no_clobber(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


MIN_FREE_BYTES = 16 << 20  # below this a disk counts as full before a run starts


def output_folder_problem(folder: str | Path) -> str | None:
    """Why outputs cannot be written into `folder` (which may not exist yet), or None when they can.

    Checked before a run loads its model, so that a folder that is a file, lies under a file, is read-only or is
    on a full disk is one clear sentence, not a traceback after the work started. Nothing is created: a small
    probe file is written and removed in the deepest folder that exists.

    >>> output_folder_problem("/dev/null/depth")
    '/dev/null/depth cannot be made: /dev/null is a file, not a folder. Choose another output folder.'
    """
    folder = Path(folder).expanduser()
    existing = folder
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        if existing == folder:
            return f"{folder} is a file, not a folder. Choose another output folder."
        return f"{folder} cannot be made: {existing} is a file, not a folder. Choose another output folder."
    probe = existing / f".depth-anything-probe.{_HOST}-{os.getpid()}{PARTIAL_SUFFIX}"
    try:
        with open(probe, "wb") as file:
            file.write(bytes(64 << 10))
            file.flush()
            os.fsync(file.fileno())
    except OSError as exc:
        reason = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
                  errno.EROFS: "it is on a read-only file system", errno.EACCES: "permission denied",
                  errno.EPERM: "permission denied"}.get(exc.errno, exc.strerror or type(exc).__name__)
        where = "" if existing == folder else f" (in {existing})"
        return f"{folder} is not writable{where}: {reason}. Choose another output folder."
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        free = None
    if free is not None and free < MIN_FREE_BYTES:
        return (
            f"{folder}: the disk is full ({free / 2**20:.1f} MB free). Free some space or choose another output "
            "folder."
        )
    return None


def _move_no_clobber(temporary: Path, path: Path) -> None:
    try:
        os.link(temporary, path)  # fails if `path` exists, where a rename would replace it
    except FileExistsError:
        raise FileExistsError(f"{path} already exists; it was left as it is.") from None
    except OSError:  # a file system without hard links (FAT, some network shares)
        if path.exists():
            raise FileExistsError(f"{path} already exists; it was left as it is.") from None
        os.replace(temporary, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(folders: Iterable[Path]) -> int:
    """Delete the temporary files that killed runs on this host left in `folders`; returns how many."""
    removed = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.glob(f".*{PARTIAL_SUFFIX}"):
            owner = path.name[: -len(PARTIAL_SUFFIX)].rsplit(".", 1)[-1]
            host, _, pid = owner.rpartition("-")
            if host == _HOST and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                path.unlink(missing_ok=True)
                removed += 1
    return removed
