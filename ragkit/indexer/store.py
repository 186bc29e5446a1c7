"""The SQLite side of an index: documents, chunks (with their vectors) and meta.

SQLite is the source of truth, as in txtai: the FAISS file is a derived, rebuildable view
whose ids are the chunk row ids. Chunk ids come from AUTOINCREMENT, so an id is never
reused and a stale FAISS entry can never point at a different chunk.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragkit.errors import InvalidInputError

log = logging.getLogger("ragkit")
SCHEMA_VERSION = 1
DB_NAME = "index.db"


@dataclass(frozen=True)
class StoredDocument:
    id: int
    path: str
    hash: str
    mtime: float
    size: int


def connect(folder: Path, *, readonly: bool = False):
    """Open the database (WAL, foreign keys on) through sqlite-utils.

    Read-only opens work where the folder cannot be written (a shared volume, an image):
    SQLite then cannot create its WAL index file, so the database is opened as immutable.
    A file that is not a SQLite database is one clear error naming ``--rebuild``.
    """
    import sqlite_utils

    path = folder / DB_NAME
    if readonly:
        if not path.is_file():
            raise InvalidInputError(f"no index at {folder} (run `ragkit index PATH` first)")
        conn = _checked(
            sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False), path
        )
        if conn is None:
            wal = path.with_name(f"{DB_NAME}-wal")
            if wal.is_file() and wal.stat().st_size > 0:
                raise InvalidInputError(
                    f"cannot read {path}: it is locked by a writer, or its folder is read-only and "
                    "holds unmerged changes (index.db-wal); open it once where it is writable"
                )
            # Nothing can change a read-only database, so reading it as immutable is exact.
            uri = f"file:{path}?mode=ro&immutable=1"
            conn = _checked(sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False), path)
        if conn is None:
            raise InvalidInputError(f"cannot open {path} for reading")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as exc:
            _raise_damaged(path, exc)
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return sqlite_utils.Database(conn)


def _raise_damaged(path: Path, exc: Exception):
    if isinstance(exc, sqlite3.OperationalError):
        raise exc
    raise InvalidInputError(
        f"{path} is damaged ({exc}); rebuild the index from its documents with "
        f"`ragkit index PATH --index {path.parent} --rebuild`"
    ) from None


def _checked(conn, path: Path):
    """``conn`` if it can read the schema; None if the folder's read-only state blocks it."""
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        return None
    except sqlite3.DatabaseError as exc:
        conn.close()
        _raise_damaged(path, exc)


def create_schema(db) -> None:
    """Create what is missing, in one transaction: a table without its triggers never commits."""
    with db.atomic():
        _create_missing_tables(db)


def _create_missing_tables(db) -> None:
    if "meta" not in db.table_names():
        db["meta"].create({"key": str, "value": str}, pk="key")
    if "documents" not in db.table_names():
        db["documents"].create(
            {
                "id": int,
                "path": str,
                "hash": str,
                "mtime": float,
                "size": int,
                "metadata": str,
                "chunks": int,
                "indexed_at": float,
            },
            pk="id",
        )
        db["documents"].create_index(["path"], unique=True)
    if "chunks" not in db.table_names():
        # AUTOINCREMENT needs raw SQL: sqlite-utils creates plain INTEGER PRIMARY KEYs.
        db.execute(
            """CREATE TABLE chunks (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
                ordinal INTEGER NOT NULL,
                text TEXT NOT NULL,
                start_line INTEGER NOT NULL,
                end_line INTEGER NOT NULL,
                heading TEXT NOT NULL,
                tokens INTEGER NOT NULL,
                vector BLOB NOT NULL
            )"""
        )
        db["chunks"].create_index(["document_id"])
    if "chunks_fts" not in db.table_names():
        # Full-text index for hybrid search, kept in step with chunks by triggers, so it is
        # updated inside the same transactions and can never disagree with them.
        db.execute(
            "CREATE VIRTUAL TABLE chunks_fts USING fts5(text, heading, content='chunks', "
            "content_rowid='id', tokenize='porter unicode61')"
        )
        db.execute(
            "CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN "
            "INSERT INTO chunks_fts(rowid, text, heading) VALUES (new.id, new.text, new.heading); END"
        )
        db.execute(
            "CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN "
            "INSERT INTO chunks_fts(chunks_fts, rowid, text, heading) "
            "VALUES ('delete', old.id, old.text, old.heading); END"
        )


DAMAGED_HINT = "rebuild it with `ragkit index PATH --rebuild` (the documents are read again)"


def check_integrity(db, folder: Path) -> None:
    """Refuse to update a database with damaged pages: SQLite reads around them silently."""
    try:
        problems = [row[0] for row in db.execute("PRAGMA quick_check(3)").fetchall()]
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    if problems != ["ok"]:
        raise InvalidInputError(f"the index database in {folder} is damaged ({problems[0]}); {DAMAGED_HINT}")


def get_meta(db) -> dict[str, str]:
    if "meta" not in db.table_names():
        return {}
    return {row["key"]: row["value"] for row in db["meta"].rows}


