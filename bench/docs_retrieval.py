"""Hybrid vs dense vs full-text BM25 on an index of ``docs/``, with the answer questions.

The questions of ``tests/data/answer-questions.jsonl`` that have a fact become queries; a
chunk is relevant when its text contains the fact (whitespace-squashed, case-insensitive).
Each system ranks the index's chunks as ``Index.search`` does: ``hybrid`` (the default),
``dense`` (``hybrid=False``) and ``bm25`` (the index's own FTS5 ranking alone). Reported per
split: nDCG@10, recall@10 and MRR@10 from pytrec_eval. ``--dense-weights`` adds hybrid rows
for other convex fusion weights over the same index (a sweep to choose on the dev split).

    python bench/docs_retrieval.py --index .ragkit --out eval-results/docs-retrieval.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_output import emit

from ragkit.evaluation.metrics import mean_metrics, per_query
from ragkit.search.fusion import Fusion
from ragkit.search.index import Index
from ragkit.search.lexical import lexical_ranking

QUESTIONS = Path(__file__).resolve().parent.parent / "tests" / "data" / "answer-questions.jsonl"


def _squash(text: str) -> str:
    return " ".join(text.split()).lower()


def _weights(text: str) -> list[float]:
    """``0.3,0.5`` as weights, each a convex dense weight in [0, 1]."""
    try:
        weights = [float(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if any(not 0.0 <= w <= 1.0 for w in weights):
        raise argparse.ArgumentTypeError(f"each dense weight must be between 0 and 1, got {text!r}")
    return weights


def _systems(own: Fusion, weights: list[float], method: str) -> list[tuple[str, Fusion | None]]:
    """(name, fusion) per ranked system: the index's own hybrid, dense alone, then each swept weight."""
    systems: list[tuple[str, Fusion | None]] = [("hybrid", own), ("dense", None)]
    tag = "" if method == "convex" else f" {method}"
    return systems + [(f"hybrid{tag} w={w}", Fusion(method, w)) for w in weights]


def _rank_split(index: Index, chunks: dict, asked: list[dict], weights: list[float], method: str) -> dict:
    """Per-system metrics over one split's questions (a question no chunk answers is left out)."""
    own = index.fusion
    systems = _systems(own, weights, method)
    qrels: dict = {}
    runs: dict = {name: {} for name, _ in systems} | {"bm25": {}}
    for n, row in enumerate(asked):
        query = f"q{n}"
        relevant = {cid: 1 for cid, text in chunks.items() if row["fact"] in text}
        if not relevant:
            continue
        qrels[query] = relevant
        for name, fusion in systems:
            index.fusion = fusion or own
            hits = index.search(row["question"], k=10, hybrid=fusion is not None)
            runs[name][query] = {str(h.chunk_id): float(10 - rank) for rank, h in enumerate(hits)}
        ranking = lexical_ranking(index.db, row["question"], 10)
        runs["bm25"][query] = {str(cid): float(10 - rank) for rank, (cid, _) in enumerate(ranking)}
    index.fusion = None  # back to the fusion the index records, or its encoder's
    result: dict = {"queries": len(qrels)}
    for name, run in runs.items():
        mean = mean_metrics(per_query(qrels, run))
        result[name] = {m: round(mean[m], 3) for m in ("ndcg@10", "mrr@10", "recall@10")}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default=".ragkit")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--dense-weights",
        type=_weights,
        default=[],
        help="comma-separated convex dense weights to report beside the index's own fusion, e.g. 0.3,0.5",
    )
    parser.add_argument(
        "--method",
        default="convex",
        choices=["convex", "convex-zscore"],
        help="the fusion the --dense-weights rows use",
    )
    args = parser.parse_args()
    index = Index.open(args.index)
    chunks = {str(i): _squash(t) for i, t in index.db.execute("SELECT id, text FROM chunks")}
    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    result = {}
    for split in ("dev", "test"):
        asked = [r for r in rows if r["split"] == split and r["fact"]]
        result[split] = _rank_split(index, chunks, asked, args.dense_weights, args.method)
    emit(result, args.out)


if __name__ == "__main__":
    main()
