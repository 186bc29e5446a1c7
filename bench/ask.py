"""Search latency: ragkit cold start and warm queries vs LangChain's FAISS store, same encoder.

    python bench/ask.py [--chunks 10000] [--runs 5]

Builds a synthetic index of N chunks (real text from SciFact abstracts, random unit vectors
stored under the default encoder's fingerprint: search cost does not depend on the vector
values, and embedding 10k chunks would take an hour on this CPU). Then measures:

- cold: `ragkit ask QUERY --json` as a fresh process, from start to printed hits;
- warm: p50/p95 over 100 queries in one process of the query's encoding alone, of
  `Index.search(hybrid=False)` and of the default hybrid `Index.search`;
- LangChain: `FAISS.load_local` + `similarity_search` with `RagkitEmbeddings`, as a fresh
  process (load plus query), on the same vectors.
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

HERE = Path(__file__).resolve().parent
SCIFACT = HERE.parent.parent / "shared" / "datasets" / "scifact" / "corpus.jsonl"
QUERY = "What causes the immune response to vaccines?"


def synthetic_index(folder: Path, chunks: int) -> None:
    import numpy as np

    from ragkit.encoder import Encoder
    from ragkit.indexer import store, vectors

    encoder = Encoder.from_pretrained("default")
    texts = [json.loads(line)["text"][:1200] for line in SCIFACT.open()]
    db = store.connect(folder)
    store.create_schema(db)
    rng = np.random.default_rng(0)
    per_doc = 50

    class Piece:
        def __init__(self, text: str):
            self.text, self.start_line, self.end_line, self.heading, self.tokens = text, 1, 1, "", 0

    with db.conn:
        for doc in range(chunks // per_doc):
            batch = [Piece(texts[(doc * per_doc + i) % len(texts)]) for i in range(per_doc)]
            vecs = rng.standard_normal((per_doc, encoder.dimension)).astype("float32")
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            store.replace_document(
                db,
                path=f"doc-{doc}.md",
                hash=str(doc),
                mtime=0.0,
                size=0,
                metadata={},
                chunks=batch,
                vectors=vecs,
            )
    spec = vectors.choose("auto", chunks, encoder.dimension)
    vectors.write_atomic(
        vectors.build(spec, encoder.dimension, store.all_vectors(db, encoder.dimension)), folder
    )
    store.set_meta(
        db,
        {
            "schema_version": str(store.SCHEMA_VERSION),
            "encoder": "default",
            "encoder_fingerprint": encoder.fingerprint,
            "dimension": str(encoder.dimension),
            "index_spec": spec.to_dict(),
            "root": "synthetic",
            "chunk_tokens": "256",
            "overlap": "32",
            "updated_at": str(time.time()),
        },
    )
    db.conn.commit()


def langchain_store(index_dir: Path, target: Path) -> None:
    from langchain_community.vectorstores import FAISS

    from ragkit.indexer import store
    from ragkit.integrations.langchain import RagkitEmbeddings

    db = store.connect(index_dir, readonly=True)
    dimension = int(store.get_meta(db)["dimension"])
    pairs, metadatas = [], []
    for chunk_id, text, vector in db.execute("SELECT id, text, vector FROM chunks ORDER BY id"):
        import numpy as np

        pairs.append((text, np.frombuffer(vector, dtype=np.float16).astype("float32").tolist()))
        metadatas.append({"chunk_id": chunk_id})
    assert len(pairs[0][1]) == dimension
    FAISS.from_embeddings(pairs, RagkitEmbeddings("default"), metadatas=metadatas).save_local(str(target))


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build the indexes here and keep them (reused if present)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        index_dir, lc_dir = work / "index", work / "langchain"
        if not (index_dir / "vectors.faiss").is_file():
            synthetic_index(index_dir, args.chunks)
        if not lc_dir.is_dir():
            langchain_store(index_dir, lc_dir)
        ragkit_cmd = [sys.executable, "-m", "ragkit", "ask", QUERY, "-i", str(index_dir), "--json"]
        lc_code = (
            "from langchain_community.vectorstores import FAISS;"
            "from ragkit.integrations.langchain import RagkitEmbeddings;"
            f"s = FAISS.load_local({str(lc_dir)!r}, RagkitEmbeddings('default'),"
            " allow_dangerous_deserialization=True);"
            f"print(s.similarity_search_with_score({QUERY!r}, k=5))"
        )
        lc_cmd = [sys.executable, "-c", lc_code]
        cold, lc = [], []
        for _ in range(args.runs):  # interleaved, so machine noise hits both alike
            cold.append(timed(ragkit_cmd))
            lc.append(timed(lc_cmd))

        from ragkit.search.index import Index

        index = Index.open(index_dir)
        index.search(QUERY, k=5)  # load the encoder
        queries = [json.loads(line)["title"] for _, line in zip(range(100), SCIFACT.open(), strict=False)]
        warm = {}
        for label, run in (
            ("encode_query", lambda q: index.encoder.encode_queries([q], show_progress=False)),
            ("search_dense", lambda q: index.search(q, k=5, hybrid=False)),
            ("search_hybrid", lambda q: index.search(q, k=5)),
        ):
            times = []
            for query in queries:
                started = time.perf_counter()
                run(query)
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            warm[f"warm_{label}_ms_p50"] = round(statistics.median(times), 1)
            warm[f"warm_{label}_ms_p95"] = round(times[int(0.95 * len(times)) - 1], 1)
        warm["light_encoder"] = type(index.encoder.model).__name__
    result = {
        "chunks": args.chunks,
        "ragkit_cold_s_median": round(statistics.median(cold), 2),
        "ragkit_cold_s_runs": [round(x, 2) for x in cold],
        "langchain_faiss_load_and_query_s_median": round(statistics.median(lc), 2),
        "langchain_runs": [round(x, 2) for x in lc],
        "cold_ratio_langchain_over_ragkit": round(statistics.median(lc) / statistics.median(cold), 2),
        **warm,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
