"""Content words of a text, stemmed: what lexical overlap between a question, a sentence
and a passage is counted in."""

from __future__ import annotations

import functools
import re

_WORD = re.compile(r"[a-z0-9][a-z0-9_\-\.@/]*[a-z0-9]|[a-z0-9]")
_STOPWORDS = frozenset(
    """a an and are as at be by can do does for from has have how i if in is it its of on or
    that the their then there these this to was what when where which who why will with you
    your my me we our they them so not no yes into out up about than too very just also get
    should would could may might must shall one""".split()
)


@functools.lru_cache(maxsize=1)
def _stemmer():
    try:
        import Stemmer  # PyStemmer, which bm25s already brings

        return Stemmer.Stemmer("english").stemWord
    except ImportError:
        return lambda word: word


def content_words(text: str) -> set[str]:
    """Lower-cased, stemmed words of ``text`` without stopwords (options like --include stay whole)."""
    stem = _stemmer()
    return {stem(w) for w in _WORD.findall(text.lower()) if w not in _STOPWORDS}


def overlap(part: set[str], whole: set[str]) -> float:
    """The share of ``part``'s words that ``whole`` contains (0 when ``part`` is empty)."""
    return len(part & whole) / len(part) if part else 0.0
