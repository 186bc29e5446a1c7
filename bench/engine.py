"""Fidelity of a CPU engine on real data: the same encoder on torch and on OpenVINO.

Encodes the SciFact test sample (every judged document plus seeded others, 983 in all, and
the 300 test queries with the encoder's instruction) on both backends, then reports the
smallest and mean cosine between the two vectors of each text, the nDCG@10 of each backend
(exact search), and the seconds each took. No vector cache is used: both sides are encoded.

    python bench/engine.py ../shared/datasets/scifact --max-docs 983 --out eval-results/engine-openvino.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from bench_output import emit

from ragkit.encoder import Encoder
from ragkit.evaluation.beir import load_beir, subsample
from ragkit.evaluation.metrics import mean_metrics, per_query
from ragkit.evaluation.retrieval import exact_search


def encode(encoder: Encoder, dataset) -> tuple[np.ndarray, np.ndarray, float]:
    started = time.perf_counter()
    docs = encoder.encode_documents(list(dataset.corpus.values()), show_progress=True, warn_truncated=False)
    queries = encoder.encode_queries([dataset.queries[q] for q in sorted(dataset.qrels)], show_progress=False)
    return docs, queries, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--encoder", default="default")
    parser.add_argument("--max-docs", type=int, default=983)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    dataset = subsample(load_beir(args.dataset, "test"), args.max_docs, args.seed)
    doc_ids, query_ids = list(dataset.corpus), sorted(dataset.qrels)
    result: dict = {"dataset": args.dataset, "documents": len(doc_ids), "queries": len(query_ids)}
    vectors = {}
    for backend in ("openvino", "torch"):
        encoder = Encoder.from_pretrained(args.encoder, light=True, backend=backend)
        assert encoder.describe()["backend"] == backend, f"{backend} is not available here"
        docs, queries, seconds = encode(encoder, dataset)
        run = exact_search(docs, queries, doc_ids, query_ids)
        result[backend] = {"seconds": round(seconds, 1), **mean_metrics(per_query(dataset.qrels, run))}
        vectors[backend] = (docs, queries)
        print(backend, json.dumps(result[backend]), flush=True)
    for i, kind in enumerate(("documents", "queries")):
        cosine = (vectors["openvino"][i] * vectors["torch"][i]).sum(1)
        result[f"{kind}_min_cosine"] = float(cosine.min())
        result[f"{kind}_mean_cosine"] = float(cosine.mean())
    result["ndcg@10_difference"] = result["openvino"]["ndcg@10"] - result["torch"]["ndcg@10"]
    result["speedup"] = result["torch"]["seconds"] / result["openvino"]["seconds"]
    emit(result, args.out)


if __name__ == "__main__":
    main()
