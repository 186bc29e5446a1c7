"""Full-text ranking of chunks with SQLite FTS5 BM25: hybrid search's lexical half."""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter


def fts_query(query: str) -> str | None:
    """The query's words OR-ed as quoted terms: user text is never parsed as FTS5 syntax."""
    words = re.findall(r"\w+", query)
    if not words:
        return None
    return " OR ".join('"' + w.replace('"', "") + '"' for w in words)


def lexical_ranking(db, query: str, depth: int, allowed=None) -> list[tuple[int, float]]:
    """Top ``depth`` chunk ids by BM25 (higher is better), within ``allowed`` ids if given.

    Equal BM25 scores are ordered by text, not row id, so any store of the same texts agrees.
    Reading the text of every match to order it costs more than ranking itself, so the top
    is found by score alone and only tied scores are ordered by text (all the rows of a tie
    that the cut splits, since their texts decide which of them make it).
    """
    match = fts_query(query)
    if match is None or depth < 1:
        return []
    sql = "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ?"
    params: list = [match]
    if allowed is not None:
        # One JSON parameter, not one per id: SQLite caps the number of parameters.
        sql += " AND rowid IN (SELECT value FROM json_each(?))"
        params.append(json.dumps([int(i) for i in allowed]))
    with _snapshot(db):  # scores and ties read from one state of the index
        rows = db.execute(sql + " ORDER BY bm25(chunks_fts) LIMIT ?", [*params, depth + 1]).fetchall()
        if len(rows) > depth and rows[depth][1] == rows[depth - 1][1]:  # the cut splits a tie
            cut = rows[depth - 1][1]
            tied = db.execute(sql + " AND bm25(chunks_fts) = ?", [*params, cut]).fetchall()
            rows = [row for row in rows if row[1] < cut] + tied
        rows = _ties_by_text(db, rows)[:depth]
    return [(int(r[0]), -float(r[1])) for r in rows]


@contextlib.contextmanager
def _snapshot(db):
    """One read transaction around several statements, unless one is already open."""
    conn = getattr(db, "conn", db)
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.rollback()  # nothing was written: ending the read is all that is left


def _ties_by_text(db, rows: list[tuple]) -> list[tuple]:
    """``rows`` (sorted by score) with each run of equal scores ordered by its chunks' text."""
    counts = Counter(score for _, score in rows)
    tied = [rowid for rowid, score in rows if counts[score] > 1]
    if not tied:
        return rows
    texts = dict(
        db.execute(
            "SELECT id, text FROM chunks WHERE id IN (SELECT value FROM json_each(?))", [json.dumps(tied)]
        ).fetchall()
    )
    return sorted(rows, key=lambda row: (row[1], texts.get(row[0], "")))


def text_table(texts: list[str]):
    """An in-memory database holding ``texts`` as chunks 1..n, with the index's FTS5 table.

    Evaluation ranks a benchmark corpus with exactly the full-text index that search uses.
    """
    import sqlite3

    import sqlite_utils

    from ragkit.indexer import store

    db = sqlite_utils.Database(sqlite3.connect(":memory:"))
    store.create_schema(db)
    with db.atomic():
        db.execute(
            "INSERT INTO documents (id, path, hash, mtime, size, metadata, chunks, indexed_at) "
            "VALUES (1, 'corpus', '', 0, 0, '{}', ?, 0)",
            [len(texts)],
        )
        db.conn.executemany(
            "INSERT INTO chunks (id, document_id, ordinal, text, start_line, end_line, heading, tokens, "
            "vector) VALUES (?, 1, ?, ?, 1, 1, '', 0, x'')",
            [(i + 1, i, text) for i, text in enumerate(texts)],
        )
    return db
