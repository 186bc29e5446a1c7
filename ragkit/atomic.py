"""Write a file or folder beside its final place, then rename it there.

A reader (another process, or the next run after a kill) sees the old version or the new
one, never a half-written one. Every cache, checkpoint and saved encoder goes through here.
Temporary names start with ``.<name>-`` so a folder's owner can recognise and drop leftovers
of a killed write with :func:`remove_leftovers`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_BUILD = "build"
_OLD = "old"


def replace_folder(fresh: Path, target: Path) -> None:
    """Put ``fresh`` where ``target`` is; an existing ``target`` is moved aside, then deleted."""
    if not target.exists():
        os.replace(fresh, target)
        return
    trash = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-{_OLD}-"))
    os.replace(target, trash / _OLD)
    os.replace(fresh, target)
    shutil.rmtree(trash, ignore_errors=True)


def is_free_folder(path: Path) -> bool:
    """Whether ``path`` may become a new folder without losing anything: absent, or an empty folder.

    Writers of whole folders (exports, soups, cuts) refuse anything else up front, so a user's
    existing files are never replaced by :func:`atomic_folder`. A symbolic link is never free:
    the rename at the end would replace the link, not fill the folder it points to."""
    if path.is_symlink():
        return False
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


@contextlib.contextmanager
def atomic_folder(target: Path, *, mode: int = 0o755) -> Iterator[Path]:
    """Yield an empty folder beside ``target``; when the block finishes it becomes ``target``.

    An exception leaves ``target`` as it was and removes the temporary folder. ``mode``
    widens ``mkdtemp``'s private 0700, since encoders and caches are meant to be shared.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-{_BUILD}-"))
    tmp.chmod(mode)
    try:
        yield tmp
        replace_folder(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: Path, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text(path: Path, text: str, *, fsync: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"), fsync=fsync)


def write_text_once(path: Path, text: str) -> str:
    """Publish ``text`` at ``path`` unless another writer did first; returns what ``path`` holds.

    Processes that compute the same thing side by side then all use the first one's result,
    even where their own differ in the last bits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(text.encode("utf-8"))
        os.chmod(tmp, 0o644)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return path.read_text(encoding="utf-8")


def remove_leftovers(root: Path, name: str) -> None:
    """Drop what killed writes of ``root/name`` left behind (call while no write is live)."""
    for kind in (_BUILD, _OLD):
        for path in root.glob(f".{name}-{kind}-*"):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
