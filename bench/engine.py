"""Fidelity of a CPU engine on real data: the same encoder on two backends (torch, OpenVINO
in fp32, OpenVINO in bf16).

Encodes the SciFact test sample (every judged document plus seeded others, 983 in all, and
the 300 test queries with the encoder's instruction) with both settings, then reports the
smallest and mean cosine between the two vectors of each text, the nDCG@10 of each backend
(exact search), and the seconds each took. No vector cache is used: both sides are encoded.

    python bench/engine.py ../shared/datasets/scifact --max-docs 983 --out eval-results/engine-openvino.json
    python bench/engine.py ../shared/datasets/scifact --candidate openvino-bf16 --reference openvino \
        --out eval-results/engine-openvino-bf16.json
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

SETTINGS = {
    "torch": {"backend": "light"},
    "openvino": {"backend": "openvino"},
    "openvino-bf16": {"backend": "openvino", "dtype": "bfloat16"},
}


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
    parser.add_argument("--candidate", default="openvino", choices=sorted(SETTINGS))
    parser.add_argument("--reference", default="torch", choices=sorted(SETTINGS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    dataset = subsample(load_beir(args.dataset, "test"), args.max_docs, args.seed)
    doc_ids, query_ids = list(dataset.corpus), sorted(dataset.qrels)
    result: dict = {"dataset": args.dataset, "documents": len(doc_ids), "queries": len(query_ids)}
    vectors = {}
    candidate, reference = args.candidate, args.reference
    for name in (candidate, reference):
        settings = SETTINGS[name]
        encoder = Encoder.from_pretrained(args.encoder, **settings)
        assert encoder.describe()["backend"] == settings["backend"], f"{name} is not available here"
        docs, queries, seconds = encode(encoder, dataset)
        run = exact_search(docs, queries, doc_ids, query_ids)
        result[name] = {"seconds": round(seconds, 1), **mean_metrics(per_query(dataset.qrels, run))}
        vectors[name] = (docs, queries)
        print(name, json.dumps(result[name]), flush=True)
    for i, kind in enumerate(("documents", "queries")):
        cosine = (vectors[candidate][i] * vectors[reference][i]).sum(1)
        result[f"{kind}_min_cosine"] = float(cosine.min())
        result[f"{kind}_mean_cosine"] = float(cosine.mean())
        result[f"{kind}_below_0.995"] = int((cosine < 0.995).sum())
    result["ndcg@10_difference"] = result[candidate]["ndcg@10"] - result[reference]["ndcg@10"]
    result["speedup"] = result[reference]["seconds"] / result[candidate]["seconds"]
    emit(result, args.out)


if __name__ == "__main__":
    main()
