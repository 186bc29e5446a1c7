"""Which CPU engine runs the encoder body fastest, at fp32 fidelity: torch, ONNX Runtime, OpenVINO.

The light body of the default encoder (the merged weights) is exported to ONNX (opset 17) and
run with ONNX Runtime's CPU provider at full graph optimisation, and through ragkit's
OpenVINO engine; each runs the same padded batches of SciFact abstracts (96, up to 256
tokens, batches of 8) and one short query 20 times. Reported: seconds for the documents,
query p50/p95 and the smallest cosine between a real token's state and torch's. This is how
the engine behind ``backend="auto"`` was chosen. Needs ``pip install onnxruntime onnx``.

    python bench/engines.py
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ragkit.encoder import Encoder
from ragkit.encoder.openvino_engine import _probe_batch, _Traceable

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "scifact" / "corpus.jsonl"
INPUTS = ["input_ids", "attention_mask", "position_ids"]


def batches(tokenizer, texts: list[str], size: int = 8) -> list[tuple[np.ndarray, ...]]:
    out = []
    for start in range(0, len(texts), size):
        ids = [tokenizer(t)["input_ids"][:256] for t in texts[start : start + size]]
        width = max(map(len, ids))
        tokens, mask = np.zeros((len(ids), width), np.int64), np.zeros((len(ids), width), np.int64)
        for row, sequence in enumerate(ids):
            tokens[row, : len(sequence)], mask[row, : len(sequence)] = sequence, 1
        out.append((tokens, mask, np.clip(mask.cumsum(1) - 1, 0, None)))
    return out


def _token_cosines(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(ours, axis=-1) * np.linalg.norm(theirs, axis=-1)
    return (ours * theirs).sum(-1) / norms


def onnxruntime_runner(traced, example, folder: Path):
    import onnxruntime as ort

    axes = {name: {0: "batch", 1: "tokens"} for name in [*INPUTS, "hidden"]}
    path = folder / "encoder.onnx"
    names = {"input_names": INPUTS, "output_names": ["hidden"], "dynamic_axes": axes}
    torch.onnx.export(traced, example, str(path), opset_version=17, **names)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda batch: session.run(None, dict(zip(INPUTS, batch, strict=True)))[0]


def main() -> None:
    torch_encoder = Encoder.from_pretrained("default", backend="light")
    openvino = Encoder.from_pretrained("default", backend="openvino")
    traced = _Traceable(torch_encoder.model).eval()
    with open(CORPUS) as handle:
        texts = [json.loads(line)["text"] for line, _ in zip(handle, range(96), strict=False)]
    documents = batches(torch_encoder.tokenizer, texts)
    query = batches(torch_encoder.tokenizer, ["How do I resume an interrupted training run?"])[0]

    def run_torch(batch):
        with torch.inference_mode():
            return traced(*(torch.from_numpy(x) for x in batch)).numpy()

    def run_openvino(batch):
        return openvino.model(*(torch.from_numpy(x) for x in batch)).last_hidden_state.numpy()

    reference = [run_torch(b) for b in documents]
    with tempfile.TemporaryDirectory() as scratch:
        example = _probe_batch(traced.light.embed_tokens.num_embeddings)
        runners = {
            "torch": run_torch,
            "onnxruntime": onnxruntime_runner(traced, example, Path(scratch)),
            "openvino": run_openvino,
        }
        for name, run in runners.items():
            run(documents[0])
            started = time.perf_counter()
            outputs = [run(b) for b in documents]
            seconds = time.perf_counter() - started
            cosines = [
                _token_cosines(o, r)[b[1].astype(bool)].min()
                for o, r, b in zip(outputs, reference, documents, strict=True)
            ]
            latencies = []
            for _ in range(20):
                began = time.perf_counter()
                run(query)
                latencies.append(time.perf_counter() - began)
            print(
                json.dumps(
                    {
                        "engine": name,
                        "documents_seconds": round(seconds, 2),
                        "token_min_cosine": float(min(cosines)),
                        "query_ms_p50": round(1000 * float(np.median(latencies)), 1),
                        "query_ms_p95": round(1000 * float(np.percentile(latencies, 95)), 1),
                    }
                )
            )


if __name__ == "__main__":
    main()
