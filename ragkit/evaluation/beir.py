"""Load BEIR-layout retrieval datasets, with errors that name the file and line.

Layout: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``)
and ``qrels/<split>.tsv`` (header, then ``query-id corpus-id score``); each may be gzipped.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ragkit.errors import RagkitError

log = logging.getLogger("ragkit")


class DatasetError(RagkitError):
    """A dataset folder is missing files or holds malformed lines."""


@dataclass
class BeirDataset:
    """A retrieval benchmark: documents, queries and graded relevance judgments."""

    name: str
    split: str
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def judged_docs(self) -> set[str]:
        return {doc for judgments in self.qrels.values() for doc in judgments}


def _find(folder: Path, relative: str) -> Path:
    for candidate in (folder / relative, folder / f"{relative}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetError(
        f"{folder / relative} not found (nor .gz); expected BEIR layout: "
        "corpus.jsonl, queries.jsonl, qrels/<split>.tsv"
    )


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    yield number, line
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None


def _jsonl(path: Path, fields: tuple[str, ...]) -> Iterator[dict]:
    for number, line in _lines(path):
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DatasetError(f"{path.name} line {number}: not valid JSON ({exc})") from None
        if not isinstance(record, dict) or any(f not in record for f in fields):
            raise DatasetError(f"{path.name} line {number}: needs the fields {', '.join(fields)}")
        yield record


def document_text(record: dict) -> str:
    """Title and body joined by a space, as BEIR's and MTEB's dense evaluations do."""
    return f"{record.get('title') or ''} {record['text'] or ''}".strip()


def load_beir(folder: str | Path, split: str = "test") -> BeirDataset:
    """Read a BEIR dataset; qrels naming unknown queries or documents are counted and dropped."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"dataset folder {folder} does not exist")
    corpus_path = _find(folder, "corpus.jsonl")
    queries_path = _find(folder, "queries.jsonl")
    qrels_path = _find(folder, f"qrels/{split}.tsv")
    corpus = {str(r["_id"]): document_text(r) for r in _jsonl(corpus_path, ("_id", "text"))}
    queries = {str(r["_id"]): str(r["text"]) for r in _jsonl(queries_path, ("_id", "text"))}

    qrels: dict[str, dict[str, int]] = {}
    dropped = {"unknown_queries": 0, "unknown_docs": 0}
    for number, line in _lines(qrels_path):
        parts = line.rstrip("\n").split("\t")
        if number == 1 and parts[0] in ("query-id", "query_id", "qid"):
            continue
        if len(parts) != 3:
            raise DatasetError(f"{qrels_path.name} line {number}: expected 3 tab-separated columns")
        query_id, doc_id, score = parts
        try:
            relevance = int(float(score))
        except ValueError:
            raise DatasetError(f"{qrels_path.name} line {number}: score {score!r} is not a number") from None
        if query_id not in queries:
            dropped["unknown_queries"] += 1
            continue
        if doc_id not in corpus:
            dropped["unknown_docs"] += 1
            continue
        qrels.setdefault(query_id, {})[doc_id] = relevance
    for kind, count in dropped.items():
        if count:
            log.warning("%s: dropped %d judgments naming %s", qrels_path.name, count, kind.replace("_", " "))
    qrels = {q: docs for q, docs in qrels.items() if any(r > 0 for r in docs.values())}
    if not qrels:
        raise DatasetError(f"{qrels_path} has no usable relevance judgments")
    used_queries = {q: queries[q] for q in qrels}
    return BeirDataset(folder.name, split, corpus, used_queries, qrels, dropped)


def subsample(dataset: BeirDataset, max_docs: int, seed: int = 0) -> BeirDataset:
    """Keep every judged document plus a seeded random sample of the rest, ``max_docs`` in all."""
    if max_docs < 1:
        raise DatasetError("--max-docs must be positive")
    judged = dataset.judged_docs
    if len(dataset.corpus) <= max_docs:
        return dataset
    if len(judged) >= max_docs:
        log.warning("%d judged documents exceed --max-docs %d; keeping all judged", len(judged), max_docs)
    others = sorted(d for d in dataset.corpus if d not in judged)
    extra = random.Random(seed).sample(others, max(0, max_docs - len(judged)))
    keep = judged | set(extra)
    corpus = {d: t for d, t in dataset.corpus.items() if d in keep}
    return BeirDataset(dataset.name, dataset.split, corpus, dataset.queries, dataset.qrels, dataset.dropped)
