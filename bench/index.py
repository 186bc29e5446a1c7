"""Indexing cost split by phase, and FAISS at scale (flat vs HNSW vs IVF-PQ).

    python bench/index.py pipeline [--docs 300]     # default encoder on SciFact abstracts as .md files
    python bench/index.py faiss [--n 1000000] [--data clustered|uniform]   # build, memory, latency, recall

`pipeline` writes N SciFact abstracts as Markdown files, indexes them with the default
encoder and reports the wall time of each phase (scanning, parsing and chunking, encoding,
storing): everything but encoding should stay under 10 % of the total. `faiss` builds each
structure on the same normalised random vectors, then times 200 single-query searches at
several search settings and measures recall@10 against exact search. Uniform random vectors
have no cluster structure, the hardest case for approximate search; clustered ones are
random too but sit around centres, as real embeddings do.
"""

from __future__ import annotations

import argparse
import json
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


def _unit(rows):
    import numpy as np

    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def vector_data(kind: str, n: int, dimension: int, queries: int, seed: int):
    """``uniform``: points spread evenly on the sphere, queries next to stored points (the
    hardest case: a point's other nine neighbours are barely nearer than any point).
    ``clustered``: points around 10,000 random centres (cosine ~0.8 to their centre), queries
    fresh points of random clusters, which is how real embeddings sit."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if kind == "uniform":
        data = _unit(rng.standard_normal((n, dimension), dtype=np.float32))
        probes = data[rng.choice(n, queries, replace=False)]
        probes = probes + 0.1 * rng.standard_normal((queries, dimension), dtype=np.float32) / np.sqrt(
            dimension
        )
        return data, _unit(probes)
    centres = _unit(rng.standard_normal((10_000, dimension), dtype=np.float32))
    spread = 0.7 / np.sqrt(dimension)

    def around(count: int):
        picks = rng.integers(0, len(centres), count)
        out = np.empty((count, dimension), dtype=np.float32)
        for start in range(0, count, 100_000):
            part = picks[start : start + 100_000]
            noise = rng.standard_normal((len(part), dimension), dtype=np.float32) * spread
            out[start : start + len(part)] = centres[part] + noise
        return _unit(out)

    return around(n), around(queries)


SWEEPS = {
    "flat": [None],
    "hnsw": [32, 64, 128, 256],
    "ivfpq": [(16, 4), (32, 4), (32, 16), (64, 16), (64, 64)],
}
"""Search-time settings tried on each built structure: efSearch for HNSW; for IVF-PQ
(nprobe, k_factor), k_factor × k being how many PQ candidates are re-ranked exactly."""


def _set_search_parameter(index, kind: str, value) -> None:
    import faiss

    inner = faiss.downcast_index(index.index)
    if kind == "hnsw":
        inner.hnsw.efSearch = value
    elif kind == "ivfpq":
        nprobe, k_factor = value
        base = faiss.downcast_index(inner.base_index) if hasattr(inner, "base_index") else inner
        base.nprobe = nprobe
        inner.k_factor = float(k_factor)


def faiss_scale(
    n: int,
    data_kind: str,
    dimension: int = 576,
    queries: int = 200,
    seed: int = 0,
    kinds: tuple[str, ...] = ("flat", "hnsw", "ivfpq"),
) -> dict:
    import faiss
    import numpy as np

    from ragkit.indexer import vectors

    data, probes = vector_data(data_kind, n, dimension, queries, seed)
    ids = np.arange(n, dtype=np.int64)
    results = {}
    truth = None
    for kind in ("flat", *[k for k in kinds if k != "flat"]):  # flat gives the truth
        spec = vectors.choose(kind, n, dimension)
        started = time.perf_counter()
        index = vectors.build(spec, dimension, [(ids, data)])
        build_s = time.perf_counter() - started
        rows = []
        for value in SWEEPS[kind]:
            if value is not None:
                _set_search_parameter(index, kind, value)
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
            rows.append(
                {
                    "search_parameter": value,
                    "query_ms_p50": round(statistics.median(latencies), 2),
                    "query_ms_p95": round(float(np.percentile(latencies, 95)), 2),
                    "recall@10_vs_flat": round(recall, 4),
                }
            )
            print(kind, value, json.dumps(rows[-1]), file=sys.stderr, flush=True)
        results[kind] = {
            "params": spec.to_dict(),
            "build_s": round(build_s, 1),
            "bytes_serialized_mb": round(len(faiss.serialize_index(index)) / 1e6, 0),
            "searches": rows,
        }
        print(kind, "build", results[kind]["build_s"], "s", file=sys.stderr, flush=True)
        del index
    return {
        "n": n,
        "dimension": dimension,
        "data": data_kind,
        "queries": queries,
        "faiss_threads": faiss.omp_get_max_threads(),
        "systems": results,
    }


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
    f.add_argument("--data", choices=["clustered", "uniform"], default="clustered")
    f.add_argument("--kinds", default="flat,hnsw,ivfpq", help="comma list of structures to build")
    args = parser.parse_args()
    if args.what == "pipeline":
        result = pipeline(args.docs)
    else:
        result = faiss_scale(args.n, args.data, queries=args.queries, kinds=tuple(args.kinds.split(",")))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
