"""The three operations a server offers (search, answer, status), checked and bounded.

One warm :class:`~ragkit.search.index.Index` (and its encoder) serves every request of the
process. Requests are checked here, once, for the MCP tools and the HTTP API alike, so both
refuse the same inputs with the same messages. The index follows finished ``ragkit index``
runs by itself (``Index.refresh`` reopens on a new generation and each search reads one
snapshot), so a server never needs a restart and never sees a half-written run.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from ragkit.answer.api import MODES
from ragkit.errors import InvalidInputError

MAX_K = 50
"""Most hits one request may ask for."""
MAX_QUERY_CHARS = 2_000
"""Longest query accepted: far beyond a question, far below what would stall the encoder."""
MAX_FILTER_ITEMS = 16
MAX_BODY_BYTES = 64 * 1024
"""Largest HTTP request body read."""


@dataclass(frozen=True)
class SearchRequest:
    query: str
    k: int = 5
    filter: str | dict | list | None = None
    hybrid: bool = True


def check_search(query, k=5, filter=None, hybrid=True) -> SearchRequest:
    """The request as the index expects it, or one :class:`InvalidInputError` saying why not."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError("query must be a non-empty string")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInputError(
            f"query is {len(query):,} characters; at most {MAX_QUERY_CHARS:,} are accepted"
        )
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise InvalidInputError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    if not isinstance(hybrid, bool):
        raise InvalidInputError(f"hybrid must be true or false, got {hybrid!r}")
    return SearchRequest(query, k, _check_filter(filter), hybrid)


def _check_filter(filter):
    """A path glob, a dict of string values, or a list of those (all must hold)."""
    if filter is None or filter == "" or filter == {} or filter == []:
        return None
    items = filter if isinstance(filter, list) else [filter]
    if len(items) > MAX_FILTER_ITEMS:
        raise InvalidInputError(f"a filter may have at most {MAX_FILTER_ITEMS} parts")
    for item in items:
        if isinstance(item, str):
            continue
        if not isinstance(item, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in item.items()
        ):
            raise InvalidInputError(
                'filter must be a path glob ("docs/*.md"), an object of string values '
                '({"path": "docs/*", "suffix": ".md"}) or a list of those'
            )
    return filter


class SearchService:
    """An index held open for a server's lifetime; one request at a time reaches it.

    The encoder's forward pass already uses every core, so serialising requests costs
    little throughput and keeps one SQLite snapshot and one encoder free of races.
    """

    def __init__(self, index, generator=None):
        self.index = index
        self.generator = generator
        self._lock = threading.Lock()

    @classmethod
    def open(cls, folder: str | os.PathLike | None = None, *, encoder=None) -> SearchService:
        """Open the index and load its encoder now, so the first request is already warm."""
        from ragkit.search.index import Index

        index = Index.open(folder, encoder=encoder)
        index.encoder  # noqa: B018 - loading is the point
        return cls(index)

    def search(self, query, k=5, filter=None, hybrid=True) -> dict:
        request = check_search(query, k, filter, hybrid)
        with self._lock:
            hits = self.index.search(request.query, k=request.k, filter=request.filter, hybrid=request.hybrid)
            generation = self.index.meta.get("generation", "0")
        return {"query": request.query, "generation": generation, "hits": [_hit(h) for h in hits]}

    def answer(self, query, k=5, mode="extract", filter=None) -> dict:
        from ragkit.answer.api import answer

        request = check_search(query, k, filter)
        if mode not in MODES:
            raise InvalidInputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        with self._lock:
            result = answer(
                self.index,
                request.query,
                k=request.k,
                mode=mode,
                filter=request.filter,
                generator=self.generator,
            )
        body = result.to_dict()
        body["hits"] = [_hit(h) for h in result.hits]
        return body

    def status(self) -> dict:
        with self._lock:
            self.index.refresh()
            status = self.index.status()
        status["generation"] = self.index.meta.get("generation", "0")
        return status

    def close(self) -> None:
        self.index.close()


def _hit(hit) -> dict:
    """A hit as JSON: its one shape (``Hit.to_dict``) with the document's metadata beside it."""
    return {**hit.to_dict(digits=6), "metadata": hit.metadata}
