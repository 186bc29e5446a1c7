"""A labelled test set made from a folder of documents' own structure.

A user's documents come with no queries and no relevance judgments, but with sections: each
titled section is a passage, and two kinds of query point at it. A *heading* query is the
section's title (its heading path when the title alone has fewer than three words); a
*cloze* query is one sentence drawn from inside the section, which is then taken out of the
passage (the inverse cloze task of Lee et al., 2019), so that no query is found by copying
its own words. Headings are short and share the passage's vocabulary, which favours lexical
matching; cloze sentences favour models that understand a paraphrase.

A folder without a single heading (plain notes) gets cloze queries only, over runs of
consecutive paragraphs, and says so. Which sections are evaluated is decided by a seeded hash
of the document and heading (:mod:`ragkit.documents.holdout`), not by a file: ``ragkit train
--corpus`` on the same documents recomputes it and leaves those sections out of training.
"""

from __future__ import annotations

import random
from pathlib import Path

from ragkit.documents.holdout import EVAL_SHARE, held_out
from ragkit.documents.sentences import split_sentences
from ragkit.evaluation.beir import BeirDataset, DatasetError

__all__ = ["EVAL_SHARE", "MEANINGFUL_QUERIES", "documents_dataset", "held_out", "is_documents_folder"]
MIN_CLOZE_WORDS = 6
MIN_SECTION_SENTENCES = 3
"""A cloze query needs a section that still says something once the sentence is out."""
MEANINGFUL_QUERIES = 30
"""Below this many queries one query moves nDCG@10 by over 3 points: differences are noise."""


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
    """Sections of the documents in ``folder`` as a corpus, with heading and cloze queries;
    for an index folder, of the documents in its source folders (named as in the index)."""
    sources = index_source_folders(folder)
    if sources is None:
        return _sections_dataset(folder, seed)
    parts = [(label, _sections_dataset(path, seed)) for label, path in sources]
    if len(parts) == 1:
        return BeirDataset(f"{folder.name} (pseudo-queries)", "pseudo", *_tables(parts[0][1]))
    corpus, queries, qrels = {}, {}, {}
    for label, part in parts:
        corpus.update({f"{label}/{d}": text for d, text in part.corpus.items()})
        queries.update({_labelled(label, q): text for q, text in part.queries.items()})
        qrels.update(
            {
                _labelled(label, q): {f"{label}/{d}": g for d, g in rel.items()}
                for q, rel in part.qrels.items()
            }
        )
    return BeirDataset(f"{folder.name} (pseudo-queries)", "pseudo", corpus, queries, qrels)


def _tables(dataset: BeirDataset) -> tuple[dict, dict, dict]:
    return dataset.corpus, dataset.queries, dataset.qrels


def _labelled(label: str, query_id: str) -> str:
    kind, _, doc_id = query_id.partition(":")
    return f"{kind}:{label}/{doc_id}"


def index_source_folders(path: Path) -> list[tuple[str, Path]] | None:
    """(label, folder) of each source folder of the index at ``path``; None when it is no index."""
    from ragkit.indexer import store
    from ragkit.indexer.sources import recorded_sources

    if not (path / store.DB_NAME).is_file():
        return None
    db = store.connect(path, readonly=True)
    try:
        sources = recorded_sources(store.get_meta(db)).items
    finally:
        db.conn.close()
    folders = [(s.label, Path(s.path)) for s in sources if s.kind == "folder" and Path(s.path).is_dir()]
    if not folders:
        raise DatasetError(
            f"the index at {path} has no source folder that still exists to make test queries from"
        )
    return folders


def _sections_dataset(folder: Path, seed: int) -> BeirDataset:
    from ragkit.errors import InvalidInputError
    from ragkit.trainer.corpus import load_corpus

    try:
        corpus = load_corpus(folder)
    except InvalidInputError:
        corpus = None
    sections = corpus.titled if corpus is not None else []
    if not sections and corpus is not None and corpus.untitled:
        return _cloze_dataset(folder, corpus.untitled, seed)
    if not sections:
        raise DatasetError(
            f"{folder} is not a BEIR dataset (corpus.jsonl, queries.jsonl, qrels/) and holds no "
            "documents with text to make test queries from"
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


def _cloze_dataset(folder: Path, units: list[tuple[str, str, str]], seed: int) -> BeirDataset:
    """Cloze queries from runs of paragraphs, for documents that have no headings at all."""
    rng = random.Random(seed)
    corpus: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for number, (key, body, document) in enumerate(units):
        doc_id = f"{document}#{number}"
        corpus[doc_id] = body
        cloze = _cloze(body, rng) if held_out(document, key, seed) else None
        if cloze is not None:
            queries[f"cloze:{doc_id}"], corpus[doc_id] = cloze
            qrels[f"cloze:{doc_id}"] = {doc_id: 1}
    if not qrels:
        raise DatasetError(
            f"{folder} has no headings and too little text for a test set: {len(units)} runs of "
            f"paragraphs, about {EVAL_SHARE:.0%} of which would become cloze queries, and none of "
            f"those had {MIN_SECTION_SENTENCES}+ sentences"
        )
    return BeirDataset(f"{folder.name} (cloze queries only)", "pseudo", corpus, queries, qrels)


def is_documents_folder(path: Path) -> bool:
    """A folder of documents rather than a BEIR dataset (which has a corpus.jsonl)."""
    return path.is_dir() and not any(path.glob("corpus.jsonl*"))
