"""Vectors cached per (encoder fingerprint, instruction, text), so reruns skip encoding.

One SQLite file per encoder under ``$RAGKIT_HOME/vectors``, named by its fingerprint (and, when
its vectors are not float32, the engine, device and precision that made them). Evaluating a
second encoder against the same baselines, or rerunning after a crash, encodes only what is
missing; work is committed in chunks, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ragkit.encoder.cache import vectors_file


def _key(instruction: str, text: str) -> str:
    return hashlib.sha256(f"{instruction}\x00{text}".encode()).hexdigest()


def vector_cache_name(encoder) -> str:
    """The vector cache an encoder's vectors go to: the fingerprint's own in float32, per engine,
    device and precision otherwise (bf16 vectors from a GPU never answer a CPU's question)."""
    from ragkit.encoder.document_precision import document_dtype  # it loads models; this module stays light

    dtype = document_dtype(encoder)
    if dtype == "float32":
        return encoder.fingerprint
    described = encoder.describe()
    device = str(described["device"]).split(":")[0]
    return f"{encoder.fingerprint}-{described['backend']}-{device}-{dtype}"


class VectorCache:
    """A small key-value store of float32 vectors for one encoder fingerprint."""

    def __init__(self, fingerprint: str, root: Path | None = None):
        self.path = vectors_file(fingerprint, root)
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")

    def close(self) -> None:
        self._db.close()

    def get(self, keys: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, blob in self._db.execute(
                f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk
            ):
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put(self, items: dict[str, np.ndarray]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)",
                [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()],
            )

    def encode(
        self,
        texts: list[str],
        instruction: str,
        encode: Callable[[list[str]], np.ndarray],
        *,
        chunk: int = 256,
        on_progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Vectors for ``texts`` in order; missing ones come from ``encode`` in chunks."""
        return cached_encode(
            [self], texts, instruction, lambda t: [encode(t)], chunk=chunk, on_progress=on_progress
        )[0]


def cached_encode(
    caches: list[VectorCache],
    texts: list[str],
    instruction: str,
    encode: Callable[[list[str]], list[np.ndarray]],
    *,
    chunk: int = 256,
    on_progress: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """Vectors for ``texts`` from several caches that one ``encode`` call fills together.

    ``encode`` returns one array per cache (e.g. mean and last-token pooling of a single
    forward pass). A text missing from any cache is encoded once for all of them.
    """
    keys = [_key(instruction, t) for t in texts]
    unique = list(dict.fromkeys(keys))
    found = [cache.get(unique) for cache in caches]
    missing = [i for i, k in enumerate(keys) if any(k not in f for f in found)]
    if on_progress:
        on_progress(len(texts) - len(missing))
    # Longest first across the whole set, so chunks stay length-homogeneous.
    missing.sort(key=lambda i: -len(texts[i]))
    for start in range(0, len(missing), chunk):
        indices = missing[start : start + chunk]
        outputs = encode([texts[i] for i in indices])
        for cache, store, vectors in zip(caches, found, outputs, strict=True):
            fresh = {keys[i]: v for i, v in zip(indices, vectors, strict=True)}
            cache.put(fresh)
            store.update(fresh)
        if on_progress:
            on_progress(len(indices))
    return [np.stack([store[k] for k in keys]).astype(np.float32) for store in found]
