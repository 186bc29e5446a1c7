"""Hard negatives chosen by the teacher rather than by BM25.

A BM25 negative shares the query's words; a dense teacher's nearest passage shares its meaning,
which is what a dense student confuses. The teacher takes, for each query, the passage it ranks
highest that is not an answer and scores below ``FALSE_NEGATIVE_MARGIN`` of the query's positive
(positive-aware mining, NV-Retriever 2024): above that margin a passage is more likely an
unlabelled answer than a negative.

Only the rows a run will draw are mined (the batch order is a function of the seed and the
mixture), against a seeded sample of each dataset's passages, so the teacher encodes thousands
of texts rather than every passage of every set; its vectors are cached like the ones it
distils, so a resumed run re-encodes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from ragkit.trainer.pairs import Pair, PairBatches, PairSet
from ragkit.trainer.teacher import FALSE_NEGATIVE_MARGIN, Teacher

log = logging.getLogger("ragkit")

POOL_SIZE = 8192
"""Passages per dataset the teacher searches (a seeded sample, plus the drawn rows' positives)."""
DEPTH = 64
"""How far down the teacher's ranking a query looks for a passage that passes the margin."""

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
    on_progress: Progress | None = None,
) -> PairSet:
    """Give each of ``rows`` that has no negative the teacher's nearest passage that is not an
    answer and passes the margin (none when no passage within ``DEPTH`` does)."""
    pairs = list(pair_set.pairs)
    mined = 0
    for name, dataset_rows in pair_set.datasets.items():
        wanting = [i for i in dataset_rows if i in rows and not pairs[i].negatives]
        if not wanting:
            continue
        pool = _passage_pool(pairs, dataset_rows, wanting, pool_size, seed)
        log.info(
            "teacher mining %s: %s queries against %s passages", name or "pairs", len(wanting), len(pool)
        )
        found = _nearest_negatives(pairs, dataset_rows, wanting, pool, teacher, name, on_progress)
        for i, text in found.items():
            pairs[i] = Pair(
                pairs[i].query,
                pairs[i].positive,
                (text,),
                pairs[i].instruction,
                pairs[i].group,
                pairs[i].dataset,
            )
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
    queries = teacher.vectors(
        [pairs[i].query for i in wanting],
        query=True,
        on_progress=_reporter(on_progress, f"{name} queries", len(wanting)),
    )
    where = {text: n for n, text in enumerate(pool)}
    scores = queries @ passages.T
    positive = scores[np.arange(len(wanting)), [where[pairs[i].positive] for i in wanting]]
    depth = min(DEPTH, len(pool))
    top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
    found = {}
    for row, i in enumerate(wanting):
        for column in top[row][np.argsort(-scores[row, top[row]])]:
            text = pool[column]
            if text in answers[pairs[i].query] or text == pairs[i].query:
                continue
            if scores[row, column] <= FALSE_NEGATIVE_MARGIN * positive[row]:
                found[i] = text
                break
    return found


def _reporter(on_progress: Progress | None, what: str, total: int) -> Callable[[int], None] | None:
    if on_progress is None:
        return None
    done = [0]

    def advance(count: int) -> None:
        done[0] += count
        on_progress(what, done[0], total)

    return advance
