"""Filtered search returns exactly the allowed chunks, ``k`` of them, on every index type."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ragkit.errors import InvalidInputError
from ragkit.indexer import store, vectors
from ragkit.search import ann
from ragkit.search.filters import parse_filter_args
from ragkit.search.index import Index

DIM = 32
DOCS = 100
PER_DOC = 20


@dataclass
class _Chunk:
    text: str
    start_line: int = 1
    end_line: int = 1
    heading: str = ""
    tokens: int = 3


class _Encoder:
    fingerprint = "synthetic"

    def __init__(self, queries: np.ndarray):
        self.queries = queries

    def encode_queries(self, texts, show_progress=False):
        return self.queries[[int(t.split()[-1]) for t in texts]]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, DIM))
    points = _unit(
        centres[rng.integers(0, 10, DOCS * PER_DOC)] + 0.3 * rng.normal(size=(DOCS * PER_DOC, DIM))
    )
    queries = _unit(centres[rng.integers(0, 10, 8)] + 0.3 * rng.normal(size=(8, DIM)))
    return points, queries


def _make_index(folder: Path, kind: str, points: np.ndarray) -> None:
    db = store.connect(folder)
    store.create_schema(db)
    with db.atomic():
        for d in range(DOCS):
            rows = points[d * PER_DOC : (d + 1) * PER_DOC]
            store.replace_document(
                db,
                path=f"doc-{d:03d}.md",
                hash=str(d),
                mtime=0.0,
                size=1,
                metadata={"suffix": ".md", "team": "a" if d % 2 else "b"},
                chunks=[_Chunk(f"chunk {d} {i}") for i in range(PER_DOC)],
                vectors=rows,
            )
    spec = vectors.choose(kind, len(points), DIM)
    assert spec.kind == kind
    vectors.write_atomic(vectors.build(spec, DIM, store.all_vectors(db, DIM)), folder)
    store.set_meta(
        db,
        {
            "schema_version": str(store.SCHEMA_VERSION),
            "encoder_fingerprint": "synthetic",
            "dimension": str(DIM),
            "index_spec": spec.to_dict(),
        },
    )
    db.conn.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory, corpus):
    """One index folder per structure, built once for the module."""
    folders: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in folders:
            folders[kind] = tmp_path_factory.mktemp(kind)
            _make_index(folders[kind], kind, corpus[0])
        return folders[kind]

    return get


def _exact(points, query, allowed_docs, k):
    ids = [d * PER_DOC + i for d in allowed_docs for i in range(PER_DOC)]
    stored = points.astype(np.float16).astype(np.float32)
    scores = stored[ids] @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return {ids[j] + 1 for j in order}  # chunk ids start at 1


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
@pytest.mark.parametrize(
    ("filter", "docs"),
    [
        ({"path": "doc-007.md"}, [7]),
        ({"path": "doc-0[0-4]*"}, list(range(50))),
        ([{"path": "doc-0[0-4]*"}, {"team": "a"}], [d for d in range(50) if d % 2]),
    ],
    ids=["selective", "broad", "anded"],
)
@pytest.mark.parametrize("exact_limit", [50_000, 100], ids=["exact", "widened"])
def test_filtered_search_is_exact_and_full(built, corpus, kind, filter, docs, exact_limit, monkeypatch):
    points, queries = corpus
    monkeypatch.setattr(ann, "EXACT_FILTER_LIMIT", exact_limit)
    index = Index.open(built(kind), encoder=_Encoder(queries))
    allowed = {f"doc-{d:03d}.md" for d in docs}
    k = 10
    for q in range(len(queries)):
        hits = index.search(f"query {q}", k=k, filter=filter, hybrid=False)
        assert len(hits) == k
        assert {h.source for h in hits} <= allowed
        found = {h.chunk_id for h in hits}
        truth = _exact(points, queries[q], docs, k)
        if kind == "flat" or len(docs) * PER_DOC <= exact_limit:
            assert found == truth
        else:
            assert len(found & truth) >= 8  # approximate structure, widened: recall, not equality


def test_exact_scoring_in_slices_equals_one_pass(corpus):
    """A filter allowing more than one slice is scored slice by slice, same top as one pass."""
    points, queries = corpus
    ids = np.arange(len(points), dtype=np.int64)[::-1].copy()
    stored = points[ids]
    whole = ann.exact_top(queries, 25, [(ids, stored)])
    sliced = ann.exact_top(
        queries, 25, [(ids[s : s + 77], stored[s : s + 77]) for s in range(0, len(ids), 77)]
    )
    assert np.array_equal(whole[1], sliced[1])
    assert np.allclose(whole[0], sliced[0])
    truth = np.argsort(-(queries @ points.T), axis=1, kind="stable")[:, :25]
    assert np.array_equal(np.sort(sliced[1], axis=1), np.sort(truth, axis=1))


def test_repeated_cli_filters_all_hold():
    assert parse_filter_args(["*a*", "*.md", "suffix=.md"]) == [
        {"path": "*a*"},
        {"path": "*.md"},
        {"suffix": ".md"},
    ]


def test_unknown_filter_keys_and_open_globs_are_errors(built, corpus):
    index = Index.open(built("flat"), encoder=_Encoder(corpus[1]))
    with pytest.raises(InvalidInputError, match=r"unknown filter key 'sufix'.*suffix"):
        index.search("query 0", filter={"sufix": ".md"})
    with pytest.raises(InvalidInputError, match="without closing"):
        index.search("query 0", filter="doc-[0")
    assert index.search("query 0", k=3, filter="doc-[0]0[]0]*", hybrid=False)


def test_ivfpq_below_its_training_minimum_falls_back_to_flat():
    spec = vectors.choose("ivfpq", 100, DIM)
    assert spec.kind == "flat" and spec.params["requested"] == "ivfpq"
    assert vectors.choose("ivfpq", 300, DIM).kind == "ivfpq"
