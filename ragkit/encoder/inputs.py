"""Token sequences with instruction spans, length-sorted token-budget batches, padding.

The instruction and the text are tokenized separately and joined as ids, so the boundary
between them is exact by construction: the pool mask starts at the first text token whatever
the tokenizer would have merged across the seam, and whichever side the batch is padded on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ragkit.errors import InvalidInputError


@dataclass(frozen=True)
class EncodedText:
    """One model input: ids plus where pooling starts (after specials and instruction)."""

    ids: list[int]
    pool_start: int
    truncated: bool


def validate_texts(texts: object) -> list[str]:
    """Check texts up front so one bad item fails fast with its position, not mid-batch."""
    if isinstance(texts, str | bytes) or not isinstance(texts, Iterable):
        raise InvalidInputError(f"texts must be a list of strings, got {type(texts).__name__}")
    texts = list(texts)
    if not texts:
        raise InvalidInputError("no texts to encode: the list is empty")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(f"text #{i} is {type(text).__name__}, not str")
        if not text.strip():
            raise InvalidInputError(f"text #{i} is empty; there is nothing to embed")
    return texts


class InputBuilder:
    """Builds :class:`EncodedText` for a tokenizer, discovering its special tokens once."""

    def __init__(self, tokenizer, max_length: int):
        if max_length < 1:
            raise InvalidInputError(f"max_length must be positive, got {max_length}")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.prefix, self.suffix = self._special_tokens(tokenizer)
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        self.pad_id = int(pad)

    @staticmethod
    def _special_tokens(tokenizer) -> tuple[list[int], list[int]]:
        """Find what ``add_special_tokens=True`` puts before and after a text."""
        probe = "ragkit probe"
        plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
        full = tokenizer(probe, add_special_tokens=True)["input_ids"]
        for start in range(len(full) - len(plain) + 1):
            if full[start : start + len(plain)] == plain:
                return full[:start], full[start + len(plain) :]
        return [], []

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]

    def build(
        self, texts: list[str], instruction: str = "", max_length: int | None = None
    ) -> list[EncodedText]:
        """Token ids with special tokens and the instruction; ``max_length`` may only shorten."""
        limit = min(self.max_length, max_length or self.max_length)
        instruction_ids = self._tokenize([instruction])[0] if instruction else []
        head = self.prefix + instruction_ids
        room = limit - len(head) - len(self.suffix)
        if room < 1:
            raise InvalidInputError(
                f"the instruction takes {len(instruction_ids)} tokens, leaving no room for text "
                f"within max_length={limit}"
            )
        pool_start = len(head) if instruction_ids else 0
        out = []
        for ids in self._tokenize(texts):
            if not ids:
                raise InvalidInputError("a text produced no tokens; there is nothing to embed")
            out.append(EncodedText(head + ids[:room] + self.suffix, pool_start, len(ids) > room))
        return out


def count_truncated(encoded: list[EncodedText], limit: int, *, warn: bool) -> int:
    """How many texts were cut at ``limit`` tokens, said once per call when ``warn``: a user
    should know that the end of a long text did not count."""
    truncated = sum(item.truncated for item in encoded)
    if truncated and warn:
        logging.getLogger("ragkit").warning(
            "%d of %d texts were longer than max_length=%d tokens and were truncated",
            truncated,
            len(encoded),
            limit,
        )
    return truncated


def plan_batches(lengths: Sequence[int], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Group indices, longest first, under a row cap and a padded-token budget.

    Sorting makes neighbours similar in length, so padding is small; the token budget lets
    many short texts share a batch while keeping long ones from blowing up memory. Longest
    first means an out-of-memory error happens at the start, not after an hour.
    """
    if batch_size < 1 or max_tokens < 1:
        raise InvalidInputError("batch_size and max_tokens must be positive")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        if current and (len(current) >= batch_size or longest * (len(current) + 1) > max_tokens):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def collate(items: Sequence[EncodedText], pad_id: int, padding_side: str = "right") -> dict:
    """Pad a batch; return ids, attention mask, position ids and the pooling mask."""
    import torch

    width = max(len(item.ids) for item in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(items), width), dtype=torch.long)
    pool_mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item.ids)
        offset = width - n if padding_side == "left" else 0
        input_ids[row, offset : offset + n] = torch.tensor(item.ids)
        attention[row, offset : offset + n] = 1
        pool_mask[row, offset + item.pool_start : offset + n] = 1
    # Positions count real tokens only, so left padding does not shift them.
    positions = (attention.cumsum(1) - 1).clamp(min=0)
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "position_ids": positions,
        "pool_mask": pool_mask,
    }
