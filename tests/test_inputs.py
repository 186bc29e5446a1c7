"""Tokenization with specials and instructions, truncation, and batch planning."""

from __future__ import annotations

import random

import pytest

from conftest import make_tokenizer
from ragkit.encoder.inputs import InputBuilder, collate, plan_batches, validate_texts
from ragkit.errors import InvalidInputError


def test_special_tokens_are_discovered() -> None:
    builder = InputBuilder(make_tokenizer(bos=True, eos=True), max_length=32)
    assert builder.prefix == [2] and builder.suffix == [3]
    builder = InputBuilder(make_tokenizer(bos=False, eos=False), max_length=32)
    assert builder.prefix == [] and builder.suffix == []


def test_instruction_span_and_truncation() -> None:
    tok = make_tokenizer(bos=True, eos=True)
    builder = InputBuilder(tok, max_length=8)
    [short, long] = builder.build(["cat sat", "the cat sat on the mat in the house"], "find")
    # [BOS] find | cat sat [EOS]: pooling starts after the instruction
    assert short.ids[:2] == [2, tok.convert_tokens_to_ids("find")] and short.pool_start == 2
    assert short.ids[-1] == 3 and not short.truncated
    assert len(long.ids) == 8 and long.truncated and long.ids[-1] == 3
    with pytest.raises(InvalidInputError, match="no room"):
        builder.build(["cat"], "find relevant document given search question how why")


def test_plan_batches_covers_every_index_once_within_budget() -> None:
    rng = random.Random(7)
    lengths = [rng.randint(1, 100) for _ in range(500)]
    batches = plan_batches(lengths, batch_size=16, max_tokens=600)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(500))
    for batch in batches:
        assert len(batch) <= 16
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 600
    # longest first, and sorted within batches, so padding is small
    assert lengths[batches[0][0]] == max(lengths)
    waste = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    assert waste / sum(lengths) < 0.05


def test_collate_left_and_right_padding() -> None:
    builder = InputBuilder(make_tokenizer(), max_length=16)
    items = builder.build(["cat", "the cat sat"], "find")
    right = collate(items, builder.pad_id, "right")
    left = collate(items, builder.pad_id, "left")
    assert right["attention_mask"][0].tolist() == [1, 1, 1, 0, 0]
    assert left["attention_mask"][0].tolist() == [0, 0, 1, 1, 1]
    assert right["pool_mask"][0].tolist() == [0, 0, 1, 0, 0]
    assert left["pool_mask"][0].tolist() == [0, 0, 0, 0, 1]
    assert left["position_ids"][0].tolist()[2:] == [0, 1, 2]


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ([], "empty"),
        ([""], "text #0 is empty"),
        (["ok", "   "], "text #1 is empty"),
        (["ok", 3], "text #1 is int"),
        (None, "list of strings"),
        (b"bytes", "list of strings"),
    ],
)
def test_bad_texts_are_rejected(texts, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        validate_texts(texts)


def test_any_iterable_of_strings_is_accepted() -> None:
    assert validate_texts(t for t in ("a", "b")) == ["a", "b"]
    assert validate_texts(("a",)) == ["a"]
