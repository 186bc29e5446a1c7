"""Hybrid fusion: RRF, weighted RRF and a convex combination, chosen on train, reported on test.

Runs exactly what ``Index.search`` runs (the index's FTS5 table and query, its depth and its
fusion function, :func:`ragkit.evaluation.retrieval.hybrid_run`) over a BEIR dataset, for
each fusion setting. The dense vectors come from ``ragkit eval``'s per-fingerprint cache, so
after one full ``ragkit eval`` of an encoder this takes about a minute.
Convex weight 0 is the FTS5 BM25 ranking alone, weight 1 the dense ranking alone.

    python bench/fusion.py ../shared/datasets/scifact --encoder default --out bench/fusion.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ragkit.encoder import Encoder
from ragkit.evaluation.retrieval import evaluate_retrieval
from ragkit.fusion_settings import FUSION_METHODS
from ragkit.search.fusion import Fusion

WEIGHTS = [round(w / 10, 1) for w in range(11)]


def settings(methods: list[str]) -> list[Fusion]:
    """Each method's grid: equal RRF once, weighted RRF at the inner weights, a convex
    combination at every weight (0 and 1 are BM25 and dense alone)."""
    grid = [Fusion("rrf")] if "rrf" in methods else []
    grid += [Fusion("weighted-rrf", w) for w in WEIGHTS[1:-1] if "weighted-rrf" in methods]
    for method in ("convex", "convex-zscore"):
        grid += [Fusion(method, w) for w in WEIGHTS if method in methods]
    return grid


def label(fusion: Fusion) -> str:
    return fusion.method if fusion.method == "rrf" else f"{fusion.method} w={fusion.dense_weight}"


def score(dataset: str, split: str, encoder, fusion: Fusion) -> float:
    result = evaluate_retrieval(dataset, split=split, encoder=encoder, systems="hybrid", fusion=fusion)
    return result["systems"]["hybrid"]["ndcg@10"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset")
    parser.add_argument("--encoder", default="default")
    parser.add_argument("--choose-on", default="train")
    parser.add_argument("--report-on", default="test")
    parser.add_argument(
        "--methods",
        default="rrf,weighted-rrf,convex",
        help="comma-separated fusion methods to sweep (rrf, weighted-rrf, convex, convex-zscore)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(FUSION_METHODS))
    if unknown:
        parser.error(f"unknown fusion method {', '.join(unknown)}; choose from {', '.join(FUSION_METHODS)}")
    started = time.perf_counter()
    encoder = Encoder.from_pretrained(args.encoder)
    rows = []
    for fusion in settings(methods):
        row = {"fusion": label(fusion), args.choose_on: score(args.dataset, args.choose_on, encoder, fusion)}
        rows.append((fusion, row))
        print(f"{row['fusion']:<22} {args.choose_on} nDCG@10 {row[args.choose_on]:.4f}", flush=True)
    best_fusion, best = max(rows, key=lambda pair: pair[1][args.choose_on])
    for fusion, row in rows:
        row[args.report_on] = score(args.dataset, args.report_on, encoder, fusion)
    print(f"\nchosen on {args.choose_on}: {best['fusion']}")
    print(f"| fusion | {args.choose_on} nDCG@10 | {args.report_on} nDCG@10 |\n|---|---|---|")
    for _, row in rows:
        mark = " **(chosen)**" if row is best else ""
        print(f"| {row['fusion']}{mark} | {row[args.choose_on]:.3f} | {row[args.report_on]:.3f} |")
    report = {
        "encoder": args.encoder,
        "fingerprint": encoder.fingerprint,
        "chosen_on": args.choose_on,
        "chosen": best["fusion"],
        "chosen_setting": {"method": best_fusion.method, "dense_weight": best_fusion.dense_weight},
        "rows": [row for _, row in rows],
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
