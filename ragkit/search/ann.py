"""The dense half of a search: one interface over every FAISS structure an index may hold.

``Index`` asks for the top ``depth`` ids of some query vectors, optionally restricted to an
allowed set, and gets exactly that from flat, HNSW and IVF-PQ structures alike. Which FAISS
class sits inside, how an id selector is passed to it, and when a restricted search must be
widened or scored exactly are decided here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

EXACT_FILTER_LIMIT = 50_000
"""Up to this many allowed chunks, a filtered search on HNSW or IVF-PQ scores them exactly."""

StoredVectors = Callable[[np.ndarray], Iterable[tuple[np.ndarray, np.ndarray]]]
"""Given allowed ids, slices of (ids that have a stored vector, those vectors), each slice at
most ``EXACT_FILTER_LIMIT`` rows, so exact scoring holds one slice at a time."""


class VectorSearch:
    """A FAISS index (``IndexIDMap2`` over a flat, HNSW or IVF-PQ structure) behind ``search``."""

    def __init__(self, faiss_index):
        self.faiss_index = faiss_index

    def __len__(self) -> int:
        return int(self.faiss_index.ntotal)

    @property
    def dimension(self) -> int:
        return int(self.faiss_index.d)

    def ids(self) -> np.ndarray:
        """Every id held, sorted."""
        import faiss

        return np.sort(faiss.vector_to_array(self.faiss_index.id_map).astype(np.int64))

    def search(
        self,
        matrix: np.ndarray,
        depth: int,
        allowed: np.ndarray | None = None,
        stored: StoredVectors | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ids (``-1`` past the end) of the top ``depth`` vectors for each row.

        With ``allowed``, only those ids are ranked and ``min(depth, len(allowed))`` come back
        for every query; ``stored`` reads the allowed vectors when they must be scored exactly
        (required with ``allowed`` on HNSW and IVF-PQ).
        """
        if allowed is None:
            return self.faiss_index.search(matrix, depth)
        if self._is_flat():
            params, _selector = self._restricted_to(allowed)  # the selector must outlive the call
            return self.faiss_index.search(matrix, depth, params=params)
        if stored is None:
            raise ValueError("a filtered search on an approximate structure needs the stored vectors")
        return self._filtered_search(matrix, depth, allowed, stored)

    def _inner(self):
        import faiss

        index = self.faiss_index
        return faiss.downcast_index(index.index) if hasattr(index, "index") else index

    def _is_flat(self) -> bool:
        """Flat search with an id selector is exact; graph and IVF-PQ search are not."""
        import faiss

        return isinstance(self._inner(), faiss.IndexFlat)

    def _restricted_to(self, ids: np.ndarray):
        """FAISS search parameters restricting the search to ``ids``, and their selector."""
        import faiss

        selector = faiss.IDSelectorBatch(ids)
        inner = self._inner()
        if isinstance(inner, faiss.IndexHNSW):
            return faiss.SearchParametersHNSW(sel=selector, efSearch=inner.hnsw.efSearch), selector
        if isinstance(inner, faiss.IndexRefine | faiss.IndexIVF):
            base = faiss.downcast_index(inner.base_index) if isinstance(inner, faiss.IndexRefine) else inner
            ivf = faiss.SearchParametersIVF(sel=selector, nprobe=base.nprobe)
            if isinstance(inner, faiss.IndexRefine):
                return faiss.IndexRefineSearchParameters(sel=selector, base_index_params=ivf), selector
            return ivf, selector
        return faiss.SearchParameters(sel=selector), selector

    def _filtered_search(self, matrix: np.ndarray, depth: int, allowed: np.ndarray, stored: StoredVectors):
        """Top ``depth`` allowed ids on an approximate structure, never fewer than exist.

        A selector inside HNSW or IVF-PQ search prunes the walk and can return too few or
        (through IVF-PQ's re-ranking) wrong ids. When the filter allows few chunks they are
        scored exactly from their stored vectors; otherwise the search widens until every
        query has ``depth`` allowed hits, and whatever is still short is scored exactly.
        """
        depth = min(depth, len(allowed))
        if len(allowed) > EXACT_FILTER_LIMIT:
            keep = np.unique(allowed)  # sorted, 8 bytes an id: no Python set of millions
            wide = depth * 4
            while wide < len(self):
                scores, ids = self.faiss_index.search(matrix, wide)
                position = np.minimum(np.searchsorted(keep, ids), len(keep) - 1)
                allowed_mask = keep[position] == ids
                if bool((allowed_mask.sum(axis=1) >= depth).all()):
                    order = np.argsort(~allowed_mask, axis=1, kind="stable")[:, :depth]
                    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)
                wide *= 4
        return exact_top(matrix, depth, stored(allowed))


def exact_top(matrix: np.ndarray, depth: int, slices: Iterable[tuple[np.ndarray, np.ndarray]]):
    """Scores and ids of the top ``depth`` stored vectors for each query row, by inner product.

    Slices are scored one at a time against the running top, so memory is bounded by one
    slice however many ids a filter allows; ties keep the order the slices came in.
    """
    best_scores = np.zeros((len(matrix), 0), dtype=np.float32)
    best_ids = np.zeros((len(matrix), 0), dtype=np.int64)
    for ids, vectors in slices:
        if len(ids) == 0:
            continue
        scores = np.hstack([best_scores, matrix @ vectors.astype(np.float32).T])
        candidates = np.hstack([best_ids, np.broadcast_to(ids, (len(matrix), len(ids)))])
        top = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
        best_scores = np.take_along_axis(scores, top, axis=1)
        best_ids = np.take_along_axis(candidates, top, axis=1)
    return best_scores, best_ids
