"""The check a generated answer passes before anyone sees it.

A small chat model writes fluent text that its passages do not say. Each sentence of a
generated answer must cite a passage it was given, and be supported by one it cites: enough
of its content words appear in that passage, and the encoder finds a sentence of that
passage close to it. URLs, file paths, numbers and names that appear in no passage are
invented by definition; a sentence carrying one is removed. What is removed is counted, so
the user is told, and an answer of which nothing survives gives way to the extractive one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ragkit.answer.extractive import ScoredSentences
from ragkit.answer.prompt import citation_numbers, keep_valid_citations, strip_citations, tidy
from ragkit.answer.words import content_words, overlap
from ragkit.documents.sentences import split_sentences

SUPPORT_OVERLAP = 0.6
"""Share of a sentence's content words that the cited passage must contain. Chosen on the
dev questions (EVAL.md): hand-written faithful paraphrases reach 0.67 and more, SmolLM2's
unsupported sentences stay under 0.36 in nine cases out of ten."""
SUPPORT_SIMILARITY = 0.45
"""Cosine a sentence needs to its closest sentence in the cited passage (the paraphrases
reach 0.47 and more; on its own the cosine does not tell them from unsupported text)."""

_LATE_CITATION = re.compile(r"([.!?])\s*(\[\d[\d,;\-\u2013\s]*\])")
"""A citation written after the full stop ("... vectors. [1] It ...") cites the sentence before."""
_URL = re.compile(r"(?:https?://|www\.)[^\s)\]>'\"]+", re.IGNORECASE)
_PATH = re.compile(
    r"(?<![\w@])(?:[\w.\-~]+/)+[\w.\-]+|\b[\w\-]+\.(?:md|py|txt|rst|html?|json|ya?ml|toml|sh|cfg|ini|pdf)\b"
)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?![\w])")
_NAME = re.compile(r"(?<=[a-z,;:] )[A-Z][\w\-]*[a-zA-Z0-9]|\b[a-z]+[A-Z]\w*\b")


def move_late_citations(text: str) -> str:
    """Put a citation written after a full stop back on the sentence it cites."""
    return _LATE_CITATION.sub(r" \2\1", text)


@dataclass
class Checked:
    """What survived the check, and what was taken out."""

    sentences: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    invented: list[str] = field(default_factory=list)


def invented_terms(sentence: str, passages_text: str) -> list[str]:
    """URLs, paths, numbers and names in ``sentence`` that no passage contains."""
    haystack = passages_text.lower()
    found = []
    text = strip_citations(sentence)
    for pattern in (_URL, _PATH, _NUMBER, _NAME):
        for match in pattern.finditer(text):
            term = match.group(0).rstrip(".,;:")
            if term and term.lower() not in haystack and term not in found:
                found.append(term)
        text = pattern.sub(" ", text)  # a URL's parts are not checked again as paths or numbers
    return found


class GroundingCheck:
    """Checks sentences of a generated answer against the hits it was written from."""

    def __init__(self, hits, encoder, scored: ScoredSentences):
        self.hits, self.encoder = hits, encoder
        self.passage_words = [content_words(h.text) for h in hits]
        self.passages_text = "\n".join(h.text for h in hits)
        self.sentences, self.vectors = scored.sentences, scored.vectors

    def supported(self, sentence: str) -> bool:
        """Cites a given passage that contains enough of its words and a close sentence."""
        cited = [n for n in citation_numbers(sentence) if 1 <= n <= len(self.hits)]
        bare = strip_citations(sentence)
        words = content_words(bare)
        candidates = [n for n in cited if overlap(words, self.passage_words[n - 1]) >= SUPPORT_OVERLAP]
        if not candidates:
            return False
        vector = self.encoder.encode_documents([bare], show_progress=False, warn_truncated=False)[0]
        for number in candidates:
            rows = [i for i, s in enumerate(self.sentences) if s.passage == number]
            if rows and float(np.max(self.vectors[rows] @ vector)) >= SUPPORT_SIMILARITY:
                return True
        return False

    def check(self, text: str, result: Checked | None = None) -> Checked:
        """Keep the sentences of ``text`` that are supported and invent nothing."""
        result = result if result is not None else Checked()
        for sentence in split_sentences(move_late_citations(text)):
            sentence = tidy(keep_valid_citations(sentence, len(self.hits))[0])
            invented = invented_terms(sentence, self.passages_text)
            if invented or not self.supported(sentence):
                result.removed.append(sentence)
                result.invented += [t for t in invented if t not in result.invented]
            else:
                result.sentences.append(sentence)
        return result
