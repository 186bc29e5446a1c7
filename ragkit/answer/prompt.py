"""The grounded-answer prompt and the citation check.

The model sees numbered passages and is told to answer only from them. Whatever it writes,
a citation of a passage it was not given ("[7]" when it got three, also inside "[2, 7]" or
"[2-7]") is removed before the user sees it and reported, so a citation always points at a
passage on screen.
"""

from __future__ import annotations

import re

SYSTEM = (
    "You answer questions using only the numbered passages you are given. Cite the passages "
    "you use as [1], [2] and so on. If the passages do not contain the answer, say so. "
    "Answer in at most three sentences."
)
_CITATION = re.compile(r"\[(\d+(?:\s*[,;\-\u2013]\s*\d+)*)\]")
"""[3], and groups and ranges as models write them: [1, 7], [2;5], [9-12], [9\u201312]."""
_LONGEST_RANGE = 50


def build_messages(question: str, passages: list[str], max_chars: int = 1200) -> list[dict]:
    """Chat messages for any chat model; the model's own template formats them."""
    numbered = "\n\n".join(f"[{i}] {p[:max_chars]}" for i, p in enumerate(passages, start=1))
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Passages:\n\n{numbered}\n\nQuestion: {question}"},
    ]


def _numbers(group: str) -> list[int]:
    """Every passage number a citation group names, ranges spelled out."""
    numbers: list[int] = []
    for part in re.split(r"\s*[,;]\s*", group):
        ends = [int(n) for n in re.split(r"\s*[\-\u2013]\s*", part)]
        low, high = ends[0], ends[-1]
        if high < low or high - low > _LONGEST_RANGE:
            numbers += ends  # not a range a model means: each end is checked on its own
        else:
            numbers += range(low, high + 1)
    return numbers


def citation_numbers(text: str) -> list[int]:
    """Every passage number the citations in ``text`` name, in order, ranges spelled out."""
    return [n for match in _CITATION.finditer(text) for n in _numbers(match.group(1))]


_SPACE_BEFORE_STOP = re.compile(r"\s+([.,;:])(?=\s|$)")


def tidy(text: str) -> str:
    """Single spaces, none before a closing full stop or comma (where a citation was taken
    out); "./docs" and ".md" keep theirs."""
    return _SPACE_BEFORE_STOP.sub(r"\1", " ".join(text.split()))


def strip_citations(text: str) -> str:
    """``text`` without its citation marks."""
    return tidy(_CITATION.sub(" ", text))


def keep_valid_citations(text: str, count: int) -> tuple[str, list[int]]:
    """Keep citations of passages 1..count; returns the cleaned text and what was dropped.

    A group keeps its valid numbers ("[2, 7]" with three passages becomes "[2]") and
    disappears when none is valid.
    """
    dropped: list[int] = []

    def check(match: re.Match) -> str:
        numbers = _numbers(match.group(1))
        valid = [n for n in numbers if 1 <= n <= count]
        dropped.extend(n for n in numbers if not 1 <= n <= count)
        if len(valid) == len(numbers):
            return match.group(0)
        return f"[{', '.join(map(str, sorted(set(valid))))}]" if valid else ""

    return _CITATION.sub(check, text), dropped
