"""Encoding throughput: ragkit vs sentence-transformers vs plain fixed batches, same model;
and the default encoder on each backend (torch, OpenVINO) whole and pruned to 20 layers.

Each system runs in its own subprocess (so peak memory is its own), on the same weights and
the same texts, with the same attention (bidirectional) and mean pooling, and rounds are
interleaved so machine noise hits every system alike. Reported: real tokens/s (non-padding
tokens per second, load excluded), peak RSS while encoding, load time, single-query latency
(p50/p95 over 50 queries, the default encoder's systems) and the smallest cosine against the
reference of the group (ragkit on the bare backbone; the default encoder on torch).

    python bench/encode.py                       # STS-B test sentences, 600 of them
    python bench/encode.py --texts 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STS = HERE.parent.parent / "shared" / "datasets" / "stsb" / "sts-test.tsv"
SYSTEMS = (
    "ragkit",
    "sentence-transformers",
    "plain-fixed-batches",
    "default-torch",
    "default-openvino",
    "default-torch-20-layers",
    "default-openvino-20-layers",
)
DEFAULT_GROUP = {s: s.startswith("default-") for s in SYSTEMS}


def load_texts(n: int, seed: int) -> list[str]:
    with open(STS, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    sentences = sorted({r[k] for r in rows for k in ("sentence1", "sentence2")})
    random.Random(seed).shuffle(sentences)
    return sentences[:n]


class PeakRss:
    """Sample this process's resident memory every 5 ms while encoding."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss() -> int:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.005)

    def __enter__(self):
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_one(system: str, texts: list[str], batch_size: int) -> dict:
    """Runs inside the child: load, warm up, time one full encode."""
    import numpy as np
    import torch

    from ragkit import Encoder
    from ragkit.encoder.attention import set_bidirectional
    from ragkit.encoder.backbone import load_tokenizer, resolve_backbone

    # Only the system under test loads the model, so peak memory is that system's own.
    backbone = resolve_backbone("smollm2-135m")
    tokenizer = load_tokenizer(backbone.folder)
    real_tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"])

    latencies: list[float] = []
    started = time.perf_counter()
    if system == "ragkit":
        enc = Encoder.from_pretrained("smollm2-135m")  # bidirectional, mean pooling

        def encode(batch):
            return enc.encode(batch, batch_size=batch_size, show_progress=False)

    elif DEFAULT_GROUP[system]:
        backend = "openvino" if "openvino" in system else "light"
        layers = 20 if system.endswith("20-layers") else None
        enc = Encoder.from_pretrained("default", backend=backend, layers=layers)
        assert enc.describe()["backend"] == backend, f"{system} did not load on {backend}"

        def encode(batch):
            return enc.encode_documents(batch, batch_size=batch_size, show_progress=False)

        enc.encode_queries(texts[:1], show_progress=False)
        for text in texts[:50]:
            begin = time.perf_counter()
            enc.encode_queries([text], show_progress=False)
            latencies.append(time.perf_counter() - begin)

    elif system == "sentence-transformers":
        import warnings

        warnings.filterwarnings("ignore")
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

        # Text-only input (no chat template, see REFERENCE.md), the same weights, and the
        # same bidirectional attention, so only the encoding pipeline differs.
        module = Transformer(
            str(backbone.folder),
            modality_config={"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
            module_output_name="token_embeddings",
            max_seq_length=512,
        )
        set_bidirectional(module.model, True)
        if module.tokenizer.pad_token is None:
            module.tokenizer.pad_token = module.tokenizer.eos_token
        dimension = module.model.config.hidden_size
        st = SentenceTransformer(modules=[module, Pooling(dimension, "mean")], device="cpu")

        def encode(batch):
            return st.encode(batch, batch_size=batch_size, normalize_embeddings=True)

    else:
        model = Encoder.from_pretrained("smollm2-135m").model

        def encode(batch):
            out = []
            with torch.inference_mode():
                for i in range(0, len(batch), batch_size):
                    inputs = tokenizer(batch[i : i + batch_size], padding=True, return_tensors="pt")
                    hidden = model(**inputs, use_cache=False).last_hidden_state
                    mask = inputs["attention_mask"].unsqueeze(-1).float()
                    pooled = (hidden * mask).sum(1) / mask.sum(1)
                    out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
            return np.concatenate(out)

    load_seconds = time.perf_counter() - started
    encode(texts[:batch_size])  # warm-up: first-call allocations and kernels
    with PeakRss() as memory:
        start = time.perf_counter()
        vectors = encode(texts)
        seconds = time.perf_counter() - start
    return {
        "system": system,
        "seconds": seconds,
        "tokens_per_s": real_tokens / seconds,
        "texts_per_s": len(texts) / seconds,
        "real_tokens": real_tokens,
        "peak_rss_mb": memory.peak / 2**20,
        "vectors": np.asarray(vectors, dtype=np.float32)[:50].tolist(),
        "threads": torch.get_num_threads(),
        "load_seconds": load_seconds,
        "query_ms_p50": 1000 * float(np.percentile(latencies, 50)) if latencies else None,
        "query_ms_p95": 1000 * float(np.percentile(latencies, 95)) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=int, default=600, help="number of STS-B sentences")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per system")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "encode.json")
    parser.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma list of systems to run")
    args = parser.parse_args()
    if not STS.is_file():
        sys.exit(f"error: {STS} not found (the shared datasets folder is needed)")
    texts = load_texts(args.texts, args.seed)
    if args.child:
        print(json.dumps(run_one(args.child, texts, args.batch_size)))
        return

    import numpy as np

    chosen = [s for s in SYSTEMS if s in args.systems.split(",")]
    runs: dict[str, list[dict]] = {s: [] for s in chosen}
    for round_no in range(args.rounds):
        for system in chosen if round_no % 2 == 0 else list(reversed(chosen)):
            cmd = [
                sys.executable,
                __file__,
                "--child",
                system,
                "--texts",
                str(args.texts),
                "--batch-size",
                str(args.batch_size),
                "--seed",
                str(args.seed),
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            runs[system].append(result)
            print(
                f"round {round_no + 1} {system:22s} {result['tokens_per_s']:7.0f} tok/s "
                f"{result['peak_rss_mb']:6.0f} MB",
                file=sys.stderr,
            )

    summary = {}
    for system, results in runs.items():
        group = "default-torch" if DEFAULT_GROUP[system] else "ragkit"
        vectors = np.array(results[0]["vectors"])
        reference = np.array(runs[group][0]["vectors"]) if group in runs else vectors
        p50s = [r["query_ms_p50"] for r in results if r["query_ms_p50"] is not None]
        summary[system] = {
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in results),
            "texts_per_s": statistics.median(r["texts_per_s"] for r in results),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "min_cosine_vs_reference": float((vectors * reference).sum(1).min()),
            "load_seconds": statistics.median(r["load_seconds"] for r in results),
            "query_ms_p50": statistics.median(p50s) if p50s else None,
            "query_ms_p95": statistics.median(r["query_ms_p95"] for r in results) if p50s else None,
        }
    first = runs[chosen[0]][0]
    print(
        f"\n{args.texts} STS-B sentences, {first['real_tokens']} real tokens, "
        f"batch size {args.batch_size}, {first['threads']} threads, median of {args.rounds}\n"
    )
    print("| system | tokens/s | × its reference | peak RSS MB | load s | query p50 / p95 ms | min cosine |")
    print("|---|---|---|---|---|---|---|")
    for system, row in summary.items():
        base = summary.get("default-torch" if DEFAULT_GROUP[system] else "ragkit", row)["tokens_per_s"]
        p50, p95 = row["query_ms_p50"], row["query_ms_p95"]
        query = "–" if p50 is None else f"{p50:.0f} / {p95:.0f}"
        print(
            f"| {system} | {row['tokens_per_s']:.0f} | {row['tokens_per_s'] / base:.2f}x | "
            f"{row['peak_rss_mb']:.0f} | {row['load_seconds']:.1f} | {query} | "
            f"{row['min_cosine_vs_reference']:.6f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "summary": summary,
                "runs": {
                    s: [{k: v for k, v in r.items() if k != "vectors"} for r in rs] for s, rs in runs.items()
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
