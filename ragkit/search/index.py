"""``ragkit.Index``: a read-only view of an index folder, safe while an index run writes.

An opened index reads one SQLite snapshot (a read transaction on each of its connections,
checked to be the same state) with the vectors that match it, so a search never meets a
half-written run. Opening checks the FAISS ids against that snapshot's chunk ids; when they
disagree (a run was killed between its SQLite commit and its FAISS rename, or is still
going) the vectors are rebuilt in memory from SQLite, and written back when no index run
holds the lock. Every finished run bumps the index's ``generation``; a search that sees a
new generation (or a rebuilt folder) reopens first, so a long-lived process follows updates.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ragkit.errors import InvalidInputError
from ragkit.indexer import store, vectors
from ragkit.indexer.sources import recorded_sources
from ragkit.search import ann
from ragkit.search.ann import VectorSearch
from ragkit.search.fusion import Fusion, encoder_fusion, hybrid_depth
from ragkit.search.lexical import lexical_ranking

DEFAULT_INDEX_DIR = ".ragkit"
INDEX_ENV = "RAGKIT_INDEX"


def default_index_dir() -> Path:
    return Path(os.environ.get(INDEX_ENV) or DEFAULT_INDEX_DIR)


@dataclass
class Hit:
    rank: int
    score: float
    text: str
    source: str
    start_line: int
    end_line: int
    heading: str
    chunk_id: int
    metadata: dict = field(default_factory=dict)
    similarity: float = 0.0
    """Cosine similarity of the query and this chunk, whatever ranked it: under hybrid
    search ``score`` is a fused rank score (about 0.03), which says nothing on its own."""

    def to_dict(self, digits: int | None = None) -> dict:
        """The hit as JSON-ready fields: one shape for the CLI, answers and LangChain (the
        document's own metadata stays on ``metadata``)."""
        body = {k: v for k, v in asdict(self).items() if k != "metadata"}
        if digits is not None:
            body["score"], body["similarity"] = round(self.score, digits), round(self.similarity, digits)
        return body


class Index:
    """An opened index: ``len(index)`` chunks, ``search`` (the encoder loads on first use)."""

    def __init__(self, folder: Path, db, meta: dict, vector_search: VectorSearch, repaired: bool):
        self.folder, self.db, self.meta = folder, db, meta
        self.vectors = vector_search
        """The dense half (:class:`ragkit.search.ann.VectorSearch`), matching ``db``'s snapshot."""
        self.repaired = repaired
        self._fusion: Fusion | None = None
        self._encoder = None
        from concurrent.futures import ThreadPoolExecutor

        self._lexical_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragkit-bm25")
        self._lexical_db = None
        """The worker's own read-only connection, pinned to the same snapshot as ``db``."""
        self._probe_db = None
        """An unpinned connection that reads the current generation."""
        self._version = (_inode(folder / store.DB_NAME), meta.get("generation", "0"))
        self._refresh_lock = threading.Lock()

    @classmethod
    def open(cls, folder: str | os.PathLike | None = None, *, encoder=None) -> Index:
        folder = Path(folder).expanduser() if folder is not None else default_index_dir()
        database = _inode(folder / store.DB_NAME)
        db, lexical_db = _pinned_pair(folder)
        meta = store.get_meta(db)
        missing = [k for k in ("dimension", "index_spec", "encoder_fingerprint") if k not in meta]
        if missing and "updated_at" not in meta:
            raise InvalidInputError(
                f"{folder} is not a finished ragkit index: its first `ragkit index` run stopped before "
                f"the end; run `ragkit index PATH --index {folder}` again (it keeps what was embedded)"
            )
        if missing:
            raise InvalidInputError(
                f"{folder} lacks its settings ({', '.join(missing)}); rebuild it with "
                f"`ragkit index PATH --index {folder} --rebuild`"
            )
        if meta.get("schema_version") != str(store.SCHEMA_VERSION):
            raise InvalidInputError(
                f"{folder} was written by another ragkit version (schema {meta.get('schema_version')}); "
                "rebuild it with `ragkit index PATH --rebuild`"
            )
        index, repaired = cls._consistent_vectors(folder, db, meta, database)
        opened = cls(folder, db, meta, VectorSearch(vectors.to_gpu_if_available(index)), repaired)
        # Opened beside ``db`` on the same snapshot: the same file even if a rebuild swaps the folder.
        opened._lexical_db = lexical_db
        opened._version = (database, meta.get("generation", "0"))
        if encoder is not None:
            opened.use_encoder(encoder)
        return opened

    def close(self) -> None:
        """Release the snapshot, the connections and the full-text worker."""
        self._lexical_worker.shutdown(wait=True)
        for connection in (self.db, self._lexical_db, self._probe_db):
            if connection is not None:
                _release(connection)
                connection.conn.close()
        self._lexical_db = self._probe_db = None

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _current_version(self) -> tuple:
        """(inode of index.db, generation) as they are now, outside this index's snapshot."""
        inode = _inode(self.folder / store.DB_NAME)
        if self._probe_db is None or inode != self._version[0]:
            if self._probe_db is not None:
                self._probe_db.conn.close()
            self._probe_db = store.connect(self.folder, readonly=True)
        row = self._probe_db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return inode, row[0] if row else "0"

    def refresh(self) -> bool:
        """Reopen when a finished index run changed the index; True when it did."""
        with self._refresh_lock:
            try:
                if self._current_version() == self._version:
                    return False
            except (InvalidInputError, OSError):
                return False  # a rebuild is swapping folders: keep the snapshot held now
            fresh = Index.open(self.folder)
            if self._encoder is not None:
                fresh.use_encoder(self._encoder)
            fresh._fusion = self._fusion
            old = (self.db, self._lexical_db, self._lexical_worker)
            self.db, self.meta, self.vectors = fresh.db, fresh.meta, fresh.vectors
            self._lexical_db, self._lexical_worker = fresh._lexical_db, fresh._lexical_worker
            self.repaired, self._version = fresh.repaired, fresh._version
            old[2].shutdown(wait=True)
            for connection in old[:2]:
                _release(connection)
                connection.conn.close()
            return True

    @staticmethod
    def _consistent_vectors(folder: Path, db, meta: dict, database: int | None):
        dimension = int(meta["dimension"])
        index = vectors.read(folder)
        ids = store.chunk_ids(db, dimension)
        if index is not None and index.d == dimension and np.array_equal(vectors.ids_of(index), ids):
            return index, False
        spec = vectors.IndexSpec.from_dict(meta["index_spec"])
        index = vectors.from_store(db, spec, dimension)
        _write_back_if_idle(folder, index, database)
        return index, True

    def __len__(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM chunks").fetchone()[0])

    @property
    def fingerprint(self) -> str:
        return self.meta["encoder_fingerprint"]

    def use_encoder(self, encoder) -> None:
        """Bind a loaded encoder (or a spec); a different fingerprint is refused."""
        if isinstance(encoder, str):
            encoder = self._load_query_encoder(encoder)
        if encoder.fingerprint != self.fingerprint:
            raise InvalidInputError(
                f"the index at {self.folder} was built with encoder {self.meta.get('encoder')} "
                f"(fingerprint {self.fingerprint}), not {encoder.fingerprint}; its vectors would be "
                "meaningless to this encoder. Rebuild it with `ragkit index PATH --rebuild --encoder ...`"
            )
        self._encoder = encoder

    def _load_query_encoder(self, spec: str):
        """Searching needs only the query's forward pass: the engine that needs the least
        memory and start-up. NumPy without torch when verified for this encoder, else the
        light torch forward without transformers, else transformers; each must give the
        index's fingerprint, else the next is tried."""
        from ragkit.encoder.numpy_encoder import load_numpy_encoder

        encoder = load_numpy_encoder(spec)
        if encoder is not None and encoder.fingerprint == self.fingerprint:
            return encoder
        from ragkit.encoder import Encoder

        encoder = Encoder.from_pretrained(spec, backend="lean")
        if encoder.fingerprint != self.fingerprint and _is_light(encoder):
            encoder = Encoder.from_pretrained(spec)
        return encoder

    @property
    def encoder(self):
        if self._encoder is None:
            self.use_encoder(self.meta.get("encoder", "default"))
        return self._encoder

    @property
    def fusion(self) -> Fusion:
        """How hybrid search fuses dense and full-text rankings (:mod:`ragkit.search.fusion`):
        one set on this object, else the one the index records (``ragkit index --dense-weight``),
        else the one the encoder states, else the default."""
        if self._fusion is not None:
            return self._fusion
        recorded = self._recorded_fusion()
        return recorded if recorded is not None else encoder_fusion(self.encoder)

    def _recorded_fusion(self) -> Fusion | None:
        """The fusion ``ragkit index --dense-weight`` recorded (None: none was)."""
        recorded = self.meta.get("fusion")
        if not recorded:
            return None
        try:
            settings = json.loads(recorded)
        except ValueError:
            settings = recorded
        return Fusion.from_settings(settings, f"the fusion recorded in the index at {self.folder}")

    @fusion.setter
    def fusion(self, value: Fusion | None) -> None:
        if value is not None and not isinstance(value, Fusion):
            raise InvalidInputError(f"fusion must be a ragkit.search.fusion.Fusion, got {value!r}")
        self._fusion = value

    def status(self) -> dict:
        size = sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())
        documents = int(self.db.execute("SELECT count(*) FROM documents").fetchone()[0])
        recorded = self._recorded_fusion()
        return {
            "index": str(self.folder),
            "sources": self.sources(),
            "documents": documents,
            "chunks": len(self),
            "dimension": int(self.meta["dimension"]),
            "index_type": json.loads(self.meta["index_spec"]),
            "encoder": self.meta.get("encoder"),
            "encoder_fingerprint": self.fingerprint,
            "document_precision": json.loads(self.meta.get("document_precision") or "null"),
            "fusion": recorded.settings() if recorded is not None else None,
            "query_precision": "float32",
            "chunk_tokens": int(self.meta.get("chunk_tokens", 0)),
            "overlap": int(self.meta.get("overlap", 0)),
            "size_bytes": size,
            "updated_at": float(self.meta.get("updated_at", 0)),
            "repaired_on_open": self.repaired,
        }

    def sources(self) -> list[dict]:
        """Each source (label, path, kind) with how many documents it has in the index."""
        recorded = recorded_sources(self.meta)
        counts: dict[str, int] = {s.label: 0 for s in recorded.items}
        for (name,) in self.db.execute("SELECT path FROM documents"):
            owner = recorded.owner(name)
            if owner is not None:
                counts[owner.label] += 1
        return [{**asdict(s), "documents": counts[s.label]} for s in recorded.items]

    def search(
        self, query: str, k: int = 5, filter: str | dict | None = None, hybrid: bool = True
    ) -> list[Hit]:
        """Top ``k`` chunks for ``query``.

        ``filter`` is a path glob (``"docs/*.md"``), a dict of a ``path`` glob and document
        metadata values, or a list of those that must all hold; ``k`` hits come back whenever
        ``k`` chunks match, on every index type. By default (``hybrid=True``) the dense ranking
        is fused with SQLite FTS5 BM25 by ``self.fusion`` (:mod:`ragkit.search.fusion`), and a hit's
        score is the fused score: on SciFact test it beats both halves (EVAL.md).
        ``hybrid=False`` ranks by the encoder alone; scores are then cosine similarities.
        """
        return self.search_many([query], k, filter=filter, hybrid=hybrid)[0]

    def search_many(
        self, queries: list[str], k: int = 5, filter: str | dict | None = None, hybrid: bool = True
    ) -> list[list[Hit]]:
        from ragkit.search.filters import matching_ids

        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InvalidInputError(f"k must be a positive integer, got {k!r}")
        if isinstance(queries, str) or any(not isinstance(q, str) or not q.strip() for q in queries):
            raise InvalidInputError("the query is empty; there is nothing to search for")
        self.refresh()
        allowed = matching_ids(self.db, filter)
        if len(self.vectors) == 0 or (allowed is not None and len(allowed) == 0):
            return [[] for _ in queries]
        depth = hybrid_depth(k) if hybrid else k
        encoder = self.encoder  # loaded before the full-text work starts beside it
        lexical = self._lexical_rankings(queries, depth, allowed) if hybrid else None
        matrix = np.ascontiguousarray(encoder.encode_queries(queries, show_progress=False), dtype=np.float32)
        scores, ids = self.vectors.search(matrix, depth, allowed, self._stored_vectors)
        lexical_rows = lexical.result() if lexical is not None else [None] * len(queries)
        fusion = self.fusion if hybrid else None
        results = []
        for lexical_row, query_vector, row_scores, row_ids in zip(
            lexical_rows, matrix, scores, ids, strict=True
        ):
            dense = [(int(i), float(s)) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
            if lexical_row is not None:
                dense = fusion.fuse(dense, lexical_row)[:k]
            results.append(self._hits(dense[:k], query_vector))
        return results

    def _lexical_rankings(self, queries: list[str], depth: int, allowed):
        """BM25 rankings of ``queries``, computed in a worker thread while the encoder runs.

        SQLite and the encoder's engine both release the GIL, so the full-text half of a
        hybrid search costs little more than the query's encoding alone. The worker reads
        through its own connection, so no connection is ever used by two threads at once.
        """

        connection = self._lexical_db

        def rank() -> list[list[tuple[int, float]]]:
            return [lexical_ranking(connection, query, depth, allowed) for query in queries]

        return self._lexical_worker.submit(rank)

    def _stored_vectors(self, allowed: np.ndarray):
        """The allowed chunks' stored (float16) vectors from this snapshot, a slice at a time."""
        dimension = int(self.meta["dimension"])
        size = ann.EXACT_FILTER_LIMIT
        for start in range(0, len(allowed), size):
            part = json.dumps([int(i) for i in allowed[start : start + size]])
            ids, stored = [], []
            for chunk_id, blob in self.db.execute(
                "SELECT id, vector FROM chunks WHERE id IN (SELECT value FROM json_each(?))", [part]
            ):
                if len(blob) == 2 * dimension:  # a damaged vector cannot be scored
                    ids.append(chunk_id)
                    stored.append(np.frombuffer(blob, dtype=np.float16))
            matrix = np.vstack(stored) if stored else np.zeros((0, dimension), dtype=np.float16)
            yield np.array(ids, dtype=np.int64), matrix

    def _hits(self, ranked: list[tuple[int, float]], query_vector: np.ndarray) -> list[Hit]:
        wanted = [chunk_id for chunk_id, _ in ranked]
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        rows = {
            row[0]: row
            for row in self.db.execute(
                "SELECT c.id, c.text, d.path, c.start_line, c.end_line, c.heading, d.metadata, c.vector "
                f"FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id IN ({marks})",
                wanted,
            )
        }
        hits = []
        for chunk_id, score in ranked:
            row = rows.get(chunk_id)
            if row is None:
                continue  # removed by a concurrent index run after the vectors were loaded
            metadata = json.loads(row[6] or "{}")
            # The stored (float16) vector is the one FAISS holds, so this equals a dense score.
            stored = np.frombuffer(row[7], dtype=np.float16).astype(np.float32)
            similarity = float(stored @ query_vector) if len(stored) == len(query_vector) else 0.0
            text, source, start, end, heading = row[1:6]
            hits.append(
                Hit(len(hits) + 1, score, text, source, start, end, heading, chunk_id, metadata, similarity)
            )
        return hits


def _snapshot_state(db) -> tuple:
    return db.execute("SELECT count(*), coalesce(max(id), 0), coalesce(sum(id), 0) FROM chunks").fetchone()


def _pin(db) -> None:
    """Begin a read transaction: every later read on ``db`` sees this one snapshot."""
    db.conn.execute("BEGIN")
    db.execute("SELECT count(*) FROM sqlite_master").fetchone()


def _release(db) -> None:
    if db.conn.in_transaction:
        db.conn.rollback()


def _pinned_pair(folder: Path, attempts: int = 20):
    """Two read connections on the same snapshot (a writer may commit between the two BEGINs)."""
    db = store.connect(folder, readonly=True)
    if "chunks" not in db.table_names():
        return db, store.connect(folder, readonly=True)
    other = store.connect(folder, readonly=True)
    for _ in range(attempts):
        _pin(db)
        _pin(other)
        if _snapshot_state(db) == _snapshot_state(other):
            return db, other
        _release(db)
        _release(other)
    raise InvalidInputError(f"{folder} keeps changing under an index run; try again when it finishes")


def _is_light(encoder) -> bool:
    from ragkit.encoder.light_tokenizer import LightTokenizer

    return isinstance(encoder.tokenizer, LightTokenizer)


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _write_back_if_idle(folder: Path, index, database: int | None) -> None:
    """Save a repaired vector file, unless a writer is busy or the index was replaced meanwhile.

    A rebuild swaps in a new folder (and a new lock file): vectors repaired from the database
    this reader opened must not land in the new index.
    """
    from filelock import FileLock, Timeout

    from ragkit.indexer.locking import LOCK_NAME

    if not os.access(folder, os.W_OK):
        return
    lock = FileLock(str(folder / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return  # an index run is writing; it will write a consistent file itself
    try:
        if database is not None and _inode(folder / store.DB_NAME) == database:
            vectors.write_atomic(index, folder)
    finally:
        lock.release()
