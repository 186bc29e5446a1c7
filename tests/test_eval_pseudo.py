"""``ragkit eval FOLDER``: a test set from the documents' own sections, kept out of training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragkit.cli.app import app
from ragkit.evaluation.pseudo_queries import documents_dataset, held_out
from ragkit.trainer.corpus import load_corpus

WORDS = "cat dog river tree market city house mat fish bird road stone light water field".split()


def _body(n: int) -> str:
    sentences = [
        f"The {WORDS[(n + i) % 15]} and the {WORDS[(n * 3 + i) % 15]} meet near section {n} at hour {i}."
        for i in range(4)
    ]
    return " ".join(sentences)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    markdown = "".join(f"## Markdown topic number {n}\n\n{_body(n)}\n\n" for n in range(12))
    (folder / "a.md").write_text("# Guide\n\n" + markdown)
    rst = "".join(f"Rest topic number {n}\n{'=' * 30}\n\n{_body(n + 20)}\n\n" for n in range(10))
    (folder / "b.rst").write_text(rst)
    html = "".join(f"<h2>Html topic number {n}</h2><p>{_body(n + 40)}</p>" for n in range(10))
    (folder / "c.html").write_text(f"<html><body>{html}</body></html>")
    return folder


def test_every_query_has_its_own_section_and_is_not_in_it(docs: Path):
    dataset = documents_dataset(docs, seed=0)
    kinds = {q.split(":", 1)[0] for q in dataset.qrels}
    assert kinds == {"heading", "cloze"} and len(dataset.qrels) >= 4
    assert {Path(d.split("#")[0]).suffix for q in dataset.qrels for d in dataset.qrels[q]} >= {".md", ".rst"}
    for query, relevant in dataset.qrels.items():
        (doc_id,) = relevant  # exactly one relevant passage: the query's own section
        assert query.split(":", 1)[1] == doc_id and relevant[doc_id] == 1
        assert dataset.queries[query] not in dataset.corpus[doc_id]
    assert documents_dataset(docs, seed=0).qrels == dataset.qrels  # seeded
    assert documents_dataset(docs, seed=1).qrels != dataset.qrels


def test_train_corpus_leaves_the_evaluated_sections_out(docs: Path):
    dataset = documents_dataset(docs, seed=0)
    evaluated = {d for relevant in dataset.qrels.values() for d in relevant}
    everything = load_corpus(docs)
    training = load_corpus(docs, leave_out_eval=True)
    held = [(h, doc) for h, _, doc in everything.titled if held_out(doc, h)]
    assert held and {d.split("#")[0] for d in evaluated} <= {doc for _, doc in held}
    assert not {(h, doc) for h, _, doc in training.titled} & set(held)
    cloze = [text for q, text in dataset.queries.items() if q.startswith("cloze:")]
    assert cloze and not any(sentence in passage for sentence in cloze for passage in training.passages)
    assert any(sentence in passage for sentence in cloze for passage in everything.passages)


def test_cli_evaluates_a_folder_end_to_end_with_the_beir_schema(
    docs: Path, tiny_backbone_dir: Path, tmp_path: Path
):
    runner = CliRunner()
    args = ["eval", str(docs), "--encoder", str(tiny_backbone_dir), "--systems", "ragkit,bm25,hybrid"]
    result = runner.invoke(app, [*args, "--json", "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["dataset"] == "docs (pseudo-queries)" and payload["split"] == "pseudo"
    assert set(payload["systems"]) == {"ragkit", "bm25", "hybrid"}
    assert {"ndcg@10", "recall@10", "mrr@10"} <= set(payload["systems"]["bm25"])
    assert payload["query_kinds"]["heading"] > 0 and payload["query_kinds"]["cloze"] > 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "made from their structure" in report and "favour lexical matching" in report


def test_an_index_folder_is_evaluated_on_its_sources_documents(
    docs: Path, tiny_backbone_dir: Path, tmp_path: Path
):
    import shutil

    from ragkit.evaluation.retrieval import evaluate_retrieval
    from ragkit.indexer.builder import IndexOptions, build_index

    index = tmp_path / "index"
    build_index(IndexOptions(source=docs, index_dir=index, encoder=str(tiny_backbone_dir)))
    by_folder = evaluate_retrieval(docs, systems="bm25")
    by_index = evaluate_retrieval(index, systems="bm25")
    assert by_index["systems"]["bm25"] == by_folder["systems"]["bm25"]
    assert (
        by_index["query_kinds"] == by_folder["query_kinds"]
        and by_index["dataset"] == "index (pseudo-queries)"
    )

    notes = tmp_path / "notes"
    shutil.copytree(docs, notes)
    build_index(IndexOptions(source=notes, index_dir=index, encoder=str(tiny_backbone_dir)))
    both = documents_dataset(index)
    alone = documents_dataset(docs)
    assert len(both.corpus) == 2 * len(alone.corpus) and len(both.qrels) == 2 * len(alone.qrels)
    for query, relevant in both.qrels.items():
        label = query.split(":", 1)[1].split("/", 1)[0]
        assert label in {"docs", "notes"} and all(
            d.startswith(label + "/") and d in both.corpus for d in relevant
        )

    shutil.rmtree(docs)
    shutil.rmtree(notes)
    with pytest.raises(Exception, match="no source folder that still exists"):
        documents_dataset(index)


def _notes(folder: Path, count: int) -> Path:
    folder.mkdir()
    for n in range(count):
        paragraphs = [_body(n * 7 + p) for p in range(3)]
        (folder / f"note-{n}.txt").write_text("\n\n".join(paragraphs) + "\n")
    return folder


def test_a_folder_without_headings_gets_cloze_queries_only(tiny_backbone_dir: Path, tmp_path: Path):
    notes = _notes(tmp_path / "notes", 60)
    dataset = documents_dataset(notes, seed=0)
    assert dataset.qrels and {q.split(":", 1)[0] for q in dataset.qrels} == {"cloze"}
    for query, relevant in dataset.qrels.items():
        (doc_id,) = relevant
        assert dataset.queries[query] not in dataset.corpus[doc_id]
    training = load_corpus(notes, leave_out_eval=True)
    cloze = list(dataset.queries.values())
    assert not any(sentence in passage for sentence in cloze for passage in training.passages)
    runner = CliRunner()
    args = ["eval", str(notes), "--encoder", str(tiny_backbone_dir), "--systems", "ragkit,bm25"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert "only cloze queries were made" in " ".join(result.stdout.split())
    assert "only cloze queries were made" in (tmp_path / "report" / "report.md").read_text()


def test_a_tiny_folder_says_how_many_queries_it_could_make(tiny_backbone_dir: Path, tmp_path: Path, capsys):
    from test_trainer_run import run_cli

    notes = _notes(tmp_path / "few", 12)
    queries = len(documents_dataset(notes).qrels)
    assert 0 < queries < 30
    runner = CliRunner()
    result = runner.invoke(
        app, ["eval", str(notes), "--encoder", str(tiny_backbone_dir), "--systems", "bm25"]
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert f"Only {queries} queries could be made" in text and "noise" in text
    empty = tmp_path / "one"
    empty.mkdir()
    (empty / "a.txt").write_text("One short line of notes.\n")
    code, err = run_cli(
        ["eval", str(empty), "--encoder", str(tiny_backbone_dir), "--systems", "bm25"], capsys
    )
    assert code == 1 and "Traceback" not in err
    assert "too little text for a test set" in " ".join(err.split())


def test_sphinx_sources_folder_is_evaluated_by_its_sections(tmp_path: Path):
    folder = tmp_path / "_sources"
    folder.mkdir()
    for n in range(12):
        text = "".join(
            f"Topic {n} part {p}\n{'-' * 20}\n\nSee :func:`os.path.join`. {_body(n * 5 + p)}\n\n"
            for p in range(3)
        )
        (folder / f"page{n}.rst.txt").write_text(f"Page {n}\n{'=' * 10}\n\n{text}")
    dataset = documents_dataset(folder)
    assert {q.split(":", 1)[0] for q in dataset.qrels} == {"heading", "cloze"}
    assert not any(":func:" in text for text in dataset.corpus.values())
