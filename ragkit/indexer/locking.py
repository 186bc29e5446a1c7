"""One writer per index: a file lock, with a clear message instead of a silent wait."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from ragkit.errors import InvalidInputError

LOCK_NAME = "index.lock"


@contextmanager
def index_lock(folder: Path, wait_seconds: float = 0.0):
    from filelock import FileLock, Timeout

    lock = FileLock(str(folder / LOCK_NAME))
    try:
        lock.acquire(timeout=wait_seconds)
    except Timeout:
        raise InvalidInputError(
            f"another `ragkit index` is updating {folder}; wait for it to finish (or pass --wait "
            "SECONDS). Searches keep working meanwhile"
        ) from None
    try:
        yield
    finally:
        lock.release()
