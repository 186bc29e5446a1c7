"""bench/encoder_agreement.py: the vectors of two encoders compared text by text."""

from __future__ import annotations

import pytest

from conftest import load_bench_script, make_encoder


def test_sentences_are_the_distinct_texts_of_the_pairs_in_order_and_capped(tmp_path):
    tsv = tmp_path / "sts.tsv"
    rows = [
        "score\tsentence1\tsentence2",
        "5.0\tA man plays a guitar.\tA man is playing the guitar.",
        "1.0\tA man plays a guitar.\tThe dog runs in the park.",
        "2.0\tThe dog runs in the park.\tA woman slices an onion.",
    ]
    tsv.write_text("\n".join(rows) + "\n")
    script = load_bench_script("encoder_agreement")
    expected = ["A man plays a guitar.", "A man is playing the guitar.", "The dog runs in the park."]
    expected.append("A woman slices an onion.")
    assert script.sentences(tsv, 10) == expected
    assert script.sentences(tsv, 2) == expected[:2]


def test_an_encoder_agrees_with_itself_and_not_with_another_pooling():
    script = load_bench_script("encoder_agreement")
    texts = ["the cat sat on the mat", "a quick brown fox jumps", "rain falls on the plain"]
    encoder = make_encoder(instructions={"query": "find: "})
    same = script.agreement(encoder, encoder, texts)
    assert same["encode_queries"]["min"] == pytest.approx(1.0, abs=1e-6)
    assert same["encode_documents"]["min"] == pytest.approx(1.0, abs=1e-6)
    other = script.agreement(
        encoder, make_encoder(pooling="last_token", instructions={"query": "find: "}), texts
    )
    assert other["encode_documents"]["min"] < 0.999
    assert other["encode_queries"]["min"] < 0.999


def test_queries_carry_the_instruction_and_documents_do_not():
    script = load_bench_script("encoder_agreement")
    texts = ["the cat sat on the mat", "a quick brown fox jumps"]
    plain = make_encoder(instructions={})
    instructed = make_encoder(instructions={"query": "find: "})
    result = script.agreement(plain, instructed, texts)
    assert result["encode_documents"]["min"] == pytest.approx(1.0, abs=1e-6)
    assert result["encode_queries"]["min"] < 0.999


def test_a_missing_sts_file_is_one_clear_error(tmp_path, monkeypatch, capsys):
    script = load_bench_script("encoder_agreement")
    monkeypatch.setattr("sys.argv", ["encoder_agreement.py", "a", "b", "--sts", str(tmp_path / "absent.tsv")])
    with pytest.raises(SystemExit, match=r"error: STS file .*absent\.tsv does not exist"):
        script.main()
