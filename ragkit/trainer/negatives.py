"""Hard negatives for the supervised stage, mined once per dataset and cached on disk.

Mining runs BM25 over every dataset's passages for each of its queries: minutes for a few
hundred thousand pairs (BENCHMARKS.md), which every start and every ``--resume`` would pay
again. The cache holds, per dataset, the index of each row's negative among the
dataset's distinct positives (``-1``: none mined), as JSON under ``$RAGKIT_HOME/negatives``;
its key is the dataset's rows, the mining depth, this module's format, the BM25 settings
and the versions of the BM25 library and its stemmer, so any change to what mining would
see gives a new entry.
"""

from __future__ import annotations

import json
import logging
from importlib.metadata import version
from pathlib import Path

from ragkit.bm25 import SETTINGS as BM25_SETTINGS
from ragkit.hashing import canonical_json_hash
from ragkit.trainer.pairs import Pair, PairSet

log = logging.getLogger("ragkit")

MINING_FORMAT = 1
NO_NEGATIVE = -1


def mine_negatives(pair_set: PairSet, *, depth: int = 10, cache_root: Path | None = None) -> PairSet:
    """Give every pair without a negative one hard negative.

    Another passage of the same ``group`` comes first (same source document: close in topic,
    yet not the answer); else the best BM25 match among the dataset's own passages that is
    not the positive. ``cache_root``: where mined choices are kept (None:
    ``$RAGKIT_HOME/negatives``).
    """
    if cache_root is None:
        from ragkit.encoder.cache import ragkit_home

        cache_root = ragkit_home() / "negatives"
    pairs = list(pair_set.pairs)
    mined = 0
    for name, rows in pair_set.datasets.items():
        passages = list(dict.fromkeys(pairs[i].positive for i in rows))
        path = cache_root / f"{_dataset_key(pairs, rows, depth)}.json"
        given = [bool(pairs[i].negatives) for i in rows]
        chosen = _read_cached(path, given, len(passages))
        if chosen is None:
            log.info(
                "mining hard negatives of %s (%s pairs; cached for later starts)",
                name or "pairs",
                f"{len(rows):,}",
            )
            chosen = _mine_dataset(pairs, rows, passages, depth)
            _write_cached(path, chosen)
        else:
            log.debug("hard negatives of %s: reused from %s", name or "pairs", path)
        for i, choice in zip(rows, chosen, strict=True):
            if choice != NO_NEGATIVE:
                pairs[i] = _with_negative(pairs[i], passages[choice])
                mined += 1
    return PairSet(pairs, pair_set.sources, pair_set.mined + mined)


def _dataset_key(pairs: list[Pair], rows: list[int], depth: int) -> str:
    described = {
        "format": MINING_FORMAT,
        "depth": depth,
        "bm25": {**BM25_SETTINGS, "bm25s": version("bm25s"), "PyStemmer": version("PyStemmer")},
        "rows": [[pairs[i].query, pairs[i].positive, list(pairs[i].negatives), pairs[i].group] for i in rows],
    }
    return canonical_json_hash(described)[:32]


def _read_cached(path: Path, given: list[bool], passages: int) -> list[int] | None:
    """The cached choices, or None when absent or not what this dataset needs (then rebuilt):
    one per row, a passage index or NO_NEGATIVE, and NO_NEGATIVE where the row came with its
    own negatives (those are never replaced)."""
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    chosen = body.get("negatives") if isinstance(body, dict) else None
    valid = (
        isinstance(chosen, list)
        and body.get("format") == MINING_FORMAT
        and len(chosen) == len(given)
        and all(type(c) is int and NO_NEGATIVE <= c < passages for c in chosen)
        and all(c == NO_NEGATIVE for c, has in zip(chosen, given, strict=True) if has)
    )
    return chosen if valid else None


def _write_cached(path: Path, chosen: list[int]) -> None:
    from ragkit.atomic import write_text

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps({"format": MINING_FORMAT, "negatives": chosen}))
    except OSError as exc:  # a read-only cache costs the next start a re-mine, nothing more
        log.warning("could not cache hard negatives in %s: %s", path, exc)


def _mine_dataset(pairs: list[Pair], rows: list[int], passages: list[str], depth: int) -> list[int]:
    """Each row's negative as an index into ``passages`` (NO_NEGATIVE: has one, or none found)."""
    where = {text: n for n, text in enumerate(passages)}
    groups: dict[str, list[Pair]] = {}
    answers: dict[str, set[str]] = {}
    for i in rows:
        # Every positive of a query is an answer to it: none may become its negative.
        answers.setdefault(pairs[i].query, set()).add(pairs[i].positive)
        if pairs[i].group is not None:
            groups.setdefault(pairs[i].group, []).append(pairs[i])
    chosen = {i: NO_NEGATIVE for i in rows}
    wanting = []
    for i in rows:
        if pairs[i].negatives:
            continue
        members = groups.get(pairs[i].group, []) if pairs[i].group else []
        found = _group_negative(pairs[i], members, answers[pairs[i].query])
        if found is not None:
            chosen[i] = where[found]
        else:
            wanting.append(i)
    chosen.update(_bm25_negatives(pairs, passages, wanting, depth, answers))
    return [chosen[i] for i in rows]


def _group_negative(pair: Pair, members: list[Pair], answers: set[str]) -> str | None:
    for other in members:
        if other.positive not in answers and other.positive != pair.query:
            return other.positive
    return None


def _bm25_negatives(
    pairs: list[Pair], passages: list[str], wanting: list[int], depth: int, answers: dict[str, set[str]]
) -> dict[int, int]:
    """The best BM25 passage of each wanting row that is neither an answer nor the query."""
    if not wanting or len(passages) < 2:
        return {}
    from ragkit.bm25 import bm25_run

    ids = [str(n) for n in range(len(passages))]
    run = bm25_run(ids, passages, {str(i): pairs[i].query for i in wanting}, k=depth)
    found = {}
    for i in wanting:
        ranked = sorted(run.get(str(i), {}).items(), key=lambda kv: -kv[1])
        for doc, _ in ranked:
            text = passages[int(doc)]
            if text not in answers[pairs[i].query] and text != pairs[i].query:
                found[i] = int(doc)
                break
    return found


def _with_negative(pair: Pair, negative: str) -> Pair:
    return Pair(pair.query, pair.positive, (negative,), pair.instruction, pair.group, pair.dataset)
