"""The grounded-answer prompt and the citation check.

The model sees numbered passages and is told to answer only from them. Whatever it writes,
a citation of a passage it was not given ("[7]" when it got three) is removed before the
user sees it and reported, so a citation always points at a passage on screen.
"""

from __future__ import annotations

import re

SYSTEM = (
    "You answer questions using only the numbered passages you are given. Cite the passages "
    "you use as [1], [2] and so on. If the passages do not contain the answer, say so. "
    "Answer in at most three sentences."
)
_CITATION = re.compile(r"\[(\d+)\]")


def build_messages(question: str, passages: list[str], max_chars: int = 1200) -> list[dict]:
    """Chat messages for any chat model; the model's own template formats them."""
    numbered = "\n\n".join(f"[{i}] {p[:max_chars]}" for i, p in enumerate(passages, start=1))
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Passages:\n\n{numbered}\n\nQuestion: {question}"},
    ]


def cited(text: str) -> list[int]:
    return [int(n) for n in _CITATION.findall(text)]


def keep_valid_citations(text: str, count: int) -> tuple[str, list[int]]:
    """Drop citations outside 1..count; returns the cleaned text and what was dropped."""
    dropped: list[int] = []

    def check(match: re.Match) -> str:
        number = int(match.group(1))
        if 1 <= number <= count:
            return match.group(0)
        dropped.append(number)
        return ""

    return _CITATION.sub(check, text), dropped


class CitationFilter:
    """Streams text through, holding back only a possibly unfinished "[12" at the end."""

    def __init__(self, count: int):
        self.count = count
        self.pending = ""
        self.dropped: list[int] = []

    def feed(self, piece: str) -> str:
        text = self.pending + piece
        cut = text.rfind("[")
        if cut != -1 and "]" not in text[cut:] and len(text) - cut <= 6:
            text, self.pending = text[:cut], text[cut:]
        else:
            self.pending = ""
        clean, dropped = keep_valid_citations(text, self.count)
        self.dropped += dropped
        return clean

    def flush(self) -> str:
        clean, dropped = keep_valid_citations(self.pending, self.count)
        self.dropped += dropped
        self.pending = ""
        return clean
