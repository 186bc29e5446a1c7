"""Cold `ragkit ask`: wall time and peak memory, per query backend, against LangChain's FAISS.

    python bench/ask_memory.py [--index DIR] [--runs 5] [--out results.json]

Indexes docs/ (unless --index names an index already built with the default encoder), then
runs each system as a fresh process, interleaved round by round, and reads its peak RSS
from the kernel (``ru_maxrss`` of the finished child):

- ``ragkit ask`` itself (the CLI, whose ``Index`` loads the NumPy query engine once it is
  verified, else the ``lean`` one);
- ``Index.open`` + ``search`` with the encoder loaded ``backend="light"``, ``"openvino"`` and
  ``"torch"``, so the engines' costs sit side by side, with the hits each returns;
- LangChain's FAISS store with sentence-transformers all-MiniLM-L6-v2 over the same chunks
  (built once, outside the timing), loaded and queried cold.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUERY = "How do I resume an interrupted training run?"
BIN = Path(sys.executable).parent

RAGKIT_BACKEND = """
import sys
from ragkit import Index
from ragkit.encoder import Encoder
index = Index.open(sys.argv[1], encoder=Encoder.from_pretrained("default", backend=sys.argv[2]))
print([h.chunk_id for h in index.search(sys.argv[3], k=5)])
"""

LANGCHAIN_BUILD = """
import sys
from langchain_community.vectorstores import FAISS
from langchain_community.embeddings import HuggingFaceEmbeddings
from ragkit import Index
from ragkit.evaluation.systems import minilm_folder
index = Index.open(sys.argv[1])
texts = [row[0] for row in index.db.execute("SELECT text FROM chunks ORDER BY id")]
store = FAISS.from_texts(texts, HuggingFaceEmbeddings(model_name=str(minilm_folder())))
store.save_local(sys.argv[2])
"""

LANGCHAIN_ASK = """
import sys
from langchain_community.vectorstores import FAISS
from langchain_community.embeddings import HuggingFaceEmbeddings
from ragkit.evaluation.systems import minilm_folder
store = FAISS.load_local(sys.argv[1], HuggingFaceEmbeddings(model_name=str(minilm_folder())),
                         allow_dangerous_deserialization=True)  # our own file, written above
print(len(store.similarity_search_with_score(sys.argv[2], k=5)))
"""


def measure(command: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, stdout) of one fresh process."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    _pid, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    output = child.stdout.read() if child.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command[:3]} failed")
    return seconds, usage.ru_maxrss / 1024, output.strip()


def systems(index: Path, store: Path | None) -> dict[str, list[str]]:
    python = str(BIN / "python")
    found = {
        "ragkit ask (CLI; NumPy engine once verified)": [
            str(BIN / "ragkit"),
            "ask",
            QUERY,
            "--index",
            str(index),
            "--json",
        ]
    }
    for backend in ("light", "openvino", "torch"):
        found[f"Index.search, backend={backend}"] = [python, "-c", RAGKIT_BACKEND, str(index), backend, QUERY]
    if store is not None:
        found["LangChain FAISS + all-MiniLM-L6-v2"] = [python, "-c", LANGCHAIN_ASK, str(store), QUERY]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ask-memory-"))
    index = args.index or work / "index"
    if args.index is None:
        docs = str(HERE.parent / "docs")
        subprocess.run([str(BIN / "ragkit"), "index", docs, "--index", str(index)], check=True)
    store = work / "langchain"
    try:
        subprocess.run([str(BIN / "python"), "-c", LANGCHAIN_BUILD, str(index), str(store)], check=True)
    except subprocess.CalledProcessError:
        store = None
    commands = systems(index, store)
    for command in commands.values():
        measure(command)  # warm the caches (merged weights, engine) before timing
    rows: dict[str, dict] = {name: {"seconds": [], "peak_mb": [], "output": ""} for name in commands}
    for _ in range(args.runs):
        for name, command in commands.items():
            seconds, peak, output = measure(command)
            rows[name]["seconds"].append(seconds)
            rows[name]["peak_mb"].append(peak)
            rows[name]["output"] = output if "[" in output[:1] else rows[name]["output"]
    print(f"| system | cold s, median of {args.runs} | peak RSS MB, median | hits |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        seconds, peak = statistics.median(row["seconds"]), statistics.median(row["peak_mb"])
        print(f"| {name} | {seconds:.2f} | {peak:.0f} | {row['output'] or '-'} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
