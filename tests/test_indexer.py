"""``ragkit index`` / ``ragkit.Index`` on a tiny model: storage, updates, faults, bad input."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from ragkit.encoder.encoder import Encoder
from ragkit.errors import InvalidInputError
from ragkit.indexer import store, vectors
from ragkit.indexer.builder import IndexOptions, build_index
from ragkit.indexer.locking import index_lock
from ragkit.search.index import Index

GUIDE_MD = """# Guide

the cat sat on the mat and the dog ran fast in the house

## Install

what is the answer to the search question of the city

### GPU

the big red tree in the green city by the river
"""
NOTES_RST = """Notes
=====

music guitar stock market fell and the blue house is big

Details
-------

the small dog runs slow on the rug
"""
PAGE_HTML = """<html><head><script>var hidden = 1;</script></head><body>
<h1>Page</h1>
<p>find the relevant document given the query and retrieve the passage</p>
</body></html>"""


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "guide.md").write_text(GUIDE_MD)
    (folder / "sub" / "notes.rst").write_text(NOTES_RST)
    (folder / "page.html").write_text(PAGE_HTML)
    (folder / "plain.txt").write_text("why when where who\n\nthe answer is in the passage\n")
    return folder


def _build(docs: Path, index: Path, encoder: str, **kw):
    return build_index(IndexOptions(source=docs, index_dir=index, encoder=encoder, **kw))


def _state(index: Path) -> dict:
    """Documents and their chunk texts, as stored."""
    db = sqlite3.connect(index / store.DB_NAME)
    out = {}
    for doc_id, path, count in db.execute("SELECT id, path, chunks FROM documents ORDER BY path"):
        texts = [
            r[0]
            for r in db.execute("SELECT text FROM chunks WHERE document_id = ? ORDER BY ordinal", [doc_id])
        ]
        assert len(texts) == count, f"{path}: {len(texts)} chunks stored, {count} recorded"
        out[path] = texts
    return out


def test_index_stores_chunks_with_sources_lines_headings_and_ids(docs, tmp_path, tiny_backbone_dir):
    index_dir = tmp_path / "index"
    summary = _build(docs, index_dir, str(tiny_backbone_dir), chunk_tokens=16, overlap=0)
    assert sorted(summary.added) == ["guide.md", "page.html", "plain.txt", "sub/notes.rst"]
    index = Index.open(index_dir)
    assert len(index) == summary.chunks_total > 4
    assert np.array_equal(index.vectors.ids(), store.chunk_ids(index.db))
    rows = index.db.execute(
        "SELECT d.path, c.start_line, c.end_line, c.heading, c.text "
        "FROM chunks c JOIN documents d ON d.id = c.document_id"
    ).fetchall()
    by_text = {r[4]: r for r in rows}
    gpu = next(r for r in rows if "big red tree" in r[4])
    assert gpu[:4] == ("guide.md", 9, 11, "Guide > Install > GPU")
    details = next(r for r in rows if "small dog" in r[4])
    assert details[:4] == ("sub/notes.rst", 6, 9, "Notes > Details")  # from its heading on
    assert not any("hidden" in t for t in by_text)  # script content is not text
    meta = store.get_meta(index.db)
    assert json.loads(meta["index_spec"]) == {"kind": "flat"}
    assert meta["encoder_fingerprint"] == Encoder.from_pretrained(str(tiny_backbone_dir)).fingerprint


def test_search_finds_a_chunk_by_its_own_text(docs, tmp_path, tiny_backbone_dir):
    index_dir = tmp_path / "index"
    _build(docs, index_dir, str(tiny_backbone_dir), chunk_tokens=16, overlap=0)
    index = Index.open(index_dir)
    target = index.db.execute("SELECT id, text FROM chunks WHERE text LIKE '%small dog%'").fetchone()
    hits = index.search(target[1], k=3, hybrid=False)
    assert hits[0].chunk_id == target[0] and hits[0].score == pytest.approx(1.0, abs=2e-3)
    assert [h.rank for h in hits] == [1, 2, 3] and hits[0].source == "sub/notes.rst"
    with pytest.raises(InvalidInputError, match="empty"):
        index.search("  ")


def test_rerun_encodes_only_changes_and_removes_deleted_files(docs, tmp_path, tiny_backbone_dir, monkeypatch):
    index_dir = tmp_path / "index"
    _build(docs, index_dir, str(tiny_backbone_dir))
    encoded: list[int] = []
    original = Encoder.encode_documents

    def counting(self, texts, **kw):
        encoded.append(len(texts))
        return original(self, texts, **kw)

    monkeypatch.setattr(Encoder, "encode_documents", counting)
    again = _build(docs, index_dir, str(tiny_backbone_dir))
    assert (again.added, again.updated, again.removed, again.unchanged, encoded) == ([], [], [], 4, [])
    (docs / "plain.txt").write_text("the answer changed to the river city\n")
    (docs / "page.html").unlink()
    (docs / "new.md").write_text("# New\n\nthe green tree\n")
    (docs / "guide.md").touch()  # same content, new mtime: hashed, not re-encoded
    before = _state(index_dir)
    third = _build(docs, index_dir, str(tiny_backbone_dir))
    assert third.added == ["new.md"] and third.updated == ["plain.txt"] and third.removed == ["page.html"]
    assert third.unchanged == 2 and sum(encoded) == third.chunks_written == 2
    after = _state(index_dir)
    assert after["guide.md"] == before["guide.md"] and "page.html" not in after
    assert Index.open(index_dir).repaired is False


def test_a_failure_inside_a_group_commits_none_of_it(docs, tmp_path, tiny_backbone_dir, monkeypatch):
    """The failure lands after a document's chunks were deleted, its count updated and its new
    chunks inserted: every one of those writes, and the group's earlier documents, roll back."""
    from ragkit.indexer import builder

    index_dir = tmp_path / "index"
    _build(docs, index_dir, str(tiny_backbone_dir), chunk_tokens=16, overlap=0)
    before = _state(index_dir)
    (docs / "guide.md").write_text("# Guide\n\nthe river city changed\n\n## More\n\nthe green tree\n")
    (docs / "plain.txt").write_text("the answer changed\n\nto the river city by the blue house\n")
    original = store.replace_document
    written: list[str] = []

    def fail_after_writing(db, **kw):
        ids = original(db, **kw)
        written.append(kw["path"])
        if len(written) == 2:
            raise RuntimeError("stopped mid-group")
        return ids

    monkeypatch.setattr(builder.store, "replace_document", fail_after_writing)
    with pytest.raises(RuntimeError, match="mid-group"):
        _build(docs, index_dir, str(tiny_backbone_dir), chunk_tokens=16, overlap=0, group_chunks=1000)
    assert written == ["guide.md", "plain.txt"]
    assert _state(index_dir) == before  # a fresh connection sees the old index, counts included
    monkeypatch.setattr(builder.store, "replace_document", original)
    again = _build(docs, index_dir, str(tiny_backbone_dir), chunk_tokens=16, overlap=0)
    assert sorted(again.updated) == ["guide.md", "plain.txt"]
    assert _state(index_dir)["plain.txt"] != before["plain.txt"]


