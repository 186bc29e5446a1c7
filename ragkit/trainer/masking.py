"""BERT-style masking for masked next-token prediction (MNTP).

A decoder predicts token *i* from the hidden state at *i-1* (its LM head's built-in shift),
so the first real token of a row can never be a target and is never masked. Special and
padding tokens are never masked either: predicting them teaches nothing about the text.
"""

from __future__ import annotations

from dataclasses import dataclass

IGNORE_INDEX = -100


@dataclass(frozen=True)
class MaskingScheme:
    """The paper's defaults: 20 % of tokens; of those 80 % masked, 10 % random, 10 % kept."""

    probability: float = 0.2
    mask_fraction: float = 0.8
    random_fraction: float = 0.1


def mask_token_id(tokenizer) -> int:
    """The tokenizer's mask token, or "_" as the paper uses for Llama-style vocabularies."""
    if getattr(tokenizer, "mask_token_id", None) is not None:
        return int(tokenizer.mask_token_id)
    ids = tokenizer("_", add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError("the tokenizer has no mask token and '_' is not a single token")
    return int(ids[0])


def mask_tokens(
    input_ids,
    attention_mask,
    *,
    special_ids: set[int],
    mask_id: int,
    vocab_size: int,
    scheme: MaskingScheme = MaskingScheme(),
    generator=None,
):
    """Return ``(masked_ids, labels)``; labels are ``IGNORE_INDEX`` except at masked positions."""
    import torch

    real = attention_mask.bool()
    candidates = real.clone()
    for special in special_ids:
        candidates &= input_ids != special
    # The first real token of each row has no predecessor to predict it from.
    first = real.long().argmax(dim=1)
    candidates[torch.arange(len(first)), first] = False

    draw = torch.rand(input_ids.shape, generator=generator)
    chosen = candidates & (draw < scheme.probability)
    if not chosen.any() and candidates.any():
        # A batch without a single target would give a NaN loss; mask one token instead.
        row, col = candidates.nonzero()[0]
        chosen[row, col] = True
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))

    kind = torch.rand(input_ids.shape, generator=generator)
    to_mask = chosen & (kind < scheme.mask_fraction)
    to_random = (
        chosen & (kind >= scheme.mask_fraction) & (kind < scheme.mask_fraction + scheme.random_fraction)
    )
    masked = input_ids.clone()
    masked[to_mask] = mask_id
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    masked[to_random] = random_ids[to_random]
    return masked, labels
