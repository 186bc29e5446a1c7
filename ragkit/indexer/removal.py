"""``ragkit remove``: drop documents from an index on request, keeping the rest intact."""

from __future__ import annotations

import time
from pathlib import Path

from ragkit.errors import InvalidInputError
from ragkit.indexer import store, vectors
from ragkit.indexer.locking import index_lock
from ragkit.indexer.sources import Source, Sources, recorded_sources


def _whole_source(spec: str, sources: Sources) -> Source | None:
    """The source ``spec`` names as a whole: its path on disk, or its label."""
    path = Path(spec).expanduser().resolve()
    # A path on disk first; a label only when no source is at that path.
    named = [s for s in sources.items if path == Path(s.path)]
    if not named and not path.exists() and sources.labelled:
        named = [s for s in sources.items if spec.strip().rstrip("/") == s.label]
    if not named:
        return None
    if len(sources.items) == 1:
        raise InvalidInputError(
            f"'{spec}' names the whole index; to empty it, delete the index folder or use --rebuild"
        )
    return named[0]


def _candidates(spec: str, sources: Sources) -> list[str]:
    """Stored names a user's PATH may mean: a file or folder on disk (relative to the current
    folder) inside a source, else a name as stored."""
    path = Path(spec).expanduser().resolve()
    names = []
    for source in sources.items:
        root = Path(source.path)
        if source.kind == "folder" and root in path.parents:
            names.append(source.key(path.relative_to(root).as_posix(), sources.labelled))
    literal = spec.strip().rstrip("/")
    if literal in ("", "."):
        raise InvalidInputError(
            f"'{spec}' names the whole index; to empty it, delete the index folder or use --rebuild"
        )
    return [*names, literal]


def _stored_names(spec: str, sources: Sources, stored: set[str]) -> tuple[list[str], Source | None]:
    """The stored documents ``spec`` means, and the source it names as a whole (if it does)."""
    whole = _whole_source(spec, sources)
    if whole is not None:
        return sorted(n for n in stored if sources.owner(n) == whole), whole
    for candidate in _candidates(spec, sources):
        if candidate in stored:
            return [candidate], None
        under = sorted(s for s in stored if s.startswith(candidate + "/"))
        if under:
            return under, None
    return [], None


def remove_documents(index_dir: Path, paths: list[str], *, wait_seconds: float = 0.0) -> list[str]:
    """Remove the documents ``paths`` name (files, folders or whole sources); returns what
    left the index.

    Every path must match something: a typo names the path and changes nothing. A whole
    source leaves the index's sources too, so refreshing the index does not bring it back.
    """
    if not paths:
        raise InvalidInputError("name at least one document or folder to remove")
    if not (index_dir / store.DB_NAME).is_file():
        raise InvalidInputError(f"no index at {index_dir} (run `ragkit index PATH` first)")
    with index_lock(index_dir, wait_seconds):
        db = store.connect(index_dir)
        meta = store.get_meta(db)
        sources = recorded_sources(meta)
        stored = set(store.documents(db))
        chosen: list[str] = []
        dropped: list[Source] = []
        for spec in paths:
            found, whole = _stored_names(spec, sources, stored)
            if not found and whole is None:
                raise InvalidInputError(f"'{spec}' matches no document in the index at {index_dir}")
            chosen += [f for f in found if f not in chosen]
            dropped += [whole] if whole is not None else []
        kept = Sources([s for s in sources.items if s not in dropped], sources.labelled)
        if not kept.items:
            raise InvalidInputError(
                "that would remove every source; delete the index folder or use --rebuild"
            )
        with db.atomic():
            for relative in chosen:
                store.remove_document(db, relative)
            if dropped:
                store.set_meta(db, kept.to_meta())
        _rebuild_vectors(db, meta, index_dir)
        db.conn.close()
    return chosen


def _rebuild_vectors(db, meta: dict, index_dir: Path) -> None:
    dimension = int(meta["dimension"])
    count = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
    requested = meta.get("index_type_requested") or vectors.IndexSpec.from_dict(meta["index_spec"]).kind
    index_spec = vectors.choose(requested, count, dimension)
    vectors.write_atomic(vectors.from_store(db, index_spec, dimension), index_dir)
    with db.atomic():
        generation = int(store.get_meta(db).get("generation", 0) or 0) + 1
        store.set_meta(
            db,
            {
                "updated_at": str(time.time()),
                "index_spec": index_spec.to_dict(),
                "generation": str(generation),
            },
        )
