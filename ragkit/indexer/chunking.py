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

    def __init__(self, count: Callable[[list[str]], list[int]], max_tokens: int = 256, overlap: int = 32):
        if max_tokens < 8:
            raise InvalidInputError(f"--chunk-tokens must be at least 8, got {max_tokens}")
        if not 0 <= overlap < max_tokens // 2:
            raise InvalidInputError(f"--overlap must be between 0 and half of --chunk-tokens, got {overlap}")
        self.count, self.max_tokens, self.overlap = count, max_tokens, overlap

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
        """A run-on text cut into word windows that fit (words, so no token is split in two)."""
        words = text.split()
        out, current = [], []
        for word in words:
            current.append(word)
            if len(current) > 1 and self.count([" ".join(current)])[0] > self.max_tokens:
                current.pop()
                out.append(" ".join(current))
                current = [word]
        if current:
            out.append(" ".join(current))
        return out

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
