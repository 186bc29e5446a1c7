"""`ragkit index --ray` on a local Ray cluster against the single-process run, same documents.

    python bench/ray_index.py --docs 2000 [--also-docs-folder] [--workers 1,2] [--out FILE]

Writes N SciFact abstracts as Markdown files (title as heading), indexes them once in this
process and once per worker count on a local Ray cluster (each run joins and leaves its own
cluster, as the CLI does), and reports each run's wall time, its encoding phase, the chunks'
equality with the single-process index (same texts, lines and headings, smallest cosine
between stored vectors) and Ray's overhead: the wall time beyond the single-process run, and
how long starting the cluster alone takes. Then it measures the driver's single SQLite
writer: documents replaced per second with their chunks, FTS5 entries and vectors, which
bounds how fast any number of workers can fill one index.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_output import emit

from ragkit.indexer.builder import IndexOptions, build_index

HERE = Path(__file__).resolve().parent
SCIFACT = HERE.parent.parent / "shared" / "datasets" / "scifact" / "corpus.jsonl"


def write_abstracts(folder: Path, count: int) -> list[str]:
    folder.mkdir(parents=True)
    texts = []
    with open(SCIFACT) as handle:
        for line, _ in zip(handle, range(count), strict=False):
            record = json.loads(line)
            (folder / f"{record['_id']}.md").write_text(f"# {record['title']}\n\n{record['text']}\n")
            texts.append(record["text"])
    return texts


def chunk_rows(index: Path) -> dict:
    db = sqlite3.connect(index / "index.db")
    rows = db.execute(
        "SELECT d.path, c.ordinal, c.text, c.start_line, c.end_line, c.heading, c.vector "
        "FROM chunks c JOIN documents d ON d.id = c.document_id"
    )
    return {(r[0], r[1]): (r[2:6], np.frombuffer(r[6], dtype=np.float16).astype(np.float32)) for r in rows}


def compare(ours: Path, reference: Path) -> dict:
    a, b = chunk_rows(ours), chunk_rows(reference)
    same = a.keys() == b.keys() and all(a[k][0] == b[k][0] for k in a)
    cosines = [
        float(a[k][1] @ b[k][1] / (np.linalg.norm(a[k][1]) * np.linalg.norm(b[k][1]))) for k in a if k in b
    ]
    return {"chunks": len(a), "same_chunks": same, "min_cosine": round(min(cosines), 6) if cosines else None}


def timed_run(docs: Path, index: Path, **ray) -> tuple[float, dict]:
    started = time.perf_counter()
    summary = build_index(IndexOptions(source=docs, index_dir=index, **ray))
    return time.perf_counter() - started, {k: round(v, 1) for k, v in summary.seconds.items()}


def cluster_start_seconds() -> float:
    import ray

    from ragkit.indexer import distributed

    started = time.perf_counter()
    with distributed.session("local"):
        ray.cluster_resources()
        return time.perf_counter() - started


def sqlite_insert_rate(texts: list[str], dimension: int = 576, per_document: int = 4) -> dict:
    """Documents (and chunks) per second the driver's writer stores, 64 documents a commit."""
    from ragkit.indexer import store
    from ragkit.indexer.chunking import Chunk

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        db = store.connect(Path(tmp))
        store.create_schema(db)
        started = time.perf_counter()
        for start in range(0, len(texts), 64):
            with db.conn:
                for i, text in enumerate(texts[start : start + 64], start):
                    pieces = [text[j::per_document] for j in range(per_document)]
                    chunks = [Chunk(p, 1, 1, "", len(p) // 4) for p in pieces]
                    vectors = rng.standard_normal((per_document, dimension)).astype(np.float32)
                    store.replace_document(
                        db,
                        path=f"d{i}.md",
                        hash="",
                        mtime=0,
                        size=0,
                        metadata={},
                        chunks=chunks,
                        vectors=vectors,
                    )
        seconds = time.perf_counter() - started
    return {
        "documents_per_s": round(len(texts) / seconds, 1),
        "chunks_per_s": round(len(texts) * per_document / seconds, 1),
    }


def run_folder(docs: Path, work: Path, workers: list[int]) -> dict:
    single_s, single_phases = timed_run(docs, work / "single")
    result = {"single_process": {"wall_s": round(single_s, 1), "phases_s": single_phases}}
    for count in workers:
        index = work / f"ray-{count}"
        wall, phases = timed_run(docs, index, ray="local", ray_workers=count)
        result[f"ray_{count}_workers"] = {
            "wall_s": round(wall, 1),
            "phases_s": phases,
            "vs_single": round(wall / single_s, 3),
            "overhead_share": round((wall - single_s) / wall, 3),
            **compare(index, work / "single"),
        }
    return result


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--also-docs-folder", action="store_true", help="also index the repository's docs/")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    result: dict = {"cluster_start_s": round(cluster_start_seconds(), 2)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.also_docs_folder:
            result["docs_folder"] = run_folder(HERE.parent / "docs", work / "docs-runs", workers)
        texts = write_abstracts(work / "abstracts", args.docs)
        result["scifact_abstracts"] = {
            "documents": args.docs,
            **run_folder(work / "abstracts", work / "runs", workers),
        }
        result["sqlite_writer"] = sqlite_insert_rate(texts)
    emit(result, args.out)


if __name__ == "__main__":
    main()
