"""``ragkit eval``'s corpus on torch against the engine it now uses, in one process.

Runs the same evaluation (the ``ragkit`` and ``hybrid`` systems on a seeded BEIR sample) with
the corpus embedded by the encoder under test on torch (``document_dtype=None``, as on CUDA)
and as ``ragkit eval --dtype`` embeds it on a CPU (default ``float32``: the fastest engine that
agrees with torch to rounding), each with an empty vector cache of its own. Reports the
seconds of each and their ratio, and the largest per-query nDCG@10 difference.

    python bench/eval_engine.py ../shared/datasets/scifact --max-docs 600 --out eval-results/eval-engine.json
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

from bench_output import emit

import ragkit.encoder.vector_cache as vector_cache
from ragkit.evaluation.retrieval import evaluate_retrieval


@contextlib.contextmanager
def own_vector_cache(folder: Path):
    """Every vector cache opened inside goes to ``folder`` (empty), so nothing is reused."""
    original = vector_cache.vectors_file
    folder.mkdir(parents=True)
    vector_cache.vectors_file = lambda fingerprint, root=None: folder / f"{fingerprint}.sqlite"
    try:
        yield
    finally:
        vector_cache.vectors_file = original


def timed_run(
    dataset: str, encoder: str, max_docs: int | None, document_dtype: str | None
) -> tuple[dict, float]:
    """One evaluation of the encoder and its hybrid; returns (result, seconds)."""
    started = time.perf_counter()
    result = evaluate_retrieval(
        dataset, encoder=encoder, systems="ragkit,hybrid", max_docs=max_docs, document_dtype=document_dtype
    )
    return result, time.perf_counter() - started


def compare(dataset: str, encoder: str, max_docs: int | None, dtype: str, scratch: Path) -> dict:
    """Both evaluations, torch first, each with an empty cache; the record ``--out`` keeps.

    One load of each engine first builds what the first load of an encoder builds once (merged
    weights, the engine and its compiled cache), so neither timing pays for it."""
    from ragkit.encoder import Encoder

    for backend in ("torch", "auto"):
        Encoder.from_pretrained(encoder, backend=backend)
    with own_vector_cache(scratch / "torch"):
        torch_result, torch_seconds = timed_run(dataset, encoder, max_docs, None)
    with own_vector_cache(scratch / "engine"):
        engine_result, engine_seconds = timed_run(dataset, encoder, max_docs, dtype)
    systems = ("ragkit", "hybrid")
    differences = {
        s: max(
            abs(engine_result["per_query_ndcg@10"][s][q] - score)
            for q, score in torch_result["per_query_ndcg@10"][s].items()
        )
        for s in systems
    }
    engine_system = engine_result["systems"]["ragkit"]["system"]
    return {
        "dataset": str(dataset),
        "encoder": encoder,
        "corpus_size": torch_result["corpus_size"],
        "queries": torch_result["num_queries"],
        "torch_seconds": round(torch_seconds, 1),
        "engine_seconds": round(engine_seconds, 1),
        "speedup": round(torch_seconds / engine_seconds, 2),
        "document_backend": engine_system["document_backend"],
        "document_dtype": engine_system["document_dtype"],
        "ndcg@10": {
            "torch": {s: torch_result["systems"][s]["ndcg@10"] for s in systems},
            "engine": {s: engine_result["systems"][s]["ndcg@10"] for s in systems},
        },
        "max_per_query_difference": differences,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--encoder", default="default")
    parser.add_argument("--max-docs", type=int, default=600)
    parser.add_argument("--dtype", default="float32", help="the corpus precision to compare with torch")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        emit(compare(args.dataset, args.encoder, args.max_docs, args.dtype, Path(scratch)), args.out)


if __name__ == "__main__":
    main()
