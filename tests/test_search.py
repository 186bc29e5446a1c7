"""Search: filters inside the vector search, hybrid fusion, the Hit fields."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from conftest import WORDS, slow_index_command
from ragkit.errors import InvalidInputError
from ragkit.indexer.builder import IndexOptions, build_index
from ragkit.search.fusion import reciprocal_rank_fusion
from ragkit.search.index import Index
from ragkit.search.lexical import lexical_ranking


@pytest.fixture
def corpus_index(tmp_path: Path, tiny_backbone_dir: Path) -> Index:
    rng = random.Random(7)
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    for i in range(12):
        paragraphs = [
            "the cat sat on the mat " + " ".join(rng.choice(WORDS) for _ in range(10)) for _ in range(3)
        ]
        (docs / f"main-{i}.md").write_text(f"# Main {i}\n\n" + "\n\n".join(paragraphs) + "\n")
    for i in range(2):
        paragraphs = ["stock market fell " + " ".join(rng.choice(WORDS) for _ in range(10)) for _ in range(3)]
        (docs / "sub" / f"notes-{i}.rst").write_text(
            f"Notes {i}\n========\n\n" + "\n\n".join(paragraphs) + "\n"
        )
    (docs / "main-0.md").write_text("# Main 0\n\nthe zebra passage about guitar music\n")
    build_index(
        IndexOptions(
            source=docs,
            index_dir=tmp_path / "index",
            encoder=str(tiny_backbone_dir),
            chunk_tokens=14,
            overlap=0,
        )
    )
    return Index.open(tmp_path / "index")


def test_filters_apply_inside_the_search_so_k_hits_come_back(corpus_index: Index):
    query = "the cat sat on the mat"
    unfiltered = corpus_index.search(query, k=5)
    assert not any(h.source.startswith("sub/") for h in unfiltered)  # a post-filter would return nothing
    filtered = corpus_index.search(query, k=5, filter="sub/*")
    assert len(filtered) == 5 and all(h.source.startswith("sub/") for h in filtered)
    assert [h.rank for h in filtered] == [1, 2, 3, 4, 5]
    by_metadata = corpus_index.search(query, k=4, filter={"suffix": ".rst"})
    assert len(by_metadata) == 4 and all(h.source.endswith(".rst") for h in by_metadata)
    assert corpus_index.search(query, k=3, filter="nothing/*") == []


def test_filter_values_are_parameters_and_keys_are_checked(corpus_index: Index):
    assert corpus_index.search("cat", k=2, filter="x' OR '1'='1") == []
    with pytest.raises(InvalidInputError, match="plain name"):
        corpus_index.search("cat", k=2, filter={"suffix') OR 1=1 --": "x"})


def test_hybrid_brings_up_an_exact_word_match(corpus_index: Index):
    lexical = lexical_ranking(corpus_index.db, "zebra", 5)
    zebra = corpus_index.db.execute("SELECT id FROM chunks WHERE text LIKE '%zebra%'").fetchone()[0]
    assert lexical[0][0] == zebra
    hybrid = corpus_index.search("zebra", k=3, hybrid=True)
    assert zebra in [h.chunk_id for h in hybrid]
    assert all(0 <= h.score <= 1 for h in hybrid)  # convex combination of min-max scores
    filtered = corpus_index.search("zebra", k=3, hybrid=True, filter="sub/*")
    assert filtered and all(h.source.startswith("sub/") for h in filtered)


def test_hybrid_is_the_default_and_dense_gives_cosine_scores(corpus_index: Index):
    default = corpus_index.search("zebra", k=3)
    assert [h.chunk_id for h in default] == [
        h.chunk_id for h in corpus_index.search("zebra", k=3, hybrid=True)
    ]
    dense = corpus_index.search("zebra", k=3, hybrid=False)
    assert all(-1.0 <= h.score <= 1.0 for h in dense)
    assert [h.score for h in dense] == sorted((h.score for h in dense), reverse=True)
    assert [h.score for h in default] != [h.score for h in dense]


def test_similarity_is_the_cosine_whatever_ranked_the_hit(corpus_index: Index):
    dense = corpus_index.search("zebra", k=3, hybrid=False)
    assert [h.similarity for h in dense] == pytest.approx([h.score for h in dense], abs=1e-5)
    query = corpus_index.encoder.encode_queries(["zebra"], show_progress=False)[0]
    for hit in corpus_index.search("zebra", k=4, hybrid=True):
        blob = corpus_index.db.execute("SELECT vector FROM chunks WHERE id = ?", [hit.chunk_id]).fetchone()[0]
        stored = np.frombuffer(blob, dtype=np.float16).astype(np.float32)
        assert hit.similarity == pytest.approx(float(stored @ query), abs=1e-5)
        assert hit.similarity != pytest.approx(hit.score, abs=1e-3)  # not the fused score


def test_lexical_filter_takes_any_number_of_ids(corpus_index: Index):
    """The allowed ids travel as one JSON parameter: SQLite caps parameters at 32,766."""
    ids = [int(r[0]) for r in corpus_index.db.execute("SELECT id FROM chunks")]
    many = np.array(ids + list(range(10**6, 10**6 + 40_000)), dtype=np.int64)
    assert lexical_ranking(corpus_index.db, "zebra", 5, many) == lexical_ranking(corpus_index.db, "zebra", 5)


def test_reciprocal_rank_fusion_by_hand():
    fused = reciprocal_rank_fusion([[(1, 0.9), (2, 0.8)], [(2, 5.0), (3, 4.0)]], k=60)
    assert [i for i, _ in fused] == [2, 1, 3]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)
    assert fused[1][1] == pytest.approx(1 / 61)


def test_search_many_and_bad_k(corpus_index: Index):
    results = corpus_index.search_many(["cat", "market"], k=2)
    assert len(results) == 2 and all(len(r) == 2 for r in results)
    with pytest.raises(InvalidInputError, match="positive integer"):
        corpus_index.search("cat", k=0)


def test_searches_keep_working_during_an_index_run(tmp_path: Path, tiny_backbone_dir: Path):
    """A real `ragkit index` subprocess rewrites the corpus while this process searches."""
    import os
    import subprocess

    rng = random.Random(3)
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(6):
        (docs / f"d{i}.md").write_text(f"# D{i}\n\n" + " ".join(rng.choice(WORDS) for _ in range(40)) + "\n")
    index_dir = tmp_path / "index"
    build_index(
        IndexOptions(
            source=docs, index_dir=index_dir, encoder=str(tiny_backbone_dir), chunk_tokens=10, overlap=0
        )
    )
    for i in range(6, 30):
        (docs / f"d{i}.md").write_text(f"# D{i}\n\n" + " ".join(rng.choice(WORDS) for _ in range(40)) + "\n")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
    }
    command = slow_index_command(
        0.1,
        source=[docs],
        index_dir=index_dir,
        encoder=str(tiny_backbone_dir),
        chunk_tokens=10,
        overlap=0,
        group_chunks=2,
    )
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sizes, searches = set(), 0
    try:
        while process.poll() is None:
            index = Index.open(index_dir)
            hits = index.search("the cat sat on the mat", k=3)
            assert len(hits) == 3 and all(h.text for h in hits)
            sizes.add(len(index))
            searches += 1
    finally:
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert searches >= 3 and len(sizes) >= 2  # searched while the index grew
    assert len(Index.open(index_dir)) == max(sizes | {len(Index.open(index_dir))})
