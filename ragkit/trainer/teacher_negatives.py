"""Hard negatives chosen by the teacher rather than by BM25.

A BM25 negative shares the query's words; a dense teacher's nearest passage shares its meaning,
which is what a dense student confuses. The teacher takes, for each query, the passage it ranks
highest that is not an answer and scores below ``FALSE_NEGATIVE_MARGIN`` of the query's positive
(positive-aware mining, NV-Retriever 2024): above that margin a passage is more likely an
unlabelled answer than a negative.

Only the rows a run will draw are mined (the batch order is a function of the seed and the
mixture), against a seeded sample of each dataset's passages plus the drawn rows' own
positives, so the teacher encodes far fewer texts than every passage of every set. The choices
are published once per (teacher, rows, settings) under ``$RAGKIT_HOME/negatives``: every process
of a run and every ``--resume`` trains on the same negatives, whatever the last bits of the
teacher's vectors on each of them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ragkit.hashing import canonical_json_hash
from ragkit.trainer.pairs import Pair, PairBatches, PairSet
from ragkit.trainer.teacher import Teacher, below_margin

log = logging.getLogger("ragkit")

MINING_FORMAT = 1
POOL_SIZE = 8192
"""Passages per dataset the teacher searches (a seeded sample, plus the drawn rows' positives)."""
DEPTH = 64
"""How far down the teacher's ranking a query looks for a passage that passes the margin."""
BLOCK = 2048
"""Queries scored against the pool at a time (bounds memory at BLOCK x pool floats)."""

Progress = Callable[[str, int, int], None]
"""Called with (what, done, total) while the teacher encodes."""


def drawn_rows(pair_set: PairSet, *, batch_size: int, seed: int, mixture, steps: int) -> set[int]:
    """The rows the supervised stage's first ``steps`` batches hold, for every process."""
    order = PairBatches(pair_set, batch_size, seed, mixture)
    return {row for step in range(steps) for row in order.rows(step)}


def mine_with_teacher(
    pair_set: PairSet,
    teacher: Teacher,
    rows: set[int],
    *,
    pool_size: int = POOL_SIZE,
    seed: int = 0,
    cache_root: Path | None = None,
    on_progress: Progress | None = None,
) -> PairSet:
    """Give each of ``rows`` that has no negative the teacher's nearest passage that is not an
    answer and passes the margin (none when no passage within ``DEPTH`` does).

    ``cache_root``: where choices are published (None: ``$RAGKIT_HOME/negatives``)."""
    pairs = list(pair_set.pairs)
    mined = 0
    for name, dataset_rows in pair_set.datasets.items():
        wanting = [i for i in dataset_rows if i in rows and not pairs[i].negatives]
        if not wanting:
            continue
        path = _choices_path(cache_root, pairs, dataset_rows, wanting, teacher.identity, pool_size, seed)
        found = _read_choices(path, wanting)
        if found is None:
            pool = _passage_pool(pairs, dataset_rows, wanting, pool_size, seed)
            log.info("teacher mining %s: %s queries, %s passages", name or "pairs", len(wanting), len(pool))
            found = _nearest_negatives(pairs, dataset_rows, wanting, pool, teacher, name, on_progress)
            found = _publish(path, found, wanting)
        for i, text in found.items():
            p = pairs[i]
            pairs[i] = Pair(p.query, p.positive, (text,), p.instruction, p.group, p.dataset)
        mined += len(found)
    return PairSet(pairs, pair_set.sources, pair_set.mined + mined)


def _passage_pool(
    pairs: list[Pair], dataset_rows: list[int], wanting: list[int], size: int, seed: int
) -> list[str]:
    """A seeded sample of the dataset's distinct positives, plus the wanting rows' own."""
    distinct = list(dict.fromkeys(pairs[i].positive for i in dataset_rows))
    if len(distinct) > size:
        picked = np.random.default_rng([seed, len(distinct)]).choice(len(distinct), size, replace=False)
        distinct = [distinct[j] for j in sorted(picked.tolist())]
    return list(dict.fromkeys(distinct + [pairs[i].positive for i in wanting]))


def _nearest_negatives(
    pairs: list[Pair],
    dataset_rows: list[int],
    wanting: list[int],
    pool: list[str],
    teacher: Teacher,
    name: str,
    on_progress: Progress | None,
) -> dict[int, str]:
    answers: dict[str, set[str]] = {}
    for i in dataset_rows:
        answers.setdefault(pairs[i].query, set()).add(pairs[i].positive)
    passages = teacher.vectors(
        pool, query=False, on_progress=_reporter(on_progress, f"{name} passages", len(pool))
    )
    queries = list(dict.fromkeys(pairs[i].query for i in wanting))
    query_vectors = teacher.vectors(
        queries, query=True, on_progress=_reporter(on_progress, f"{name} queries", len(queries))
    )
    where = {text: n for n, text in enumerate(pool)}
    asked = {text: n for n, text in enumerate(queries)}
    depth = min(DEPTH, len(pool))
    found = {}
    for start in range(0, len(wanting), BLOCK):
        block = wanting[start : start + BLOCK]
        scores = query_vectors[[asked[pairs[i].query] for i in block]] @ passages.T
        positive = scores[np.arange(len(block)), [where[pairs[i].positive] for i in block]]
        top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
        for row, i in enumerate(block):
            excluded = answers[pairs[i].query] | {pairs[i].query}
            ranked = top[row][np.argsort(-scores[row, top[row]], kind="stable")]
            for column in ranked:
                if pool[column] not in excluded and below_margin(scores[row, column], positive[row]):
                    found[i] = pool[column]
                    break
    return found


def _choices_path(
    cache_root: Path | None,
    pairs: list[Pair],
    dataset_rows: list[int],
    wanting: list[int],
    teacher: str,
    pool_size: int,
    seed: int,
) -> Path:
    if cache_root is None:
        from ragkit.encoder.cache import ragkit_home

        cache_root = ragkit_home() / "negatives"
    described = {
        "format": MINING_FORMAT,
        "miner": "teacher",
        "teacher": teacher,
        "pool": pool_size,
        "depth": DEPTH,
        "seed": seed,
        "rows": [[pairs[i].query, pairs[i].positive, pairs[i].group] for i in dataset_rows],
        "wanting": _positions(dataset_rows, wanting),
    }
    return cache_root / f"teacher-{canonical_json_hash(described)[:32]}.json"


def _positions(dataset_rows: list[int], wanting: list[int]) -> list[int]:
    place = {row: n for n, row in enumerate(dataset_rows)}
    return [place[i] for i in wanting]


def _read_choices(path: Path, wanting: list[int]) -> dict[int, str] | None:
    """Published choices by row, or None when absent or not for these rows."""
    try:
        return _parse_choices(path.read_text(encoding="utf-8"), wanting)
    except OSError:
        return None


def _parse_choices(text: str, wanting: list[int]) -> dict[int, str] | None:
    try:
        body = json.loads(text)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    chosen = body.get("negatives")
    if body.get("format") != MINING_FORMAT or not isinstance(chosen, list) or len(chosen) != len(wanting):
        return None
    if not all(c is None or isinstance(c, str) for c in chosen):
        return None
    return {i: text for i, text in zip(wanting, chosen, strict=True) if text is not None}


def _publish(path: Path, found: dict[int, str], wanting: list[int]) -> dict[int, str]:
    """Publish ``found`` unless another process did first; returns the published choices."""
    from ragkit.atomic import write_text_once

    body = json.dumps({"format": MINING_FORMAT, "negatives": [found.get(i) for i in wanting]})
    try:
        published = write_text_once(path, body)
    except OSError as exc:  # a read-only cache: this process's own choices, not shared
        log.warning("could not publish teacher negatives in %s: %s", path, exc)
        return found
    return _parse_choices(published, wanting) or found


def _reporter(on_progress: Progress | None, what: str, total: int) -> Callable[[int], None] | None:
    if on_progress is None:
        return None
    done = [0]

    def advance(count: int) -> None:
        done[0] += count
        on_progress(what, done[0], total)

    return advance
