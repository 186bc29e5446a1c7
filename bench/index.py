"""Indexing cost split by phase, and FAISS at scale (flat vs HNSW vs IVF-PQ).

    python bench/index.py pipeline [--docs 300]     # default encoder on SciFact abstracts as .md files
    python bench/index.py faiss [--n 1000000]       # random 576-d vectors: build, memory, latency, recall

`pipeline` writes N SciFact abstracts as Markdown files, indexes them with the default
encoder and reports the wall time of each phase (scanning, parsing and chunking, encoding,
storing): everything but encoding should stay under 10 % of the total. `faiss` builds each
structure on the same normalised random vectors, then times 200 single-query searches and
measures recall@10 against exact search. Random vectors have no cluster structure, which
makes them the hardest case for approximate search.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCIFACT = HERE.parent.parent / "shared" / "datasets" / "scifact" / "corpus.jsonl"


def pipeline(n_docs: int) -> dict:
    from ragkit.indexer.builder import IndexOptions, build_index

    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs"
        docs.mkdir()
        with open(SCIFACT) as handle:
            for i, line in enumerate(handle):
                if i >= n_docs:
                    break
                record = json.loads(line)
                (docs / f"{record['_id']}.md").write_text(f"# {record['title']}\n\n{record['text']}\n")
        started = time.perf_counter()
        summary = build_index(IndexOptions(source=docs, index_dir=Path(tmp) / "index"))
        total = time.perf_counter() - started
    phases = {k: round(v, 2) for k, v in summary.seconds.items()}
    work = total - phases.get("loading the encoder", 0.0)
    other = work - phases.get("encoding", 0.0)
    return {
        "documents": n_docs,
        "chunks": summary.chunks_total,
        "tokens": summary.tokens,
        "seconds_total": round(total, 2),
        "seconds_by_phase": phases,
        "not_encoding_share_of_work": round(other / work, 4),
    }


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def faiss_scale(n: int, dimension: int = 576, queries: int = 200, seed: int = 0) -> dict:
    import faiss
    import numpy as np

    from ragkit.indexer import vectors

    rng = np.random.default_rng(seed)
    data = rng.standard_normal((n, dimension), dtype=np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    ids = np.arange(n, dtype=np.int64)
    probes = data[rng.choice(n, queries, replace=False)] + 0.1 * rng.standard_normal(
        (queries, dimension), dtype=np.float32
    )
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    results = {}
    truth = None
    for kind in ("flat", "hnsw", "ivfpq"):
        spec = vectors.choose(kind, n, dimension)
        before = _rss_mb()
        started = time.perf_counter()
        index = vectors.build(spec, dimension, [(ids, data)])
        build_s = time.perf_counter() - started
        latencies, found = [], []
        for probe in probes:
            t = time.perf_counter()
            _, hit = index.search(probe[None, :], 10)
            latencies.append((time.perf_counter() - t) * 1000)
            found.append(hit[0])
        found = np.array(found)
        if kind == "flat":
            truth = found
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)]))
        results[kind] = {
            "params": spec.to_dict(),
            "build_s": round(build_s, 1),
            "peak_rss_growth_mb": round(_rss_mb() - before, 0),
            "bytes_serialized_mb": round(len(faiss.serialize_index(index)) / 1e6, 0),
            "query_ms_p50": round(statistics.median(latencies), 2),
            "query_ms_p95": round(float(np.percentile(latencies, 95)), 2),
            "recall@10_vs_flat": round(recall, 4),
        }
        print(kind, json.dumps(results[kind]), file=sys.stderr, flush=True)
        del index
    return {"n": n, "dimension": dimension, "queries": queries, "systems": results}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("pipeline")
    p.add_argument("--docs", type=int, default=300)
    f = sub.add_parser("faiss")
    f.add_argument("--n", type=int, default=1_000_000)
    f.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    result = pipeline(args.docs) if args.what == "pipeline" else faiss_scale(args.n, queries=args.queries)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