def test_dry_run_changes_nothing(docs, tmp_path, tiny_backbone_dir):
    index_dir = tmp_path / "index"
    _build(docs, index_dir, str(tiny_backbone_dir))
    (docs / "extra.txt").write_text("the extra passage\n")
    (docs / "plain.txt").unlink()
    before = _state(index_dir)
    summary = _build(docs, index_dir, str(tiny_backbone_dir), dry_run=True)
    assert summary.would_index == ["extra.txt"] and summary.removed == ["plain.txt"]
    assert _state(index_dir) == before


def test_encoder_binding_and_rebuild(docs, tmp_path, tiny_backbone_dir):
    index_dir = tmp_path / "index"
    _build(docs, index_dir, str(tiny_backbone_dir))
    other = Encoder.from_pretrained(str(tiny_backbone_dir), pooling="last_token")
    with pytest.raises(InvalidInputError, match="built with encoder"):
        Index.open(index_dir, encoder=other)
    saved = other.save(tmp_path / "other-encoder")
    with pytest.raises(InvalidInputError, match="--rebuild"):
        _build(docs, index_dir, str(saved))
    summary = _build(docs, index_dir, str(saved), rebuild=True)
    assert len(summary.added) == 4
    assert Index.open(index_dir, encoder=other).fingerprint == other.fingerprint
    assert not list(tmp_path.glob(".index.*"))  # the rebuild's scratch folders are gone


def test_hnsw_is_recorded_and_agrees_with_flat_on_a_small_index(docs, tmp_path, tiny_backbone_dir):
    flat, hnsw = tmp_path / "flat", tmp_path / "hnsw"
    _build(docs, flat, str(tiny_backbone_dir), chunk_tokens=16, overlap=0)
    _build(docs, hnsw, str(tiny_backbone_dir), chunk_tokens=16, overlap=0, index_type="hnsw")
    meta = store.get_meta(Index.open(hnsw).db)
    assert json.loads(meta["index_spec"])["kind"] == "hnsw"
    query = "the small dog runs slow on the rug"
    assert [h.chunk_id for h in Index.open(flat).search(query, 3, hybrid=False)] == [
        h.chunk_id for h in Index.open(hnsw).search(query, 3, hybrid=False)
    ]
    assert vectors.choose("auto", 10, 32).kind == "flat" and vectors.choose("auto", 10**6, 576).kind == "hnsw"


@pytest.mark.parametrize("damage", ["missing", "garbage", "stale"])
def test_open_repairs_a_missing_damaged_or_stale_faiss_file(docs, tmp_path, tiny_backbone_dir, damage):
    index_dir = tmp_path / "index"
    _build(docs, index_dir, str(tiny_backbone_dir))
    faiss_file = index_dir / vectors.FAISS_NAME
    if damage == "missing":
        faiss_file.unlink()
    elif damage == "garbage":
        faiss_file.write_bytes(b"\x00" * 100)
    else:
        stale = faiss_file.read_bytes()
        (docs / "late.md").write_text("the late passage about music\n")
        _build(docs, index_dir, str(tiny_backbone_dir))
        faiss_file.write_bytes(stale)  # as if killed after the SQLite commit, before the rename
    index = Index.open(index_dir)
    assert index.repaired
    assert np.array_equal(index.vectors.ids(), store.chunk_ids(index.db))
    assert Index.open(index_dir).repaired is False  # the repair was written back


