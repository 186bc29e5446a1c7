"""Hybrid vs dense vs full-text BM25 on an index of ``docs/``, with the answer questions.

The questions of ``tests/data/answer-questions.jsonl`` that have a fact become queries; a
chunk is relevant when its text contains the fact (whitespace-squashed, case-insensitive).
Each system ranks the index's chunks as ``Index.search`` does: ``hybrid`` (the default),
``dense`` (``hybrid=False``) and ``bm25`` (the index's own FTS5 ranking alone). Reported per
split: nDCG@10, recall@5 and MRR@10 from pytrec_eval.

    python bench/docs_retrieval.py --index .ragkit --out eval-results/docs-retrieval.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_output import emit

from ragkit.evaluation.metrics import mean_metrics, per_query
from ragkit.search.index import Index
from ragkit.search.lexical import lexical_ranking

QUESTIONS = Path(__file__).resolve().parent.parent / "tests" / "data" / "answer-questions.jsonl"


def _squash(text: str) -> str:
    return " ".join(text.split()).lower()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default=".ragkit")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    index = Index.open(args.index)
    chunks = {str(i): _squash(t) for i, t in index.db.execute("SELECT id, text FROM chunks")}
    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    result = {}
    for split in ("dev", "test"):
        asked = [r for r in rows if r["split"] == split and r["fact"]]
        qrels, runs = {}, {"hybrid": {}, "dense": {}, "bm25": {}}
        for n, row in enumerate(asked):
            query = f"q{n}"
            relevant = {cid: 1 for cid, text in chunks.items() if row["fact"] in text}
            if not relevant:
                continue
            qrels[query] = relevant
            for name, hybrid in (("hybrid", True), ("dense", False)):
                hits = index.search(row["question"], k=10, hybrid=hybrid)
                runs[name][query] = {str(h.chunk_id): float(10 - rank) for rank, h in enumerate(hits)}
            ranking = lexical_ranking(index.db, row["question"], 10)
            runs["bm25"][query] = {str(cid): float(10 - rank) for rank, (cid, _) in enumerate(ranking)}
        result[split] = {"queries": len(qrels)}
        for name, run in runs.items():
            mean = mean_metrics(per_query(qrels, run))
            result[split][name] = {m: round(mean[m], 3) for m in ("ndcg@10", "mrr@10", "recall@10")}
    emit(result, args.out)


if __name__ == "__main__":
    main()
