"""Chunks of at most N tokens of the encoder's tokenizer, breaking where the text breaks.

Preference order for a break: a heading (a chunk never spans two sections), then a block
(paragraph, list, code), then a sentence, and only for a single run-on sentence a raw
token window. Consecutive chunks of one section share up to ``overlap`` tokens of whole
trailing blocks (or sentences), so an answer that straddles a break is found from either side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ragkit.documents.blocks import Block
from ragkit.documents.sentences import split_sentences
from ragkit.errors import InvalidInputError


@dataclass(frozen=True)
class Chunk:
    text: str
    start_line: int
    end_line: int
    heading: str
    tokens: int


@dataclass(frozen=True)
class _Piece:
    text: str
    start_line: int
    end_line: int
    tokens: int
    heading: tuple[str, ...]
    is_heading: bool


class Chunker:
    """Splits a document's blocks; ``count`` maps texts to their token counts in one call."""

    def __init__(
        self,
        count: Callable[[list[str]], list[int]],
        max_tokens: int = 256,
        overlap: int = 32,
        offsets: Callable[[str], list[tuple[int, int]]] | None = None,
    ):
        if max_tokens < 8:
            raise InvalidInputError(f"--chunk-tokens must be at least 8, got {max_tokens}")
        if not 0 <= overlap <= max_tokens // 2:
            raise InvalidInputError(
                f"--overlap must be between 0 and half of --chunk-tokens ({max_tokens // 2}), got {overlap}"
            )
        self.count, self.max_tokens, self.overlap = count, max_tokens, overlap
        self.offsets = offsets
        """Character spans of a text's tokens, to cut run-on text in one tokenization."""

    def _pieces(self, blocks: list[Block]) -> list[_Piece]:
        """Blocks, with any block over the limit cut into sentences (or token windows)."""
        counts = self.count([b.text for b in blocks])
        pieces: list[_Piece] = []
        for block, tokens in zip(blocks, counts, strict=True):
            if tokens <= self.max_tokens:
                pieces.append(
                    _Piece(
                        block.text, block.start_line, block.end_line, tokens, block.heading, block.is_heading
                    )
                )
                continue
            sentences = split_sentences(block.text)
            for sentence, size in zip(sentences, self.count(sentences), strict=True):
                parts = [sentence] if size <= self.max_tokens else self._windows(sentence)
                sizes = [size] if size <= self.max_tokens else self.count(parts)
                for part, part_size in zip(parts, sizes, strict=True):
                    pieces.append(
                        _Piece(part, block.start_line, block.end_line, part_size, block.heading, False)
                    )
        return pieces

    def _windows(self, text: str) -> list[str]:
        """A run-on text cut into windows that fit, from one tokenization of the whole text.

        Cuts fall after whitespace where the window has some (never mid-word in spaced
        text); text without spaces (CJK, base64, long identifiers) is cut between tokens.
        A window whose re-tokenization comes out longer (merges across the cut) is halved.
        """
        spans = self.offsets(text) if self.offsets is not None else _char_spans(text)
        budget = max(self.max_tokens - 2, 1)
        windows, start = [], 0
        while start < len(spans):
            end = min(start + budget, len(spans))
            if end < len(spans):
                # Byte-level tokens of one character share its span: never cut between them.
                clean = [c for c in range(end, start, -1) if spans[c][0] >= spans[c - 1][1]]
                spaced = [c for c in clean if c > start + budget // 2 and _starts_word(text, spans[c][0])]
                end = spaced[0] if spaced else (clean[0] if clean else end)
            windows.append(text[spans[start][0] : spans[end - 1][1]].strip())
            start = end
        return [w for window in windows if window for w in self._fit(window)]

    def _fit(self, window: str) -> list[str]:
        if len(window) < 2 or self.count([window])[0] <= self.max_tokens:
            return [window]
        middle = len(window) // 2
        return self._fit(window[:middle]) + self._fit(window[middle:])

    def split(self, blocks: list[Block]) -> list[Chunk]:
        chunks: list[Chunk] = []
        current: list[_Piece] = []

        def flush(carry: bool) -> list[_Piece]:
            if not current or all(p.is_heading for p in current):
                return list(current) if not carry else []
            text = "\n\n".join(p.text for p in current)
            heading = next((p.heading for p in current if not p.is_heading), current[0].heading)
            chunks.append(
                Chunk(
                    text,
                    min(p.start_line for p in current),
                    max(p.end_line for p in current),
                    " > ".join(heading),
                    sum(p.tokens for p in current),
                )
            )
            if not carry:
                return []
            kept, size = [], 0
            for piece in reversed(current):
                if piece.is_heading or size + piece.tokens > self.overlap:
                    break
                kept.insert(0, piece)
                size += piece.tokens
            return kept

        for piece in self._pieces(blocks):
            if piece.is_heading:
                pending = flush(carry=False)
                current = [*pending, piece] if pending and all(p.is_heading for p in pending) else [piece]
                continue
            total = sum(p.tokens for p in current) + piece.tokens + 2 * len(current)
            if current and total > self.max_tokens:
                carried = flush(carry=True)
                # Keep the section title at the top of a continued chunk only if it still fits.
                current = carried
                if sum(p.tokens for p in current) + piece.tokens > self.max_tokens:
                    current = []
            current.append(piece)
        if current and not chunks:
            # A document that is only a title is still worth finding by its title.
            current = [replace(p, is_heading=False) for p in current]
        flush(carry=False)
        return chunks


def _char_spans(text: str) -> list[tuple[int, int]]:
    """One span per character: a tokenizer never puts fewer than one character in a token."""
    return [(i, i + 1) for i in range(len(text))]


def _starts_word(text: str, offset: int) -> bool:
    """A token at ``offset`` begins a word: after a space, or (byte-level BPE) with its space."""
    return text[offset - 1 : offset].isspace() or text[offset : offset + 1].isspace()


def default_overlap(chunk_tokens: int) -> int:
    """An eighth of the chunk, at most 32 tokens: 32 for the default 256-token chunks."""
    return min(32, chunk_tokens // 8)


def token_chunker(encoder, chunk_tokens: int, overlap: int) -> Chunker:
    """A chunker counting ``encoder``'s own tokens (offsets for run-on text where it has them)."""
    tokenizer = encoder.tokenizer

    def count(texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]

    def offsets(text: str) -> list[tuple[int, int]]:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return [tuple(span) for span in encoded["offset_mapping"]]

    fast = bool(getattr(tokenizer, "is_fast", False))
    return Chunker(count, min(chunk_tokens, encoder.max_length), overlap, offsets if fast else None)
