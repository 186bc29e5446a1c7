"""What the teacher's hard negatives are, next to BM25's, for the rows a run draws.

For each pair set: how many drawn rows the teacher found a negative for, how often it is the
BM25 negative, the median ratio of the negative's teacher score to the positive's under each
miner, and how many BM25 negatives the teacher scores above 95 % of the positive (those the
false-negative filter drops from the softmax during training, so they teach nothing). Uses the
same cached teacher vectors and published choices as ``ragkit train --negatives-from teacher``.

    python bench/teacher_negatives.py --teacher <all-MiniLM-L6-v2 folder> \
        --pairs ../shared/datasets/train/squad.jsonl.gz --pairs data/wiki-sentences.jsonl.gz \
        --mixture squad=313,wiki-sentences=150 --steps 100 --batch-size 64 --seed 11 \
        --out eval-results/teacher-negatives.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ragkit.trainer.negatives import mine_negatives
from ragkit.trainer.pairs import PairSet, parse_mixture, read_pairs
from ragkit.trainer.recipe import STAGES
from ragkit.trainer.start import TrainingData
from ragkit.trainer.teacher import FALSE_NEGATIVE_MARGIN, open_teacher
from ragkit.trainer.teacher_negatives import drawn_rows, mine_with_teacher


def ratios(teacher, pairs: PairSet, mined: PairSet, rows: list[int]) -> np.ndarray:
    """Teacher score of each row's mined negative over its positive's."""
    queries = teacher.vectors([pairs.pairs[i].query for i in rows], query=True)
    positives = teacher.vectors([pairs.pairs[i].positive for i in rows], query=False)
    negatives = teacher.vectors([mined.pairs[i].negatives[0] for i in rows], query=False)
    return (queries * negatives).sum(1) / (queries * positives).sum(1)


def report(teacher, pairs: PairSet, rows: set[int], by_teacher: PairSet, by_bm25: PairSet) -> dict:
    out = {}
    for name, dataset_rows in pairs.datasets.items():
        wanting = [i for i in dataset_rows if i in rows and not pairs.pairs[i].negatives]
        if not wanting:
            continue
        found = [i for i in wanting if by_teacher.pairs[i].negatives]
        bm25 = [i for i in wanting if by_bm25.pairs[i].negatives]
        same = [i for i in found if by_bm25.pairs[i].negatives[:1] == by_teacher.pairs[i].negatives[:1]]
        bm25_ratios = ratios(teacher, pairs, by_bm25, bm25)
        out[name] = {
            "drawn_rows": len(wanting),
            "teacher_negatives": len(found),
            "same_as_bm25": len(same),
            "teacher_ratio_median": round(float(np.median(ratios(teacher, pairs, by_teacher, found))), 3),
            "bm25_ratio_median": round(float(np.median(bm25_ratios)), 3),
            "bm25_above_margin": int((bm25_ratios > FALSE_NEGATIVE_MARGIN).sum()),
            "bm25_negatives": len(bm25),
        }
        print(name, out[name], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--pairs", action="append", required=True)
    parser.add_argument("--mixture", default="sqrt")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    pairs = read_pairs(args.pairs)
    mixture = parse_mixture(args.mixture)
    seed = args.seed + STAGES.index("supervised")
    rows = drawn_rows(pairs, batch_size=args.batch_size, seed=seed, mixture=mixture, steps=args.steps)
    teacher = open_teacher(args.teacher, TrainingData(None, pairs).pairs_hash())
    by_teacher = mine_with_teacher(pairs, teacher, rows, seed=args.seed)
    result = {
        "settings": vars(args) | {"out": str(args.out)},
        "datasets": report(teacher, pairs, rows, by_teacher, mine_negatives(pairs)),
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
