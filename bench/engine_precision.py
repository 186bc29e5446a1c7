"""What bf16 arithmetic would buy the OpenVINO engine, and what it costs in fidelity.

On CPUs with AMX or AVX512-BF16, OpenVINO's CPU plugin runs matrix products in bf16 unless
told otherwise; ragkit's engine asks for fp32. This compiles the default encoder's engine
both ways and runs the same SciFact abstracts (sorted by length, batches of 8, up to 256
tokens) and queries (one at a time, with the retrieval instruction), then reports the time
and the smallest cosine between a text's mean-pooled vectors under the two precisions.

    python bench/engine_precision.py [--docs 160] [--queries 100]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from bench_output import emit

from ragkit.encoder import Encoder

SCIFACT = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "scifact"
INSTRUCTION = "Given a scientific claim, retrieve documents that support or refute the claim: "


def padded_batches(tokenizer, texts: list[str], size: int) -> list[list[np.ndarray]]:
    out = []
    for start in range(0, len(texts), size):
        ids = [tokenizer(t)["input_ids"][:256] for t in texts[start : start + size]]
        tokens = np.zeros((len(ids), max(map(len, ids))), np.int64)
        mask = np.zeros_like(tokens)
        for row, sequence in enumerate(ids):
            tokens[row, : len(sequence)], mask[row, : len(sequence)] = sequence, 1
        out.append([tokens, mask, np.clip(mask.cumsum(1) - 1, 0, None)])
    return out


def run(compiled, batches) -> tuple[np.ndarray, list[float]]:
    """Mean-pooled vectors and the seconds each batch took."""
    vectors, seconds = [], []
    for batch in batches:
        started = time.perf_counter()
        hidden = compiled(batch)[0]
        seconds.append(time.perf_counter() - started)
        mask = batch[1][..., None]
        vectors.append((hidden * mask).sum(1) / mask.sum(1))
    return np.concatenate(vectors), seconds


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--docs", type=int, default=160)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import openvino as ov

    from ragkit.encoder import openvino_engine

    encoder = Encoder.from_pretrained("default", backend="openvino")
    folder = encoder.model.folder
    with open(SCIFACT / "corpus.jsonl") as handle:
        docs = [json.loads(line)["text"] for line, _ in zip(handle, range(args.docs), strict=False)]
    with open(SCIFACT / "queries.jsonl") as handle:
        lines = zip(handle, range(args.queries), strict=False)
        queries = [INSTRUCTION + json.loads(line)["text"] for line, _ in lines]
    doc_batches = padded_batches(encoder.tokenizer, sorted(docs, key=len), 8)
    query_batches = padded_batches(encoder.tokenizer, queries, 1)
    core = ov.Core()
    result = {"capabilities": core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")}
    pooled = {}
    for precision in ("f32", "bf16"):
        hint = {"INFERENCE_PRECISION_HINT": precision}
        compiled = core.compile_model(str(folder / openvino_engine.MODEL_FILE), "CPU", hint)
        run(compiled, doc_batches[:2])  # warm-up
        doc_vectors, doc_seconds = run(compiled, doc_batches)
        query_vectors, query_seconds = run(compiled, query_batches)
        pooled[precision] = (doc_vectors, query_vectors)
        result[precision] = {
            "documents_s": round(sum(doc_seconds), 2),
            "query_ms_p50": round(float(np.percentile(query_seconds, 50)) * 1e3, 1),
            "query_ms_p95": round(float(np.percentile(query_seconds, 95)) * 1e3, 1),
        }
    for kind, position in (("documents", 0), ("queries", 1)):
        values = cosines(pooled["f32"][position], pooled["bf16"][position])
        result[f"bf16_vs_f32_{kind}_min_cosine"] = round(float(values.min()), 5)
        result[f"bf16_vs_f32_{kind}_below_0.995"] = int((values < 0.995).sum())
    result["documents_speedup"] = round(result["f32"]["documents_s"] / result["bf16"]["documents_s"], 2)
    emit(result, args.out)


if __name__ == "__main__":
    main()
