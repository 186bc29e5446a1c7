"""``ragkit remove``: drop documents from an index on request, keeping the rest intact."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from ragkit.errors import InvalidInputError
from ragkit.indexer import store, vectors
from ragkit.indexer.locking import index_lock


def _stored_names(spec: str, root: Path | None, stored: set[str]) -> list[str]:
    """Documents a user's PATH means: a stored path, a file on disk, or a folder's documents."""
    if spec in stored:
        return [spec]
    candidates = [spec.rstrip("/")]
    if root is not None:
        path = Path(spec).expanduser().absolute()
        with contextlib.suppress(ValueError):
            candidates.append(path.relative_to(root).as_posix())
    for candidate in candidates:
        if candidate in stored:
            return [candidate]
        prefix = "" if candidate in ("", ".") else candidate + "/"
        under = sorted(s for s in stored if s.startswith(prefix))
        if under:
            return under
    return []


def remove_documents(index_dir: Path, paths: list[str], *, wait_seconds: float = 0.0) -> list[str]:
    """Remove the documents ``paths`` name (files or folders); returns what left the index.

    Every path must match something: a typo names the path and changes nothing.
    """
    if not paths:
        raise InvalidInputError("name at least one document or folder to remove")
    if not (index_dir / store.DB_NAME).is_file():
        raise InvalidInputError(f"no index at {index_dir} (run `ragkit index PATH` first)")
    with index_lock(index_dir, wait_seconds):
        db = store.connect(index_dir)
        meta = store.get_meta(db)
        root = Path(meta["root"]) if meta.get("root") else None
        stored = set(store.documents(db))
        chosen: list[str] = []
        for spec in paths:
            found = _stored_names(spec, root, stored)
            if not found:
                raise InvalidInputError(f"'{spec}' matches no document in the index at {index_dir}")
            chosen += [f for f in found if f not in chosen]
        with db.conn:
            for relative in chosen:
                store.remove_document(db, relative)
        spec = json.loads(meta["index_spec"])
        index_spec = vectors.IndexSpec(spec["kind"], {k: v for k, v in spec.items() if k != "kind"})
        dimension = int(meta["dimension"])
        vectors.write_atomic(
            vectors.build(index_spec, dimension, store.all_vectors(db, dimension)), index_dir
        )
        with db.conn:
            store.set_meta(db, {"updated_at": str(time.time())})
        db.conn.close()
    return chosen
