"""bench/encoder_agreement.py: the vectors of two encoders compared text by text."""

from __future__ import annotations

import pytest

from conftest import load_bench_script, make_encoder


def test_sentences_are_distinct_long_enough_and_capped(tmp_path):
    tsv = tmp_path / "sts.tsv"
    rows = [
        "a\tb\t5.0\tA man plays a guitar.\tA man is playing the guitar.",
        "a\tb\t1.0\tToo short.\tA man plays a guitar.",
    ]
    rows.append("a\tb\t2.0\tA woman slices an onion.\tThe dog runs in the park.")
    tsv.write_text("\n".join(rows) + "\n")
    script = load_bench_script("encoder_agreement")
    assert script.sentences(tsv, 10) == [
        "A man plays a guitar.",
        "A man is playing the guitar.",
        "A woman slices an onion.",
        "The dog runs in the park.",
    ]
    assert len(script.sentences(tsv, 2)) == 2


def test_an_encoder_agrees_with_itself_and_not_with_another_pooling():
    script = load_bench_script("encoder_agreement")
    texts = ["the cat sat on the mat", "a quick brown fox jumps", "rain falls on the plain"]
    encoder = make_encoder(instructions={"query": "find: "})
    same = script.agreement(encoder, encoder, texts)
    assert same["encode_queries"]["min"] == pytest.approx(1.0, abs=1e-6)
    assert same["encode_documents"]["median"] == pytest.approx(1.0, abs=1e-6)
    other = script.agreement(
        encoder, make_encoder(pooling="last_token", instructions={"query": "find: "}), texts
    )
    assert other["encode_documents"]["min"] < 0.999
    assert other["encode_queries"]["min"] <= other["encode_queries"]["median"]