def set_meta(db, values: dict) -> None:
    """Upsert settings; inside ``db.atomic()`` they commit with the rest of its writes."""
    db["meta"].upsert_all(
        [{"key": k, "value": v if isinstance(v, str) else json.dumps(v)} for k, v in values.items()], pk="key"
    )


def documents(db) -> dict[str, StoredDocument]:
    return {
        row["path"]: StoredDocument(row["id"], row["path"], row["hash"], row["mtime"], row["size"])
        for row in db.query("SELECT id, path, hash, mtime, size FROM documents")
    }


def replace_document(
    db, *, path: str, hash: str, mtime: float, size: int, metadata: dict, chunks: list, vectors
) -> list[int]:
    """Swap a document's chunks; returns the new chunk ids.

    Callers wrap it in ``db.atomic()`` (the builder puts a group of documents in one), so a
    reader, or the next run after a kill, sees each document entirely old or entirely new.
    Outside a transaction sqlite-utils commits every statement on its own, and a kill
    between them would leave a document with only some of its chunks.
    """
    row = db.execute("SELECT id FROM documents WHERE path = ?", [path]).fetchone()
    if row is not None:
        db.execute("DELETE FROM chunks WHERE document_id = ?", [row[0]])
        db.execute(
            "UPDATE documents SET hash = ?, mtime = ?, size = ?, metadata = ?, chunks = ?, indexed_at = ? "
            "WHERE id = ?",
            [hash, mtime, size, json.dumps(metadata), len(chunks), time.time(), row[0]],
        )
        document_id = row[0]
    else:
        cursor = db.execute(
            "INSERT INTO documents (path, hash, mtime, size, metadata, chunks, indexed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [path, hash, mtime, size, json.dumps(metadata), len(chunks), time.time()],
        )
        document_id = cursor.lastrowid
    ids = []
    half = np.asarray(vectors, dtype=np.float16)
    for ordinal, (chunk, vector) in enumerate(zip(chunks, half, strict=True)):
        cursor = db.execute(
            "INSERT INTO chunks (document_id, ordinal, text, start_line, end_line, heading, tokens, vector) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                document_id,
                ordinal,
                chunk.text,
                chunk.start_line,
                chunk.end_line,
                chunk.heading,
                chunk.tokens,
                vector.tobytes(),
            ],
        )
        ids.append(cursor.lastrowid)
    return ids


def rename_documents(db, names: dict[str, str]) -> None:
    """Store documents under new names; chunks and vectors follow by document id.

    Two passes through names no document can have, so a new name that is still some other
    document's old name ("x.md" becoming "docs/x.md" beside an old "docs/x.md") never collides.
    """
    ids = {old: db.execute("SELECT id FROM documents WHERE path = ?", [old]).fetchone() for old in names}
    for row in ids.values():
        if row is not None:
            db.execute("UPDATE documents SET path = ? WHERE id = ?", [f"\x00renaming\x00{row[0]}", row[0]])
    for old, row in ids.items():
        if row is not None:
            db.execute("UPDATE documents SET path = ? WHERE id = ?", [names[old], row[0]])


def touch_document(db, path: str, mtime: float) -> None:
    """Same content, new mtime: remember it so the next run skips hashing the file again."""
    db.execute("UPDATE documents SET mtime = ? WHERE path = ?", [mtime, path])


def remove_document(db, path: str) -> int:
    row = db.execute("SELECT id, chunks FROM documents WHERE path = ?", [path]).fetchone()
    if row is None:
        return 0
    db.execute("DELETE FROM chunks WHERE document_id = ?", [row[0]])
    db.execute("DELETE FROM documents WHERE id = ?", [row[0]])
    return int(row[1] or 0)


def chunk_ids(db, dimension: int | None = None) -> np.ndarray:
    """Chunk ids in order; with ``dimension``, only those whose vector is intact (exactly what
    the vector index holds)."""
    if dimension is None:
        rows = db.execute("SELECT id FROM chunks ORDER BY id")
    else:
        rows = db.execute("SELECT id FROM chunks WHERE length(vector) = ? ORDER BY id", [2 * dimension])
    return np.fromiter((r[0] for r in rows), dtype=np.int64)


def all_vectors(db, dimension: int, batch: int = 50_000):
    """Yield (ids, float32 vectors) in id order, in batches, for (re)building FAISS."""
    last = -1
    while True:
        rows = db.execute(
            "SELECT id, vector FROM chunks WHERE id > ? ORDER BY id LIMIT ?", [last, batch]
        ).fetchall()
        if not rows:
            return
        last = int(rows[-1][0])
        intact = [r for r in rows if len(r[1]) == 2 * dimension]
        if len(intact) < len(rows):
            log.warning(
                "%d chunks have a damaged vector and are left out of the vector index; "
                "re-index their files or --rebuild",
                len(rows) - len(intact),
            )
        if not intact:
            continue
        ids = np.array([r[0] for r in intact], dtype=np.int64)
        vectors = np.frombuffer(b"".join(r[1] for r in intact), dtype=np.float16).reshape(
            len(intact), dimension
        )
        yield ids, vectors.astype(np.float32)
