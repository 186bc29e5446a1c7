"""Retrieval metrics through pytrec_eval (the TREC reference implementation), per query."""

from __future__ import annotations

import numpy as np

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100")
_TREC = {
    "ndcg@10": "ndcg_cut_10",
    "recall@10": "recall_10",
    "recall@100": "recall_100",
    "map@100": "map_cut_100",
}

Run = dict[str, dict[str, float]]


def _top(run: Run, k: int) -> Run:
    return {q: dict(sorted(docs.items(), key=lambda kv: -kv[1])[:k]) for q, docs in run.items()}


def drop_identical_ids(run: Run) -> Run:
    """Remove a retrieved document whose id is the query's own, as BEIR's and MTEB's
    evaluators do: where queries are also corpus documents (Quora), the document that *is*
    the query would otherwise take rank 1 from the relevant ones."""
    return {query: {doc: s for doc, s in docs.items() if doc != query} for query, docs in run.items()}


def per_query(qrels: dict[str, dict[str, int]], run: Run) -> dict[str, dict[str, float]]:
    """Every metric for every judged query; a query the run misses scores zero, not absent.

    pytrec_eval silently skips queries without results, which would inflate the means.
    """
    import pytrec_eval

    full = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.10,100", "map_cut.100"})
    first = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})
    scores = full.evaluate(run)
    reciprocal = first.evaluate(_top(run, 10))
    out = {}
    for query in qrels:
        row = scores.get(query, {})
        out[query] = {name: float(row.get(trec, 0.0)) for name, trec in _TREC.items()}
        out[query]["mrr@10"] = float(reciprocal.get(query, {}).get("recip_rank", 0.0))
    return out


def mean_metrics(rows: dict[str, dict[str, float]]) -> dict[str, float]:
    return {m: float(np.mean([r[m] for r in rows.values()])) for m in METRICS}
