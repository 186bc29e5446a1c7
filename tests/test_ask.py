"""``ragkit ask``: JSON schema, error lines, and the answer mode's citations (fake model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_trainer_run import run_cli
from typer.testing import CliRunner

from conftest import CATS_AND_DOGS, build_tiny_index
from ragkit.answer.prompt import build_messages, keep_valid_citations
from ragkit.cli.app import app
from ragkit.indexer.builder import IndexOptions, build_index
from ragkit.search.index import Index

runner = CliRunner()
HIT_FIELDS = {"rank", "score", "similarity", "text", "source", "start_line", "end_line", "heading"} | {
    "chunk_id"
}


@pytest.fixture
def built(tmp_path: Path, tiny_backbone_dir: Path) -> Path:
    return build_tiny_index(
        tmp_path, tiny_backbone_dir, {"a.md": CATS_AND_DOGS, "b.txt": "stock market fell in the city\n"}
    )


def test_json_output_is_the_schema_and_nothing_else(built: Path):
    result = runner.invoke(app, ["ask", "the cat sat", "-i", str(built), "-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {"query", "hits"} and payload["query"] == "the cat sat"
    assert len(payload["hits"]) == 2 and all(set(h) == HIT_FIELDS for h in payload["hits"])
    assert [h["rank"] for h in payload["hits"]] == [1, 2]
    assert payload["hits"][0]["score"] >= payload["hits"][1]["score"]


def test_dense_flag_ranks_by_the_encoder_alone(built: Path):
    index = Index.open(built)
    for flag, hybrid in (("--dense", False), ("--hybrid", True)):
        result = runner.invoke(app, ["ask", "the cat sat", "-i", str(built), "-k", "3", "--json", flag])
        assert result.exit_code == 0, result.output
        hits = json.loads(result.stdout)["hits"]
        expected = index.search("the cat sat", k=3, hybrid=hybrid)
        assert [h["chunk_id"] for h in hits] == [h.chunk_id for h in expected]
        assert [h["score"] for h in hits] == [round(h.score, 6) for h in expected]
        assert [h["similarity"] for h in hits] == [round(h.similarity, 6) for h in expected]


def test_terminal_display_shows_source_lines_and_heading(built: Path):
    result = runner.invoke(app, ["ask", "the dog ran fast in the house", "-i", str(built), "-k", "1"])
    assert result.exit_code == 0
    assert "a.md:7-7" in result.stdout and "Cats > Dogs" in result.stdout
    assert "cos " in result.stdout  # hybrid's fused score comes with the cosine beside it
    dense = runner.invoke(app, ["ask", "the dog ran fast", "-i", str(built), "-k", "1", "--dense"])
    assert dense.exit_code == 0 and "cos " not in dense.stdout


def test_error_cases_are_one_line_and_exit_1(built: Path, tmp_path: Path, tiny_backbone_dir: Path, capsys):
    code, err = run_cli(["ask", "cat", "-i", str(tmp_path / "none")], capsys)
    assert code == 1 and "no index at" in err and err.count("\n") == 1
    code, err = run_cli(["ask", "  ", "-i", str(built)], capsys)
    assert code == 1 and "query is empty" in err
    from ragkit.encoder import Encoder

    other = Encoder.from_pretrained(str(tiny_backbone_dir), pooling="last_token").save(tmp_path / "other")
    code, err = run_cli(["ask", "cat", "-i", str(built), "-e", str(other)], capsys)
    assert code == 1 and "built with encoder" in err
    # An index whose documents were all deleted since.
    empty_docs = tmp_path / "empty-docs"
    empty_docs.mkdir()
    (empty_docs / "a.md").write_text("the cat\n")
    empty_index = tmp_path / "empty-index"
    build_index(IndexOptions(source=empty_docs, index_dir=empty_index, encoder=str(tiny_backbone_dir)))
    (empty_docs / "a.md").unlink()
    (empty_docs / "keep.png").write_bytes(b"x")
    build_index(IndexOptions(source=empty_docs, index_dir=empty_index, encoder=str(tiny_backbone_dir)))
    code, err = run_cli(["ask", "cat", "-i", str(empty_index)], capsys)
    assert code == 1 and "is empty" in err


def test_citation_helpers_and_the_prompt():
    assert keep_valid_citations("[0] [3] [4]", 3) == (" [3] ", [0, 4])
    assert build_messages("q?", ["p1", "p2"])[1]["content"].startswith("Passages:\n\n[1] p1\n\n[2] p2")


@pytest.mark.parametrize(
    ("text", "clean", "dropped"),
    [
        ("a [1, 7] b", "a [1] b", [7]),
        ("a [1,2] b", "a [1,2] b", []),
        ("a [9-12] b", "a  b", [9, 10, 11, 12]),
        ("a [2\u20134] b", "a [2, 3] b", [4]),
        ("a [3; 0] b", "a [3] b", [0]),
        ("a [1-100000] b", "a [1] b", [100000]),
        ("a [5, 6] b", "a  b", [5, 6]),
    ],
)
def test_citation_groups_and_ranges_are_checked_number_by_number(text, clean, dropped):
    assert keep_valid_citations(text, 3) == (clean, dropped)
