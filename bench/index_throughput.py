"""Indexing throughput: `ragkit index` against LangChain's FAISS store with all-MiniLM-L6-v2.

    python bench/index_throughput.py [--docs docs] [--runs 2] [--out results.json]

Each run is a fresh process, interleaved round by round: ``ragkit index FOLDER`` into an
empty index (reading, chunking, embedding with the default encoder, SQLite and FAISS), and
LangChain's ``FAISS.from_texts`` with sentence-transformers all-MiniLM-L6-v2 over the chunks
ragkit made of the same folder (so both embed the same texts; LangChain's own splitting is
left out, which flatters it by the reading and chunking time). Reports wall time (with the
model load), chunks per second of the whole command, and ragkit's own encoding phase.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_output import emit

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

LANGCHAIN = """
import json, sys
from langchain_community.vectorstores import FAISS
from langchain_community.embeddings import HuggingFaceEmbeddings
from ragkit.evaluation.systems import minilm_folder
texts = json.load(open(sys.argv[1]))
store = FAISS.from_texts(texts, HuggingFaceEmbeddings(model_name=str(minilm_folder())))
store.save_local(sys.argv[2])
"""


def timed(command: list[str]) -> tuple[float, str]:
    """(seconds, stdout) of one fresh process."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{command[:3]} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started, done.stdout


def chunk_texts(index: Path) -> list[str]:
    from ragkit import Index

    opened = Index.open(index)
    return [row[0] for row in opened.db.execute("SELECT text FROM chunks ORDER BY id")]


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--docs", type=Path, default=HERE.parent / "docs")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {"ragkit index": [], "LangChain FAISS + all-MiniLM-L6-v2": []}
    encoding: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for run in range(args.runs):
            index = work / f"ragkit-{run}"
            command = [str(BIN / "ragkit"), "index", str(args.docs), "--index", str(index), "--json"]
            seconds, report = timed(command)
            walls["ragkit index"].append(seconds)
            encoding.append(float(json.loads(report).get("seconds", {}).get("encoding", 0.0)))
            texts = chunk_texts(index)
            (work / "texts.json").write_text(json.dumps(texts))
            langchain = [sys.executable, "-c", LANGCHAIN, str(work / "texts.json"), str(work / f"lc-{run}")]
            walls["LangChain FAISS + all-MiniLM-L6-v2"].append(timed(langchain)[0])
    chunks = len(texts)
    result: dict = {"folder": str(args.docs), "chunks": chunks, "runs": args.runs}
    for name, seconds in walls.items():
        median = statistics.median(seconds)
        result[name] = {"wall_s": [round(s, 1) for s in seconds], "chunks_per_s": round(chunks / median, 2)}
    result["ragkit index"]["encoding_phase_s"] = [round(s, 1) for s in encoding]
    emit(result, args.out)


if __name__ == "__main__":
    main()
