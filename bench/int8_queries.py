"""Weight-only int8 for query encoding: is it faster, and are the vectors still the same?

    python bench/int8_queries.py [--queries 300] [--timed 100]

A query's forward pass reads every fp32 weight once (430 MB for the default encoder), so
storing the projections as int8 with one scale per output row should read a quarter of
that. This script measures, for the default encoder loaded light: torch's int8-weight
kernel on one projection's shape with fp32 and bf16 activations against an fp32 matmul;
then the whole encoder with every projection quantized (bf16 activations, the kernel's
fast path), interleaved with the fp32 encoder on the same single-query calls, and the
cosine of each quantized query vector to its fp32 one on SciFact's test queries.
Results and the decision: BENCHMARKS.md, "Search latency".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

QUERIES = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "scifact" / "queries.jsonl"
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class Int8Linear(nn.Module):
    """A bias-free projection stored as int8 with a per-row scale; bf16 in, fp32 out."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        quantized = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("weight_int8", quantized.contiguous())
        self.register_buffer("scale", scale.to(torch.bfloat16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).to(torch.bfloat16).contiguous()
        out = torch.ops.aten._weight_int8pack_mm(flat, self.weight_int8, self.scale)
        return out.float().reshape(*x.shape[:-1], -1)


def kernel(rows: int = 16, repeats: int = 50) -> None:
    x, weight = torch.randn(rows, 576), torch.randn(1536, 576)
    quantized = torch.randint(-127, 127, (1536, 576), dtype=torch.int8)
    scale = torch.rand(1536)
    cases = {
        "fp32 matmul": lambda: x @ weight.T,
        "int8 weights, fp32 activations": lambda: torch.ops.aten._weight_int8pack_mm(x, quantized, scale),
        "int8 weights, bf16 activations": lambda: torch.ops.aten._weight_int8pack_mm(
            x.bfloat16(), quantized, scale.bfloat16()
        ),
    }
    for name, run in cases.items():
        run()
        started = time.perf_counter()
        for _ in range(repeats):
            run()
        print(f"{name:>32}: {(time.perf_counter() - started) / repeats * 1e3:.3f} ms ({rows} × 576 × 1536)")


def main() -> None:
    from ragkit import Encoder

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--timed", type=int, default=100)
    args = parser.parse_args()
    kernel()
    texts = [json.loads(line)["text"] for line in QUERIES.open()][: args.queries]
    fp32 = Encoder.from_pretrained("default", backend="light")
    int8 = Encoder.from_pretrained("default", backend="light")
    for layer in int8.model.layers:
        for name in PROJECTIONS:
            setattr(layer, name, Int8Linear(getattr(layer, name).weight.detach()))
    a = fp32.encode_queries(texts, show_progress=False)
    b = int8.encode_queries(texts, show_progress=False)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    print(f"cosine to fp32 over {len(texts)} queries: min {cosine.min():.4f}, mean {cosine.mean():.4f}")
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    for text in texts[: args.timed]:  # interleaved, so machine noise hits both alike
        for name, encoder in (("fp32", fp32), ("int8", int8)):
            started = time.perf_counter()
            encoder.encode_queries([text], show_progress=False)
            times[name].append(time.perf_counter() - started)
    for name, values in times.items():
        p50, p95 = np.percentile(values, 50) * 1e3, np.percentile(values, 95) * 1e3
        print(f"{name}: one query p50 {p50:.1f} ms, p95 {p95:.1f} ms")


if __name__ == "__main__":
    main()
