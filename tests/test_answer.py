"""Answers: extractive sentences are the passages' own; generated ones pass the grounding check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_trainer_run import run_cli
from typer.testing import CliRunner

import ragkit
import ragkit.answer.extractive as extractive
from conftest import build_tiny_index
from ragkit.answer import Answer, answer
from ragkit.answer.extractive import score_sentences
from ragkit.answer.grounding import GroundingCheck, invented_terms
from ragkit.cli.app import app
from ragkit.cli.ask_command import answer_flag_values
from ragkit.errors import RagkitError
from ragkit.search.index import Index

DOCS = {
    "pets.md": "# Pets\n\nThe cat sat on the mat all day. The dog ran fast in the house.\n\n"
    "## Food\n\nCats eat fish every morning. Dogs eat meat in the evening.\n",
    "money.txt": "The stock market fell sharply in the city. Banks closed their doors early.\n",
}


@pytest.fixture
def index(tmp_path: Path, tiny_backbone_dir: Path) -> Index:
    return Index.open(build_tiny_index(tmp_path, tiny_backbone_dir, DOCS))


class FakeModel:
    """Streams a canned answer in small pieces; remembers the prompt."""

    def __init__(self, text: str):
        self.text, self.messages = text, None

    def stream(self, messages):
        self.messages = messages
        for i in range(0, len(self.text), 3):
            yield self.text[i : i + 3]


class FailingModel:
    def stream(self, messages):
        yield "The cat"
        raise RuntimeError("CUDA out of memory")


def _sentences_with_citations(text: str) -> list[tuple[str, int]]:
    return [(s.strip(), int(n)) for s, n in re.findall(r"(.+?) \[(\d+)\]", text)]


def test_every_extracted_sentence_is_a_passage_s_own_and_cites_its_hit(index):
    result = answer(index, "what do cats eat in the morning?", k=3)
    assert result.mode == "extract" and result.answered
    pairs = _sentences_with_citations(result.text)
    assert 1 <= len(pairs) <= 3
    assert " ".join(f"{s} [{n}]" for s, n in pairs) == result.text
    for sentence, number in pairs:
        assert sentence in " ".join(result.hits[number - 1].text.split())
    assert any(s == "Cats eat fish every morning." for s, _ in pairs)
    for citation in result.citations:
        hit = result.hits[citation.number - 1]
        assert (citation.source, citation.start_line) == (hit.source, hit.start_line)
        assert citation.end_line == hit.end_line
    assert sorted(c.number for c in result.citations) == sorted({n for _, n in pairs})


def test_nothing_above_the_threshold_says_so_and_keeps_the_hits(index, monkeypatch):
    monkeypatch.setattr(extractive, "ANSWER_THRESHOLD", 10.0)
    result = answer(index, "what do cats eat?", k=2)
    assert not result.answered and result.citations == [] and "do not seem to answer" in result.text
    assert len(result.hits) == 2


def test_grounding_removes_unsupported_sentences_and_invented_terms(index):
    hits = index.search("cats dogs food", k=3)
    check = GroundingCheck(hits, index.encoder, score_sentences("cats dogs food", hits, index.encoder))
    number = next(i for i, h in enumerate(hits, start=1) if "Cats eat fish" in h.text)
    text = (
        f"Cats eat fish every morning [{number}, 9]. "
        f"The moon is made of green cheese and rockets [{number}]. "
        f"Cats eat fish every morning, see https://example.com/cats [{number}]. "
        "Cats eat fish every morning."
    )
    result = check.check(text)
    assert result.sentences == [f"Cats eat fish every morning [{number}]."]  # the invalid 9 is dropped
    assert len(result.removed) == 3
    assert result.invented == ["https://example.com/cats"]
    assert invented_terms("Run ragkit/setup.py on 42 GPUs with KubeFlow.", hits[0].text) == [
        "ragkit/setup.py",
        "42",
        "KubeFlow",
    ]


def test_generated_answer_shows_only_checked_sentences_as_they_stream(index):
    hits = index.search("what do cats eat?", k=3)
    number = next(i for i, h in enumerate(hits, start=1) if "Cats eat fish" in h.text)
    model = FakeModel(f"Cats eat fish every morning [{number}]. Dogs fly to www.dogs.example daily [2].")
    streamed: list[str] = []
    result = answer(
        index, "what do cats eat?", hits=hits, mode="generate", generator=model, on_text=streamed.append
    )
    assert result.mode == "generate" and result.text == f"Cats eat fish every morning [{number}]."
    assert "".join(streamed).strip() == result.text
    assert result.removed_sentences == 1 and result.invented == ["www.dogs.example"]
    assert [c.number for c in result.citations] == [number]
    prompt = model.messages[-1]["content"]
    assert all(f"[{i}] " + h.text[:15] in prompt for i, h in enumerate(hits, start=1))


def test_a_generated_answer_with_nothing_supported_falls_back_to_extractive(index):
    model = FakeModel("Paris is the capital of France [1]. It has 2 million people.")
    result = answer(index, "what do cats eat?", k=3, mode="generate", generator=model)
    assert result.mode == "extract" and result.answered
    assert result.removed_sentences == 2 and "2 removed" in result.note
    assert "Paris" in result.invented or "France" in result.invented


def test_a_failing_generator_is_one_error_through_the_api_and_the_cli(index, monkeypatch, capsys):
    with pytest.raises(RagkitError, match="the answer model failed: RuntimeError: CUDA out of memory"):
        answer(index, "what do cats eat?", mode="generate", generator=FailingModel())
    import ragkit.answer.generator as generator

    monkeypatch.setattr(generator, "ChatModel", lambda name: FailingModel())
    code, err = run_cli(["ask", "what do cats eat?", "-i", str(index.folder), "--answer", "generate"], capsys)
    assert code == 1
    assert [line for line in err.splitlines() if line.strip()] == [
        "error: the answer model failed: RuntimeError: CUDA out of memory"
    ]


def test_cli_answer_modes_json_and_bad_mode(index, capsys):
    runner = CliRunner()
    args = ["ask", "what do cats eat?", "-i", str(index.folder), "-k", "3"]
    result = runner.invoke(app, [*args, "--answer", "extract", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["answer"]["mode"] == "extract" and payload["answer"]["text"]
    assert {"citations", "answered", "removed_sentences", "invented", "note"} <= set(payload["answer"])
    shown = runner.invoke(app, answer_flag_values([*args, "--answer"]))
    assert shown.exit_code == 0 and "Answer" in shown.stdout and "[1] " in shown.stdout
    code, err = run_cli([*args, "--answer", "--json"], capsys)  # the console entry: a bare --answer
    assert code == 0, err
    code, err = run_cli(["ask", "cats", "-i", str(index.folder), "--answer=poem"], capsys)
    assert code == 1 and "extract or generate" in err
    code, err = run_cli(["ask", "cats", "-i", str(index.folder), "--answer", "poem"], capsys)
    assert code == 1 and "extract or generate, not 'poem'" in err
    assert answer_flag_values(["ask", "-i", "x", "--answer", "a question"])[3:5] == ["--answer", "extract"]
    # A bare --answer before the question: the question is the query, not a mode.
    code, err = run_cli(["ask", "-i", str(index.folder), "-k", "3", "--answer", "what do cats eat?"], capsys)
    assert code == 0, err


def test_ragkit_answer_is_callable_and_the_langchain_runnable_gives_the_same_object(index):
    from ragkit.integrations.langchain import answer_runnable

    direct = ragkit.answer(index.folder, "what do cats eat?", k=3)
    chained = answer_runnable(index.folder, k=3).invoke("what do cats eat?")
    assert isinstance(direct, Answer) and isinstance(chained, Answer)
    assert (direct.text, direct.citations) == (chained.text, chained.citations)


def test_code_lines_and_table_rows_are_candidates_of_their_own():
    from ragkit.answer.extractive import passage_sentences
    from ragkit.search.index import Hit

    table = "| option | default | meaning | |---|---|---| | `--include GLOB` | all | only matching files |"
    code = "ragkit index ./docs --rebuild   # start again\nragkit status   # what it holds"
    text = f"Intro words are here. More words follow now.\n\n{table}\n\n{code}"
    hit = Hit(1, 1.0, text, "a.md", 1, 9, "", 1)
    units = [s.text for s in passage_sentences([hit])]
    assert units == [
        "Intro words are here.",
        "More words follow now.",
        "option | default | meaning",
        "`--include GLOB` | all | only matching files",
        "ragkit index ./docs --rebuild # start again",
        "ragkit status # what it holds",
    ]
    squashed = " ".join(hit.text.split())
    assert all(unit in squashed for unit in units)


def test_tidy_keeps_dots_that_start_paths_and_suffixes():
    from ragkit.answer.prompt import strip_citations

    assert strip_citations("Run ragkit index ./docs [1] on every .md file [2] .") == (
        "Run ragkit index ./docs on every .md file."
    )


def test_streamed_text_keeps_its_spaces_and_late_citations_stay_with_their_sentence(index):
    hits = index.search("what do cats eat?", k=3)
    number = next(i for i, h in enumerate(hits, start=1) if "Cats eat fish" in h.text)
    other = next(i for i, h in enumerate(hits, start=1) if "Dogs eat meat" in h.text)
    text = f"Cats eat fish every morning. [{number}] Dogs eat meat in the evening. [{other}]"
    pieces = ["Cats eat ", "fish every", " morning. ", f"[{number}] Dogs eat meat "]
    pieces += ["in the evening. ", f"[{other}]"]

    class Pieces:
        def stream(self, messages):
            yield from pieces

    assert "".join(pieces) == text
    result = answer(index, "what do cats eat?", hits=hits, mode="generate", generator=Pieces())
    assert result.mode == "generate" and result.removed_sentences == 0
    assert result.text == f"Cats eat fish every morning [{number}]. Dogs eat meat in the evening [{other}]."
