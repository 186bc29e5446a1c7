"""Which folder is an index, and how a rebuilt one replaces it without touching anything else.

A folder is ragkit's only when it is empty, or already an index (its marker file or its
``index.db``). Anything else is refused before a single write: an index may only ever
create, replace or delete files of its own. A rebuild is made in a sibling folder and
exchanged with the old one in one ``renameat2(RENAME_EXCHANGE)`` where the kernel offers it,
so a reader opening the index sees the whole old one or the whole new one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
from pathlib import Path

from ragkit.errors import InvalidInputError
from ragkit.indexer.locking import LOCK_NAME
from ragkit.indexer.store import DB_NAME
from ragkit.indexer.vectors import FAISS_NAME

MARKER_NAME = "ragkit-index.json"
OWNED_NAMES = frozenset(
    {
        MARKER_NAME,
        DB_NAME,
        f"{DB_NAME}-wal",
        f"{DB_NAME}-shm",
        f"{DB_NAME}-journal",
        FAISS_NAME,
        LOCK_NAME,
    }
)
_TEMP_PREFIX = ".vectors-"


def _owned(name: str) -> bool:
    return name in OWNED_NAMES or (name.startswith(_TEMP_PREFIX) and name.endswith(".tmp"))


def foreign_files(folder: Path) -> list[str]:
    """Names in ``folder`` that ragkit did not create."""
    return sorted(entry.name for entry in folder.iterdir() if not _owned(entry.name))


def is_index(folder: Path) -> bool:
    """Marked as ragkit's, or holding a database with ragkit's settings table."""
    return (folder / MARKER_NAME).is_file() or _ragkit_database(folder / DB_NAME)


def _ragkit_database(path: Path) -> bool:
    return _query_one(path, "SELECT 1 FROM meta WHERE key = 'schema_version'", unreadable=False)


def has_documents(folder: Path) -> bool:
    # Unreadable: keep it, and let the error that opening it gives say what it is.
    return _query_one(folder / DB_NAME, "SELECT 1 FROM documents LIMIT 1", unreadable=True)


def _query_one(path: Path, sql: str, *, unreadable: bool) -> bool:
    """Whether ``sql`` finds a row in the database at ``path``, opened read-only."""
    import sqlite3

    if not path.is_file():
        return False
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return conn.execute(sql).fetchone() is not None
        finally:
            conn.close()
    except sqlite3.Error:
        return unreadable


def claim(target: Path, source: Path | None = None, *, dry_run: bool = False) -> None:
    """Check ``target`` may hold an index (of ``source``); unless ``dry_run``, create it if
    missing and mark it as ragkit's."""
    if target.exists() and not target.is_dir():
        raise InvalidInputError(f"--index {target} is a file, not a folder; choose a folder for the index")
    if source is not None:
        inside = source.resolve()
        if inside == target.resolve() or target.resolve() in inside.parents:
            raise InvalidInputError(
                f"--index {target} holds the documents being indexed; choose a separate folder "
                "(the default is .ragkit)"
            )
    if target.is_dir() and not is_index(target):
        # Not ours yet: even a file named like ours (another tool's index.db) is foreign here.
        foreign = sorted(e.name for e in target.iterdir() if e.name != LOCK_NAME)
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise InvalidInputError(
                f"--index {target} is a folder of other files ({shown}), not a ragkit index; "
                "choose an empty or new folder"
            )
    if not dry_run:
        target.mkdir(parents=True, exist_ok=True)
        mark(target)


def mark(folder: Path) -> None:
    marker = folder / MARKER_NAME
    if not marker.is_file():
        marker.write_text(json.dumps({"format": "ragkit-index"}) + "\n")


def fresh_sibling(target: Path) -> Path:
    """An empty hidden folder beside ``target`` for a rebuild (left over ones are ours)."""
    fresh = target.parent / f".{target.name}.rebuild"
    if fresh.exists():
        if foreign_files(fresh):
            raise InvalidInputError(f"{fresh} exists and is not a ragkit rebuild folder; move it away")
        shutil.rmtree(fresh)
    fresh.mkdir()
    mark(fresh)
    return fresh


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False where the system cannot."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0


def check_swappable(target: Path) -> None:
    """Refuse a rebuild up front when ``target`` holds files that would leave with the old folder."""
    foreign = foreign_files(target)
    if foreign:
        raise InvalidInputError(
            f"{target} also holds files that are not ragkit's ({', '.join(foreign[:3])}); move them "
            "away before --rebuild"
        )


def swap_in(fresh: Path, target: Path) -> None:
    """Put the rebuilt index in ``fresh`` where ``target`` is, then delete the old one."""
    check_swappable(target)
    if _exchange(fresh, target):
        shutil.rmtree(fresh)
        return
    old = target.parent / f".{target.name}.old"
    if old.exists():
        if foreign_files(old):
            raise InvalidInputError(f"{old} exists and is not a ragkit index; move it away before --rebuild")
        shutil.rmtree(old)
    os.replace(target, old)
    os.replace(fresh, target)
    shutil.rmtree(old)
