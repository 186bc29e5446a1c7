"""A labelled test set made from a folder of documents' own structure.

A user's documents come with no queries and no relevance judgments, but with sections: each
titled section is a passage, and two kinds of query point at it. A *heading* query is the
section's title (its heading path when the title alone has fewer than three words); a
*cloze* query is one sentence drawn from inside the section, which is then taken out of the
passage (the inverse cloze task of Lee et al., 2019), so that no query is found by copying
its own words. Headings are short and share the passage's vocabulary, which favours lexical
matching; cloze sentences favour models that understand a paraphrase.

Which sections are evaluated is decided by a seeded hash of the document and heading, not by
a file: ``ragkit train --corpus`` on the same documents recomputes it and leaves those
sections out of training.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from ragkit.documents.sentences import split_sentences
from ragkit.evaluation.beir import BeirDataset, DatasetError

EVAL_SHARE = 0.2
"""The share of sections held out for evaluation."""
MIN_CLOZE_WORDS = 6
MIN_SECTION_SENTENCES = 3
"""A cloze query needs a section that still says something once the sentence is out."""


def held_out(document: str, heading: str, seed: int = 0) -> bool:
    """Whether the section ``heading`` of ``document`` belongs to the evaluation."""
    digest = hashlib.sha256(f"{seed}\x00{document}\x00{heading}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < EVAL_SHARE


def _heading_query(heading: str) -> str:
    title = heading.split(" > ")[-1]
    return title if len(title.split()) >= 3 else heading


def _cloze(body: str, rng: random.Random) -> tuple[str, str] | None:
    """A sentence of ``body`` and the body without it, or None when the section is too short."""
    sentences = split_sentences(body)
    candidates = [s for s in sentences if len(s.split()) >= MIN_CLOZE_WORDS]
    if len(sentences) < MIN_SECTION_SENTENCES or not candidates:
        return None
    chosen = rng.choice(candidates)
    return chosen, " ".join(s for s in sentences if s != chosen)


def documents_dataset(folder: Path, *, seed: int = 0) -> BeirDataset:
    """Sections of the documents in ``folder`` as a corpus, with heading and cloze queries."""
    from ragkit.errors import InvalidInputError
    from ragkit.trainer.corpus import load_corpus

    try:
        sections = load_corpus(folder).titled
    except InvalidInputError:
        sections = []
    if not sections:
        raise DatasetError(
            f"{folder} is not a BEIR dataset (corpus.jsonl, queries.jsonl, qrels/) and holds no "
            "documents with titled sections to make test queries from"
        )
    repeated: dict[str, int] = {}
    for heading, _, _ in sections:
        repeated[heading.casefold()] = repeated.get(heading.casefold(), 0) + 1
    rng = random.Random(seed)
    corpus: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for number, (heading, body, document) in enumerate(sections):
        doc_id = f"{document}#{number}"
        corpus[doc_id] = body
        if not held_out(document, heading, seed):
            continue
        heading_query = _heading_query(heading)
        if repeated[heading.casefold()] == 1:
            corpus[doc_id] = body.replace(heading_query, " ").strip() or body
            queries[f"heading:{doc_id}"] = heading_query
            qrels[f"heading:{doc_id}"] = {doc_id: 1}
        cloze = _cloze(corpus[doc_id], rng)
        if cloze is not None:
            queries[f"cloze:{doc_id}"], corpus[doc_id] = cloze
            qrels[f"cloze:{doc_id}"] = {doc_id: 1}
    if not qrels:
        raise DatasetError(
            f"{folder} has too few sections for a test set ({len(sections)}; about "
            f"{EVAL_SHARE:.0%} of them become queries)"
        )
    return BeirDataset(f"{folder.name} (pseudo-queries)", "pseudo", corpus, queries, qrels)


def is_documents_folder(path: Path) -> bool:
    """A folder of documents rather than a BEIR dataset (which has a corpus.jsonl)."""
    return path.is_dir() and not any(path.glob("corpus.jsonl*"))
