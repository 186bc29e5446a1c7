"""An index of several sources: each run touches only what it scanned."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragkit.cli.app import app
from ragkit.errors import InvalidInputError
from ragkit.indexer import store
from ragkit.indexer.builder import IndexOptions, build_index
from ragkit.indexer.removal import remove_documents
from ragkit.search.index import Index


def _write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


@pytest.fixture
def two_folders(tmp_path: Path) -> tuple[Path, Path]:
    docs = _write(
        tmp_path / "docs",
        {"a.md": "# Alpha\n\nthe cat sat on the mat\n", "guide/b.md": "# Beta\n\nthe dog ran in the house\n"},
    )
    notes = _write(tmp_path / "notes", {"n.md": "# Notes\n\nthe red tree by the river\n"})
    return docs, notes


def _build(sources, index: Path, encoder: Path, **kw):
    return build_index(
        IndexOptions(source=sources, index_dir=index, encoder=str(encoder), chunk_tokens=16, overlap=0, **kw)
    )


def _names(index: Path) -> list[str]:
    db = sqlite3.connect(index / store.DB_NAME)
    return [r[0] for r in db.execute("SELECT path FROM documents ORDER BY path")]


def _touch_later(path: Path, text: str) -> None:
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def test_two_sources_in_one_run_are_labelled_and_listed(two_folders, tmp_path, tiny_backbone_dir):
    docs, notes = two_folders
    index = tmp_path / "index"
    summary = _build([docs, notes], index, tiny_backbone_dir)
    assert sorted(summary.added) == ["docs/a.md", "docs/guide/b.md", "notes/n.md"]
    assert summary.sources_added == [f"docs ({docs})", f"notes ({notes})"]
    status = Index.open(index).status()
    assert [(s["label"], s["path"], s["kind"], s["documents"]) for s in status["sources"]] == [
        ("docs", str(docs), "folder", 2),
        ("notes", str(notes), "folder", 1),
    ]
    hits = Index.open(index).search("red tree river", k=1, hybrid=False)
    assert hits[0].source == "notes/n.md"


def test_each_source_updated_in_turn_removes_only_what_its_own_scan_missed(
    two_folders, tmp_path, tiny_backbone_dir
):
    docs, notes = two_folders
    index = tmp_path / "index"
    _build([docs, notes], index, tiny_backbone_dir)
    (docs / "a.md").unlink()
    _touch_later(notes / "n.md", "# Notes\n\nthe green leaf on the water\n")
    summary = _build(notes, index, tiny_backbone_dir)
    assert summary.updated == ["notes/n.md"] and summary.removed == []
    assert _names(index) == ["docs/a.md", "docs/guide/b.md", "notes/n.md"]
    summary = _build(docs, index, tiny_backbone_dir)
    assert summary.removed == ["docs/a.md"] and summary.sources_added == []
    assert _names(index) == ["docs/guide/b.md", "notes/n.md"]
    # A sub-folder run removes only under that sub-folder.
    _write(docs, {"a.md": "# Alpha again\n\ncats\n"})
    (docs / "guide" / "b.md").unlink()
    summary = _build(docs / "guide", index, tiny_backbone_dir)
    assert summary.removed == ["docs/guide/b.md"] and summary.added == []
    # No path: every source is refreshed.
    summary = _build(None, index, tiny_backbone_dir)
    assert summary.added == ["docs/a.md"] and _names(index) == ["docs/a.md", "notes/n.md"]


def test_a_file_run_beside_a_folder_source_relabels_without_reembedding(
    two_folders, tmp_path, tiny_backbone_dir
):
    docs, _ = two_folders
    index = tmp_path / "index"
    _build(docs, index, tiny_backbone_dir)
    assert _names(index) == ["a.md", "guide/b.md"]
    before = Index.open(index).search("the cat sat", k=2, hybrid=False)
    outside = _write(tmp_path / "elsewhere", {"x.md": "# X\n\nthe blue boat on the lake\n"}) / "x.md"
    summary = _build(outside, index, tiny_backbone_dir)
    assert summary.added == ["x.md"] and summary.removed == [] and summary.chunks_written == 1
    assert _names(index) == ["docs/a.md", "docs/guide/b.md", "x.md"]
    after = {h.chunk_id: h for h in Index.open(index).search("the cat sat", k=3, hybrid=False)}
    for hit in before:  # same chunks, same vectors, new names
        assert (after[hit.chunk_id].score, after[hit.chunk_id].source) == (hit.score, "docs/" + hit.source)
    # One file of the folder source: that file only, under its labelled name.
    _touch_later(docs / "a.md", "# Alpha\n\nthe cat sat on the hat\n")
    (docs / "guide" / "b.md").unlink()
    summary = _build(docs / "a.md", index, tiny_backbone_dir)
    assert summary.updated == ["docs/a.md"] and summary.removed == []
    assert [s["label"] for s in Index.open(index).status()["sources"]] == ["docs", "x.md"]


def test_sources_that_overlap_vanish_or_empty_are_clear_errors(two_folders, tmp_path, tiny_backbone_dir):
    docs, notes = two_folders
    index = tmp_path / "index"
    _build([docs / "guide", notes], index, tiny_backbone_dir)
    with pytest.raises(InvalidInputError, match="contains the indexed source"):
        _build(docs, index, tiny_backbone_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="nothing to index"):
        _build(tmp_path / "empty", index, tiny_backbone_dir)
    (notes / "n.md").unlink()
    notes.rmdir()
    with pytest.raises(InvalidInputError, match=r"no longer exists.*ragkit remove"):
        _build(None, index, tiny_backbone_dir)
    assert _names(index) == ["guide/b.md", "notes/n.md"]
    assert remove_documents(index, [str(notes)]) == ["notes/n.md"]
    assert [s["label"] for s in Index.open(index).status()["sources"]] == ["guide"]
    summary = _build(None, index, tiny_backbone_dir)
    assert summary.removed == [] and _names(index) == ["guide/b.md"]
    with pytest.raises(InvalidInputError, match="whole index"):
        remove_documents(index, [str(docs / "guide")])


def test_rebuild_re_embeds_every_source(two_folders, tmp_path, tiny_backbone_dir):
    docs, notes = two_folders
    index = tmp_path / "index"
    _build([docs, notes], index, tiny_backbone_dir)
    summary = _build(docs, index, tiny_backbone_dir, rebuild=True)
    assert sorted(summary.added) == ["docs/a.md", "docs/guide/b.md", "notes/n.md"]
    assert len(Index.open(index).status()["sources"]) == 2


def test_cli_indexes_several_paths_and_status_lists_sources(two_folders, tmp_path, tiny_backbone_dir):
    docs, notes = two_folders
    index = tmp_path / "index"
    runner = CliRunner()
    options = ["--index", str(index), "--encoder", str(tiny_backbone_dir), "--chunk-tokens", "16"]
    result = runner.invoke(app, ["index", str(docs), str(notes), *options, "--overlap", "0"])
    assert result.exit_code == 0, result.output
    assert f"new source notes ({notes})" in " ".join(result.output.split())
    result = runner.invoke(app, ["status", "--index", str(index)])
    assert result.exit_code == 0 and "docs: " in result.output and "(1 documents)" in result.output
    status = json.loads(runner.invoke(app, ["status", "--index", str(index), "--json"]).output)
    assert [s["documents"] for s in status["sources"]] == [2, 1]
    result = runner.invoke(app, ["index", "--index", str(tmp_path / "new")])
    assert isinstance(result.exception, InvalidInputError)  # main() prints it as one line
    assert "name a folder or file to index" in str(result.exception)


def test_second_source_renames_without_colliding_and_paths_are_normalised(
    tmp_path, tiny_backbone_dir, monkeypatch
):
    files = {"x.md": "# X\n\nthe cat sat\n", "docs/x.md": "# Inner\n\nthe dog ran\n"}
    docs = _write(tmp_path / "docs", files)
    notes = _write(tmp_path / "notes", {"n.md": "# N\n\nthe red tree\n"})
    index = tmp_path / "index"
    _build(docs, index, tiny_backbone_dir)
    assert _names(index) == ["docs/x.md", "x.md"]
    monkeypatch.chdir(notes)
    summary = _build(Path("../docs"), index, tiny_backbone_dir)  # the same source, written another way
    assert summary.sources_added == [] and summary.unchanged == 2
    _build(Path("."), index, tiny_backbone_dir)  # a second source: every name gains its label
    assert _names(index) == ["docs/docs/x.md", "docs/x.md", "notes/n.md"]
    assert [s["label"] for s in Index.open(index).status()["sources"]] == ["docs", "notes"]


def test_an_unusable_file_is_not_made_a_source(two_folders, tmp_path, tiny_backbone_dir):
    docs, _ = two_folders
    index = tmp_path / "index"
    _build(docs, index, tiny_backbone_dir)
    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG")
    with pytest.raises(InvalidInputError, match="nothing to index"):
        _build(image, index, tiny_backbone_dir)
    assert _names(index) == ["a.md", "guide/b.md"] and len(Index.open(index).status()["sources"]) == 1


def test_remove_prefers_a_path_on_disk_over_a_label(tmp_path, tiny_backbone_dir, monkeypatch):
    first = _write(tmp_path / "docs", {"a.md": "# A\n\nthe cat sat\n"})
    second = _write(tmp_path / "src" / "docs", {"b.md": "# B\n\nthe dog ran\n"})
    index = tmp_path / "index"
    _build([first, second], index, tiny_backbone_dir)
    assert _names(index) == ["docs-2/b.md", "docs/a.md"]
    monkeypatch.chdir(tmp_path / "src")
    assert remove_documents(index, ["docs"]) == ["docs-2/b.md"]  # ./docs here is the second source
    assert _names(index) == ["docs/a.md"]


def test_an_index_from_before_sources_asks_for_its_folder_once(two_folders, tmp_path, tiny_backbone_dir):
    docs, _ = two_folders
    index = tmp_path / "index"
    _build(docs, index, tiny_backbone_dir)
    db = store.connect(index)
    with db.atomic():
        db.execute("DELETE FROM meta WHERE key IN ('sources', 'labelled')")
        store.set_meta(db, {"root": str(docs)})
    db.conn.close()
    with pytest.raises(InvalidInputError, match="predates recorded sources"):
        _build(None, index, tiny_backbone_dir)
    assert _build(docs, index, tiny_backbone_dir).unchanged == 2
    assert _build(None, index, tiny_backbone_dir).unchanged == 2
