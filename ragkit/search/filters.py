"""Search filters as parameterised SQL, turned into a FAISS id selector.

Filtering *inside* the vector search (rather than over-fetching and discarding) is what
guarantees ``k`` results whenever ``k`` matching chunks exist.
"""

from __future__ import annotations

import re

from ragkit.errors import InvalidInputError

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_filter_args(items: list[str]) -> list[dict[str, str]]:
    """``["*a*", "suffix=.md"]`` (the CLI's repeated --filter) → filters that must all hold."""
    out: list[dict[str, str]] = []
    for item in items:
        if "=" not in item:
            out.append({"path": item})  # a bare glob filters on the path
            continue
        key, value = item.split("=", 1)
        out.append({key.strip(): value.strip()})
    return out


def check_glob(pattern: str) -> str:
    """SQLite GLOB syntax (``*``, ``?``, ``[abc]``), case-sensitive; an open ``[`` is an error."""
    i = pattern.find("[")
    while i >= 0:
        close = pattern.find("]", i + 2)  # a ']' right after '[' is a literal member of the set
        if close < 0:
            raise InvalidInputError(f"filter glob {pattern!r} opens '[' without closing it")
        i = pattern.find("[", close + 1)
    return pattern


def glob_variants(pattern: str) -> list[str]:
    """``**/`` matches zero or more folders, as in a shell: ``**/*.md`` also matches ``a.md``."""
    variants = {pattern}
    changed = True
    while changed:
        changed = False
        for variant in list(variants):
            for shorter in (variant.removeprefix("**/"), variant.replace("/**/", "/", 1)):
                if shorter != variant and shorter not in variants:
                    variants.add(shorter)
                    changed = True
    return sorted(variants)


def _path_clause(globs: list[str], prefix: str | None) -> tuple[str, list]:
    """Each glob matches the stored path, or (one unlabelled folder source) ``prefix/path``."""
    clauses, params = [], []
    for glob in globs:
        for variant in glob_variants(check_glob(str(glob))):
            clauses.append("d.path GLOB ?")
            params.append(variant)
            if prefix:
                clauses.append("(? || d.path) GLOB ?")
                params += [f"{prefix}/", variant]
    return "(" + " OR ".join(clauses) + ")", params


def filter_sql(filter, metadata_keys: set[str] | None = None, prefix: str | None = None) -> tuple[str, list]:
    """A WHERE clause over ``chunks c JOIN documents d`` and its parameters.

    ``filter`` is a path glob, a dict (``path`` glob or list of globs, OR-ed; metadata values),
    or a list of those, all of which must hold. ``prefix`` is the folder name of an index's
    one unlabelled source, so ``docs/*.md`` finds ``guide.md`` after ``ragkit index ./docs``.
    """
    if filter is None:
        return "1", []
    if isinstance(filter, list):
        if not filter:
            raise InvalidInputError("filter list is empty")
        parts = [filter_sql(f, metadata_keys, prefix) for f in filter]
        return " AND ".join(f"({w})" for w, _ in parts), [p for _, params in parts for p in params]
    if isinstance(filter, str):
        filter = {"path": filter}
    if not isinstance(filter, dict) or not filter:
        raise InvalidInputError("filter must be a path glob or a dict like {'path': 'docs/*.md'}")
    clauses, params = [], []
    for key, value in filter.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise InvalidInputError(f"filter key {key!r} must be a plain name")
        if key == "path":
            globs = value if isinstance(value, list | tuple) else [value]
            clause, values = _path_clause(list(globs), prefix)
            clauses.append(clause)
            params.extend(values)
        else:
            if metadata_keys is not None and key not in metadata_keys:
                known = ", ".join(sorted({"path", *metadata_keys}))
                raise InvalidInputError(f"unknown filter key '{key}'; this index knows: {known}")
            clauses.append(f"json_extract(d.metadata, '$.{key}') = ?")
            params.append(value)
    return " AND ".join(clauses), params


def source_prefix(db) -> str | None:
    """The folder name stored paths are relative to, when one unlabelled folder is the source."""
    from pathlib import Path

    from ragkit.indexer import store
    from ragkit.indexer.sources import recorded_sources

    sources = recorded_sources(store.get_meta(db))
    if sources.labelled or len(sources.items) != 1 or sources.items[0].kind != "folder":
        return None
    return Path(sources.items[0].path).name or None


def metadata_keys(db) -> set[str]:
    rows = db.execute("SELECT DISTINCT j.key FROM documents d, json_each(d.metadata) j")
    return {r[0] for r in rows}


def matching_ids(db, filter: str | dict | None):
    """Chunk ids that pass the filter (None when there is no filter)."""
    import numpy as np

    if filter is None:
        return None
    where, params = filter_sql(filter, metadata_keys(db), source_prefix(db))
    rows = db.execute(
        f"SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE {where}", params
    )
    return np.fromiter((r[0] for r in rows), dtype=np.int64)
