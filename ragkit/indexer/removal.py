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
    """Documents a user's PATH means: a file or folder on disk (relative to the current
    folder), else a path as stored. The whole index is never one PATH away."""
    candidates = []
    if root is not None:
        path = Path(spec).expanduser().absolute()
        with contextlib.suppress(ValueError):
            candidates.append(path.relative_to(root).as_posix())
    candidates.append(spec.strip().rstrip("/"))
    for candidate in candidates:
        if candidate in ("", "."):
            raise InvalidInputError(
                f"'{spec}' names the whole index; to empty it, delete the index folder or use --rebuild"
            )
        if candidate in stored:
            return [candidate]
        under = sorted(s for s in stored if s.startswith(candidate + "/"))
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
        dimension = int(meta["dimension"])
        count = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        requested = meta.get("index_type_requested") or json.loads(meta["index_spec"])["kind"]
        index_spec = vectors.choose(requested, count, dimension)
        vectors.write_atomic(
            vectors.build(index_spec, dimension, store.all_vectors(db, dimension)), index_dir
        )
        with db.conn:
            store.set_meta(db, {"updated_at": str(time.time()), "index_spec": index_spec.to_dict()})
        db.conn.close()
    return chosen
