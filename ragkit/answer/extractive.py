"""Extractive answers: the sentences of the retrieved passages that best answer the query.

Every word of such an answer is a passage's own, so it cannot invent anything. A sentence is
scored by the encoder (the query, with its instruction, against the sentence) plus the
share of the query's content words it contains; the best few, kept in the order the passages
and sentences come in, form the answer, each with its citation. Below a threshold the answer
says that the documents do not seem to answer the question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ragkit.answer.words import content_words, overlap
from ragkit.documents.sentences import split_sentences

LEXICAL_WEIGHT = 1.0
"""Weight of query-word overlap next to the cosine (chosen on the dev questions, EVAL.md)."""
ANSWER_THRESHOLD = 0.9
"""Below this best score the documents are taken not to answer (dev questions, EVAL.md)."""
LONG_SENTENCE = 40
"""Words beyond which a sentence's query-word share is discounted in proportion: a long
sentence holds many words by chance (dev questions, EVAL.md)."""
MAX_SENTENCES = 3
"""The answer is the best three sentences: the fact is often beside the best-scoring one."""
MIN_WORDS = 3


@dataclass(frozen=True)
class Sentence:
    """A sentence of a passage: its text, the hit it came from (1-based) and where in it."""

    text: str
    passage: int
    position: int


@dataclass
class ScoredSentences:
    sentences: list[Sentence]
    vectors: np.ndarray
    scores: np.ndarray


_TABLE_ROW_BREAK = re.compile(r"\|\s+\|")


def _units(block: str) -> list[str]:
    """A prose block's sentences; a code block's lines and a table's rows (each stands alone)."""
    if "\n" in block.strip():
        return [" ".join(line.split()) for line in block.splitlines() if line.strip()]
    text = " ".join(block.split())
    if text.startswith("|"):  # a Markdown table, stored on one line: "| a | b | | c | d |"
        rows = [row.strip(" |") for row in _TABLE_ROW_BREAK.split(text)]
        return [row for row in rows if row and set(row) - set("-|: ")]
    return split_sentences(text)


def passage_sentences(hits) -> list[Sentence]:
    """The sentences of each hit's text (blocks first, then sentence ends or lines), in order;
    its section titles are not sentences."""
    found: list[Sentence] = []
    for number, hit in enumerate(hits, start=1):
        position = 0
        titles = set(hit.heading.split(" > ")) if hit.heading else set()
        for block in re.split(r"\n\s*\n", hit.text):
            for sentence in _units(block):
                if len(sentence.split()) >= MIN_WORDS and sentence not in titles:
                    found.append(Sentence(sentence, number, position))
                    position += 1
    return found


def _length_discount(text: str) -> float:
    return min(1.0, LONG_SENTENCE / len(text.split()))


def score_sentences(query: str, hits, encoder) -> ScoredSentences:
    """Each sentence's cosine to the query plus the weighted share of query words it holds."""
    sentences = passage_sentences(hits)
    if not sentences:
        return ScoredSentences([], np.zeros((0, encoder.dimension), np.float32), np.zeros(0))
    query_vector = encoder.encode_queries([query], show_progress=False)[0]
    vectors = encoder.encode_documents([s.text for s in sentences], show_progress=False, warn_truncated=False)
    asked = content_words(query)
    lexical = np.array([overlap(asked, content_words(s.text)) * _length_discount(s.text) for s in sentences])
    return ScoredSentences(sentences, vectors, vectors @ query_vector + LEXICAL_WEIGHT * lexical)


def choose(scored: ScoredSentences) -> list[Sentence]:
    """The ``MAX_SENTENCES`` best sentences in reading order; none when even the best is
    below ``ANSWER_THRESHOLD``."""
    if not scored.sentences or float(scored.scores.max()) < ANSWER_THRESHOLD:
        return []
    order = np.argsort(-scored.scores, kind="stable")[:MAX_SENTENCES]
    return sorted((scored.sentences[i] for i in order), key=lambda s: (s.passage, s.position))
