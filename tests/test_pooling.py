"""Pooling and instruction exclusion against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_encoder
from ragkit.encoder.pooling import pool


def _hidden() -> torch.Tensor:
    # batch 2, seq 4, dim 2; values chosen so every mode gives a distinct, checkable answer
    return torch.tensor(
        [
            [[1.0, 0.0], [2.0, 0.0], [3.0, 6.0], [9.0, 9.0]],
            [[5.0, 5.0], [1.0, 2.0], [3.0, 4.0], [7.0, 8.0]],
        ]
    )


# row 0: tokens 0..2 count (right padding); row 1: tokens 2..3 count (left pad + instruction)
MASK = torch.tensor([[1, 1, 1, 0], [0, 0, 1, 1]])


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("mean", [[2.0, 2.0], [5.0, 6.0]]),
        # weights 1,2,3 -> (1*1+2*2+3*3)/6, (0+0+18)/6 ; row 1 weights 1,2 -> (3+14)/3, (4+16)/3
        ("weighted_mean", [[14 / 6, 3.0], [17 / 3, 20 / 3]]),
        ("last_token", [[3.0, 6.0], [7.0, 8.0]]),
        ("first_token", [[1.0, 0.0], [3.0, 4.0]]),
    ],
)
def test_pool_matches_hand_computation(mode: str, expected: list) -> None:
    result = pool(_hidden(), MASK, mode)
    assert torch.allclose(result, torch.tensor(expected), atol=1e-6)


def _manual_embedding(enc, ids: list[int], pool_from: int, mode: str) -> np.ndarray:
    """Run the model on one unpadded sequence and pool by hand from ``pool_from``."""
    with torch.inference_mode():
        hidden = enc.model(input_ids=torch.tensor([ids])).last_hidden_state[0].float()
    counted = hidden[pool_from:]
    n = counted.shape[0]
    if mode == "mean":
        vec = counted.mean(0)
    elif mode == "weighted_mean":
        w = torch.arange(1, n + 1, dtype=torch.float32)
        vec = (counted * w[:, None]).sum(0) / w.sum()
    elif mode == "last_token":
        vec = counted[-1]
    else:
        vec = counted[0]
    return (vec / vec.norm()).numpy()


@pytest.mark.parametrize("mode", ["mean", "weighted_mean", "last_token", "first_token"])
@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_instruction_tokens_are_attended_but_not_pooled(mode: str, padding_side: str) -> None:
    enc = make_encoder(pooling=mode, padding_side=padding_side)
    tok = enc.tokenizer
    instruction = "retrieve relevant passage given query"
    text = "what is the cat on"
    ins_ids = tok(instruction, add_special_tokens=False)["input_ids"]
    txt_ids = tok(text, add_special_tokens=False)["input_ids"]
    bos = [tok.bos_token_id]
    # In a batch with a longer text so the query row is padded on `padding_side`.
    got = enc.encode_queries(
        [text, "the big red dog sat on the small blue mat in the house"], instruction=instruction
    )[0]
    expected = _manual_embedding(enc, bos + ins_ids + txt_ids, 1 + len(ins_ids), mode)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # The instruction changes the vector (it is attended to) ...
    plain = enc.encode_documents([text])[0]
    assert np.abs(got - plain).max() > 1e-3
    # ... and without instruction everything, BOS included, is pooled.
    np.testing.assert_allclose(plain, _manual_embedding(enc, bos + txt_ids, 0, mode), atol=1e-5)


def test_default_query_instruction_comes_from_config() -> None:
    enc = make_encoder(instructions={"query": "find relevant document"})
    a = enc.encode_queries(["cat on mat"])
    b = enc.encode(["cat on mat"], instruction="find relevant document")
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - enc.encode_documents(["cat on mat"])).max() > 1e-3
