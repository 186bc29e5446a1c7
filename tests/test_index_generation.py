"""A long-lived Index follows index runs: the old index or the new one, whole, never a mix."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from conftest import build_tiny_index, slow_index_command
from ragkit.indexer import store
from ragkit.search.index import Index

CATS = "# Cats\n\n" + "\n\n".join(f"the cat {i} sat on the mat" for i in range(12)) + "\n"
DOGS = "# Dogs\n\n" + "\n\n".join(f"the dog {i} ran fast in the house" for i in range(40)) + "\n"


def test_an_open_index_sees_the_old_index_during_a_run_and_the_new_one_after(tiny_backbone_dir, tmp_path):
    index_dir = build_tiny_index(tmp_path, tiny_backbone_dir, {"cats.md": CATS})
    docs = tmp_path / "docs"
    with Index.open(index_dir, encoder=str(tiny_backbone_dir)) as index:
        before = len(index)
        first = index.search("the cat sat", k=5)
        assert len(first) == 5
        (docs / "cats.md").write_text(CATS.replace("sat on the mat", "slept on the rug"))
        (docs / "dogs.md").write_text(DOGS)
        command = slow_index_command(
            0.15,
            source=[docs],
            index_dir=index_dir,
            encoder=str(tiny_backbone_dir),
            chunk_tokens=8,
            overlap=0,
            group_chunks=2,
        )
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        during, generation = 0, index.meta.get("generation")
        while process.poll() is None:
            hits = index.search("the cat sat", k=5)
            assert len(hits) == 5  # every dense and full-text hit of the snapshot is there
            if index.meta.get("generation") == generation:  # the run has not finished
                during += 1
                assert all("slept" not in h.text for h in hits)
                assert len(index) == before
            else:  # finished: the new index, whole
                assert all("sat on the mat" not in h.text for h in hits)
            time.sleep(0.02)
        assert process.returncode == 0, process.stderr.read()[-2000:]
        assert during >= 3, "the run ended before any search could overlap it"
        after = index.search("the dog ran fast", k=5, hybrid=False)
        assert len(index) > before
        assert any(h.source.endswith("dogs.md") for h in after)
        assert all("sat on the mat" not in h.text for h in index.search("the cat", k=20))


def test_generation_moves_only_when_a_run_changes_something(tiny_backbone_dir, tmp_path):
    from ragkit.indexer.builder import IndexOptions, build_index

    index_dir = build_tiny_index(tmp_path, tiny_backbone_dir, {"cats.md": CATS})
    generation = store.get_meta(store.connect(index_dir, readonly=True))["generation"]
    options = IndexOptions(
        source=tmp_path / "docs",
        index_dir=index_dir,
        encoder=str(tiny_backbone_dir),
        chunk_tokens=8,
        overlap=0,
    )
    build_index(options)
    assert store.get_meta(store.connect(index_dir, readonly=True))["generation"] == generation
    Path(tmp_path / "docs" / "dogs.md").write_text(DOGS)
    build_index(options)
    assert int(store.get_meta(store.connect(index_dir, readonly=True))["generation"]) == int(generation) + 1


def test_close_releases_and_context_manager_closes(tiny_backbone_dir, tmp_path):
    index_dir = build_tiny_index(tmp_path, tiny_backbone_dir, {"cats.md": CATS})
    with Index.open(index_dir, encoder=str(tiny_backbone_dir)) as index:
        assert index.search("cat", k=2)
    assert index._lexical_db is None
