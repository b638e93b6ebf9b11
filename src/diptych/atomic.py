"""Atomic file writes: readers see the old file or the new one, never half of one."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import DataError

# Temporary names are `.{name}.{pid}.tmp` (and `.{name}.{pid}.old` for a folder being replaced): the pid tells a
# live writer's files from those an interrupted one left behind.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<kind>tmp|old)$")
# A final name may use the whole 255 bytes file systems allow; its temporary name (with a pid of up to 10 digits)
# must still fit.
_NAME_MAX = 255
_TEMPORARY_EXTRA = len(".") + len(".") + 10 + len(".tmp")
_KEPT_BYTES = 180


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`, else delete it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def temporary_path(path: Path, kind: str = "tmp") -> Path:
    """This process's temporary name beside `path` (`.{name}.{pid}.tmp`), shortened to fit when `path`'s is long."""
    return path.with_name(f".{_temporary_stem(path.name)}.{os.getpid()}.{kind}")


def _temporary_stem(name: str) -> str:
    """The part of a temporary name that stands for the final name (the same for every writer's pid)."""
    encoded = os.fsencode(name)  # (a name that is not valid UTF-8 holds surrogate escapes: no str.encode())
    if len(encoded) + _TEMPORARY_EXTRA <= _NAME_MAX:
        return name
    # Keep a recognisable prefix and tell long names with the same prefix apart by a hash of the whole name.
    prefix = encoded[:_KEPT_BYTES].decode(errors="ignore")
    return f"{prefix}~{hashlib.sha1(encoded).hexdigest()[:12]}"


def check_name_length(path: Path) -> None:
    """Raise DataError if `path`'s name is longer than its folder's file system allows (255 bytes, usually)."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = _NAME_MAX
    size = len(os.fsencode(path.name))
    if size > limit:
        raise DataError(
            f"{path}: the name is {size} bytes, longer than the {limit} the file system allows; use a shorter name"
        )


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def fsync_file(path: Path) -> None:
    """Flush a file's contents to disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def remove_stale_temporaries(folder: Path, names: Iterable[str] | None = None) -> list[str]:
    """Delete the temporary files and folders in `folder` that writers killed mid-write left (only those of the
    final `names`, when given); return their names.

    Only those of processes that no longer run are touched (other processes, e.g. torchrun ranks, may be writing).
    A folder replaced while its writer was killed (`.{name}.{pid}.old` with no `{name}`) is moved back.
    """
    stems = None if names is None else {_temporary_stem(name) for name in names}
    removed: list[str] = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None or (stems is not None and match["name"] not in stems) or _process_alive(int(match["pid"])):
            continue
        path = Path(entry.path)
        original = folder / match["name"]
        if match["kind"] == "old" and not original.exists():
            os.replace(path, original)
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(entry.name)
    return removed


def remove_stale_temporaries_of(paths: Iterable[Path]) -> None:
    """Delete what writers killed while writing these files left beside them (see remove_stale_temporaries)."""
    by_folder: dict[Path, set[str]] = {}
    for path in paths:
        by_folder.setdefault(path.parent, set()).add(path.name)
    for folder, names in by_folder.items():
        remove_stale_temporaries(folder, names)


def _process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (ours always counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True  # another user's process
    return True