def test_a_second_writer_is_refused_while_searches_keep_working(docs, tmp_path, tiny_backbone_dir):
    index_dir = tmp_path / "index"
    _build(docs, index_dir, str(tiny_backbone_dir))
    with index_lock(index_dir):
        with pytest.raises(InvalidInputError, match="another `ragkit index` is updating"):
            _build(docs, index_dir, str(tiny_backbone_dir))
        assert Index.open(index_dir).search("the cat", k=2)


def test_bad_inputs_are_skipped_with_reasons_and_nothing_is_lost(
    docs, tmp_path, tiny_backbone_dir, monkeypatch
):
    index_dir = tmp_path / "index"
    _build(docs, index_dir, str(tiny_backbone_dir))
    before = _state(index_dir)
    (docs / "binary.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00" * 20)
    (docs / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (docs / "empty.md").write_bytes(b"")
    big = docs / "huge.txt"
    with open(big, "wb") as handle:
        handle.truncate(50 * 1024 * 1024)  # 50 MB (sparse)
    (docs / "loop").symlink_to(docs, target_is_directory=True)
    (docs / "vanishing.md").write_text("# Soon gone\n\nthe passage\n")
    from ragkit.indexer import builder

    original = builder.read_bytes

    def vanish(path, max_bytes):
        if path.name == "vanishing.md":
            path.unlink()
        return original(path, max_bytes)

    monkeypatch.setattr(builder, "read_bytes", vanish)
    summary = _build(docs, index_dir, str(tiny_backbone_dir))
    reasons = dict(summary.skipped)
    assert reasons["binary content"] == 1
    assert reasons["not valid UTF-8 (byte 3)"] == 1
    assert reasons["empty file"] == 1
    assert reasons["too large (52 MB > 10 MB)"] == 1
    assert reasons["symlink loop"] == 1
    assert reasons["vanished while indexing"] == 1
    assert _state(index_dir) == before


def test_missing_and_empty_paths_are_clear_errors(tmp_path, tiny_backbone_dir):
    with pytest.raises(InvalidInputError, match="does not exist"):
        _build(tmp_path / "nowhere", tmp_path / "index", str(tiny_backbone_dir))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="nothing to index"):
        _build(tmp_path / "empty", tmp_path / "index", str(tiny_backbone_dir))
    with pytest.raises(InvalidInputError, match="no index at"):
        Index.open(tmp_path / "no-index")


def test_cli_index_status_json_and_exit_codes(docs, tmp_path, tiny_backbone_dir, capsys):
    from test_trainer_run import run_cli

    index_dir = tmp_path / "index"
    code, err = run_cli(
        ["index", str(docs), "-i", str(index_dir), "-e", str(tiny_backbone_dir), "--json"], capsys
    )
    assert code == 0, err
    code, err = run_cli(["status", "-i", str(index_dir), "--json"], capsys)
    assert code == 0
    code, err = run_cli(
        ["index", str(tmp_path / "nowhere"), "-i", str(index_dir), "-e", str(tiny_backbone_dir)], capsys
    )
    assert code == 1 and err.startswith("error:") and "does not exist" in err
    code, err = run_cli(["status", "-i", str(tmp_path / "none")], capsys)
    assert code == 1 and "no index at" in err
    only_binary = tmp_path / "binary"
    only_binary.mkdir()
    (only_binary / "x.md").write_bytes(b"\x00\x01" * 10)
    code, err = run_cli(
        ["index", str(only_binary), "-i", str(tmp_path / "i2"), "-e", str(tiny_backbone_dir)], capsys
    )
    assert code == 1 and "x.md: binary content" in err and "nothing could be indexed" in err


def test_cli_json_outputs_parse(docs, tmp_path, tiny_backbone_dir):
    from typer.testing import CliRunner

    from ragkit.cli.app import app

    runner = CliRunner()
    index_dir = tmp_path / "index"
    result = runner.invoke(
        app, ["index", str(docs), "-i", str(index_dir), "-e", str(tiny_backbone_dir), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert sorted(summary["added"]) == ["guide.md", "page.html", "plain.txt", "sub/notes.rst"]
    assert summary["chunks_total"] > 0 and summary["index_type"] == {"kind": "flat"}
    status = json.loads(runner.invoke(app, ["status", "-i", str(index_dir), "--json"]).stdout)
    assert (
        status["documents"] == 4 and status["chunks"] == summary["chunks_total"] and status["dimension"] == 32
    )
    dry = runner.invoke(
        app, ["index", str(docs), "-i", str(index_dir), "-e", str(tiny_backbone_dir), "--dry-run", "--json"]
    )
    assert json.loads(dry.stdout)["would_index"] == []
