"""A cold search with the NumPy query engine against the same search on the lean torch engine.

    python bench/torch_free_query.py [--index DIR] [--runs 3] [--out results.json]

A fresh process opens the index and searches it (hybrid, k=5) as ``ragkit ask`` does, which
uses the NumPy engine (ragkit/encoder/numpy_engine.py) once it is verified: it checks that
neither torch nor transformers was imported. Interleaved with it, round by round: the same
search with the encoder loaded ``backend="lean"`` (the light torch forward). One ``ragkit ask``
runs first, so the merged cache and the NumPy verdict exist. Reports the cold wall time, peak
RSS, the engine, whether torch was imported, the hits of each and the cosine between the two
query vectors.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from ask_memory import measure as fresh_process
from bench_output import emit

HERE = Path(__file__).resolve().parent
QUERY = "How do I resume an interrupted training run?"

NUMPY_QUERY = r"""
import json, sys
from ragkit import Index
index = Index.open(sys.argv[1])
hits = index.search(sys.argv[2], k=5)
vector = index.encoder.encode_queries([sys.argv[2]])[0]
print(json.dumps({"hits": [h.chunk_id for h in hits], "engine": type(index.encoder).__name__,
                  "torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules,
                  "vector": vector.tolist()}))
"""

LEAN_QUERY = r"""
import json, sys
from ragkit import Index
from ragkit.encoder import Encoder
index = Index.open(sys.argv[1], encoder=Encoder.from_pretrained("default", backend="lean"))
hits = index.search(sys.argv[2], k=5)
vector = index.encoder.encode_queries([sys.argv[2]])[0]
print(json.dumps({"hits": [h.chunk_id for h in hits], "engine": type(index.encoder.model).__name__,
                  "torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules,
                  "vector": vector.tolist()}))
"""


def measure(command: list[str]) -> tuple[float, float, dict]:
    """(seconds, peak RSS in MB, the child's JSON line) of one fresh process."""
    seconds, peak, output = fresh_process(command)
    return seconds, peak, json.loads(output.splitlines()[-1])


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--index", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        index = args.index
        if index is None:
            index = Path(tmp) / "index"
            subprocess.run(
                [sys.executable, "-m", "ragkit", "index", str(HERE.parent / "docs"), "--index", str(index)],
                check=True,
                capture_output=True,
            )
        warm_up = [sys.executable, "-m", "ragkit", "ask", QUERY, "--index", str(index)]
        subprocess.run(warm_up, check=True, capture_output=True)  # builds caches and the verdict
        systems = {
            "Index.search, NumPy engine (as ragkit ask)": [
                sys.executable,
                "-c",
                NUMPY_QUERY,
                str(index),
                QUERY,
            ],
            "Index.search, lean torch engine": [sys.executable, "-c", LEAN_QUERY, str(index), QUERY],
        }
        rows: dict[str, list] = {name: [] for name in systems}
        for _ in range(args.runs):
            for name, command in systems.items():
                rows[name].append(measure(command))
    result: dict = {"query": QUERY, "runs": args.runs}
    vectors = {}
    for name, runs in rows.items():
        last = runs[-1][2]
        vectors[name] = last.pop("vector")
        result[name] = {
            "cold_s_median": round(statistics.median(r[0] for r in runs), 2),
            "cold_s": [round(r[0], 2) for r in runs],
            "peak_rss_mb_median": round(statistics.median(r[1] for r in runs)),
            **last,
        }
    import numpy as np

    a, b = (np.asarray(v) for v in vectors.values())
    result["query_vector_cosine"] = round(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))), 6)
    emit(result, args.out)


if __name__ == "__main__":
    main()
