"""``ragkit.Index``: a read-only view of an index folder, safe while an index run writes.

Opening checks the FAISS ids against the chunk ids; when they disagree (a run was killed
between its SQLite commit and its FAISS rename, or is still going) the vectors are rebuilt
in memory from SQLite, and written back when no index run holds the lock.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ragkit.errors import InvalidInputError
from ragkit.fusion import reciprocal_rank_fusion
from ragkit.indexer import store, vectors

DEFAULT_INDEX_DIR = ".ragkit"
RRF_DEPTH = 50
"""How deep each ranking goes before fusion in hybrid search."""
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


class Index:
    """An opened index: ``len(index)`` chunks, ``search`` (the encoder loads on first use)."""

    def __init__(self, folder: Path, db, meta: dict, faiss_index, repaired: bool):
        self.folder, self.db, self.meta = folder, db, meta
        self.faiss_index = faiss_index
        self.repaired = repaired
        self._encoder = None

    @classmethod
    def open(cls, folder: str | os.PathLike | None = None, *, encoder=None) -> Index:
        folder = Path(folder).expanduser() if folder is not None else default_index_dir()
        db = store.connect(folder, readonly=True)
        meta = store.get_meta(db)
        if not meta:
            raise InvalidInputError(f"{folder} is not a finished ragkit index (no metadata yet)")
        if meta.get("schema_version") != str(store.SCHEMA_VERSION):
            raise InvalidInputError(
                f"{folder} was written by another ragkit version (schema {meta.get('schema_version')}); "
                "rebuild it with `ragkit index PATH --rebuild`"
            )
        index, repaired = cls._consistent_vectors(folder, db, meta)
        opened = cls(folder, db, meta, vectors.to_gpu_if_available(index), repaired)
        if encoder is not None:
            opened.use_encoder(encoder)
        return opened

    @staticmethod
    def _consistent_vectors(folder: Path, db, meta: dict):
        dimension = int(meta["dimension"])
        index = vectors.read(folder)
        ids = store.chunk_ids(db)
        if index is not None and index.d == dimension and np.array_equal(vectors.ids_of(index), ids):
            return index, False
        spec = vectors.IndexSpec(
            json.loads(meta["index_spec"])["kind"],
            {k: v for k, v in json.loads(meta["index_spec"]).items() if k != "kind"},
        )
        index = vectors.build(spec, dimension, store.all_vectors(db, dimension))
        _write_back_if_idle(folder, index)
        return index, True

    def __len__(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM chunks").fetchone()[0])

    @property
    def fingerprint(self) -> str:
        return self.meta["encoder_fingerprint"]

    def use_encoder(self, encoder) -> None:
        """Bind a loaded encoder (or a spec); a different fingerprint is refused."""
        if isinstance(encoder, str):
            from ragkit.encoder import Encoder

            spec = encoder
            # Searching needs only the query's forward pass: load without transformers when a
            # verified light path exists; its fingerprint must still match, else load fully.
            encoder = Encoder.from_pretrained(spec, light=True)
            if encoder.fingerprint != self.fingerprint and _is_light(encoder):
                encoder = Encoder.from_pretrained(spec)
        if encoder.fingerprint != self.fingerprint:
            raise InvalidInputError(
                f"the index at {self.folder} was built with encoder {self.meta.get('encoder')} "
                f"(fingerprint {self.fingerprint}), not {encoder.fingerprint}; its vectors would be "
                "meaningless to this encoder. Rebuild it with `ragkit index PATH --rebuild --encoder ...`"
            )
        self._encoder = encoder

    @property
    def encoder(self):
        if self._encoder is None:
            self.use_encoder(self.meta.get("encoder", "default"))
        return self._encoder

    def status(self) -> dict:
        size = sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())
        documents = int(self.db.execute("SELECT count(*) FROM documents").fetchone()[0])
        return {
            "index": str(self.folder),
            "root": self.meta.get("root"),
            "documents": documents,
            "chunks": len(self),
            "dimension": int(self.meta["dimension"]),
            "index_type": json.loads(self.meta["index_spec"]),
            "encoder": self.meta.get("encoder"),
            "encoder_fingerprint": self.fingerprint,
            "chunk_tokens": int(self.meta.get("chunk_tokens", 0)),
            "overlap": int(self.meta.get("overlap", 0)),
            "size_bytes": size,
            "updated_at": float(self.meta.get("updated_at", 0)),
            "repaired_on_open": self.repaired,
        }

    def search(
        self, query: str, k: int = 5, filter: str | dict | None = None, hybrid: bool = True
    ) -> list[Hit]:
        """Top ``k`` chunks for ``query``.

        ``filter`` is a path glob (``"docs/*.md"``) or a dict of a ``path`` glob and document
        metadata values; it is applied inside the vector search, so ``k`` hits come back
        whenever ``k`` chunks match. By default (``hybrid=True``) the dense ranking is fused
        with SQLite FTS5 BM25 by reciprocal rank fusion, and a hit's score is the fused score:
        on SciFact this doubles nDCG@10 of the default encoder (EVAL.md). ``hybrid=False``
        ranks by the encoder alone; scores are then cosine similarities.
        """
        return self.search_many([query], k, filter=filter, hybrid=hybrid)[0]

    def search_many(
        self, queries: list[str], k: int = 5, filter: str | dict | None = None, hybrid: bool = True
    ) -> list[list[Hit]]:
        from ragkit.indexer.filters import matching_ids, search_parameters

        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InvalidInputError(f"k must be a positive integer, got {k!r}")
        if isinstance(queries, str) or any(not isinstance(q, str) or not q.strip() for q in queries):
            raise InvalidInputError("the query is empty; there is nothing to search for")
        allowed = matching_ids(self.db, filter)
        if self.faiss_index.ntotal == 0 or (allowed is not None and len(allowed) == 0):
            return [[] for _ in queries]
        depth = max(k, RRF_DEPTH) if hybrid else k
        matrix = np.ascontiguousarray(
            self.encoder.encode_queries(queries, show_progress=False), dtype=np.float32
        )
        if allowed is None:
            scores, ids = self.faiss_index.search(matrix, depth)
        else:
            params, _selector = search_parameters(self.faiss_index, allowed)
            scores, ids = self.faiss_index.search(matrix, depth, params=params)
        results = []
        for query, query_vector, row_scores, row_ids in zip(queries, matrix, scores, ids, strict=True):
            dense = [(int(i), float(s)) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
            if hybrid:
                dense = reciprocal_rank_fusion([dense, self._lexical(query, depth, allowed)])[:k]
            results.append(self._hits(dense[:k], query_vector))
        return results

    def _lexical(self, query: str, depth: int, allowed) -> list[tuple[int, float]]:
        """FTS5 BM25 ranking of chunks; the query's words are OR-ed, never parsed as syntax."""
        words = re.findall(r"\w+", query)
        if not words:
            return []
        match = " OR ".join('"' + w.replace('"', "") + '"' for w in words)
        sql = "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ?"
        params: list = [match]
        if allowed is not None:
            # One JSON parameter, not one per id: SQLite caps the number of parameters.
            sql += " AND rowid IN (SELECT value FROM json_each(?))"
            params.append(json.dumps([int(i) for i in allowed]))
        sql += " ORDER BY bm25(chunks_fts) LIMIT ?"
        params.append(depth)
        return [(int(r[0]), -float(r[1])) for r in self.db.execute(sql, params)]

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
            similarity = float(np.frombuffer(row[7], dtype=np.float16).astype(np.float32) @ query_vector)
            text, source, start, end, heading = row[1:6]
            hits.append(
                Hit(len(hits) + 1, score, text, source, start, end, heading, chunk_id, metadata, similarity)
            )
        return hits


def _is_light(encoder) -> bool:
    from ragkit.encoder.light_tokenizer import LightTokenizer

    return isinstance(encoder.tokenizer, LightTokenizer)


def _write_back_if_idle(folder: Path, index) -> None:
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
        vectors.write_atomic(index, folder)
    finally:
        lock.release()
