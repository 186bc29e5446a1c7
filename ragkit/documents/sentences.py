"""Sentence boundaries, shared by the chunker and SimCSE's training views.

A punctuation-plus-capital rule: it misses abbreviations like "e.g. Foo", which only ever
makes a piece longer, never loses text, and needs no language model at import time.
"""

from __future__ import annotations

import re

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped, empty ones dropped."""
    return [s.strip() for s in SENTENCE_END.split(text) if s.strip()]
