"""How far can pseudo-queries be trusted? Rank the systems both ways on ``docs/`` and compare.

1. ``ragkit eval docs`` as a user runs it: heading and cloze queries made from the sections.
2. The same sections as a corpus, with the hand-written questions of
   ``tests/data/answer-questions.jsonl`` (both splits, answerable ones) as queries; a section
   is relevant when it contains the question's fact.
Reports every system's nDCG@10 both ways and Kendall's tau between the two rankings of the
systems.

With ``--beir``, the folder is a BEIR dataset instead: its corpus (sampled with
``--max-docs`` as ``ragkit eval`` samples it) is written as Markdown files, title as the
heading and the text as its section, and pseudo-queries made from those files are compared
with the dataset's real test queries on the same documents.

    python bench/pseudo_validity.py docs --out eval-results/pseudo-validity-docs.json
    python bench/pseudo_validity.py ../shared/datasets/scifact --beir --max-docs 983 \
        --out eval-results/pseudo-validity-scifact.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench_output import emit
from scipy.stats import kendalltau

from ragkit.evaluation.retrieval import evaluate_retrieval
from ragkit.trainer.corpus import load_corpus

QUESTIONS = Path(__file__).resolve().parent.parent / "tests" / "data" / "answer-questions.jsonl"
SYSTEMS = "ragkit,causal-mean,causal-last,bidirectional-mean,bm25,hybrid"


def real_questions_set(folder: Path, target: Path) -> int:
    """Write the sections and the hand-written questions as a BEIR folder; returns the query count."""
    sections = load_corpus(folder).titled
    corpus = {f"{document}#{n}": body for n, (_, body, document) in enumerate(sections)}
    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    qrels = []
    queries = {}
    for n, row in enumerate(r for r in rows if r["fact"]):
        relevant = [d for d, text in corpus.items() if row["fact"] in " ".join(text.split()).lower()]
        if relevant:
            queries[f"q{n}"] = row["question"]
            qrels += [(f"q{n}", d) for d in relevant]
    (target / "qrels").mkdir(parents=True)
    with open(target / "corpus.jsonl", "w") as handle:
        for doc_id, text in corpus.items():
            handle.write(json.dumps({"_id": doc_id, "title": "", "text": text}) + "\n")
    with open(target / "queries.jsonl", "w") as handle:
        for query_id, text in queries.items():
            handle.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    lines = "".join(f"{q}\t{d}\t1\n" for q, d in qrels)
    (target / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + lines)
    return len(queries)


def beir_as_documents(dataset: Path, max_docs: int | None, target: Path) -> int:
    """Write the (sampled) corpus as Markdown files, one per document; returns how many."""
    from ragkit.evaluation.beir import load_beir, subsample

    beir = load_beir(dataset, "test")
    if max_docs is not None:
        beir = subsample(beir, max_docs, seed=0)
    titles = {}
    with open(dataset / "corpus.jsonl") as handle:
        for line in handle:
            row = json.loads(line)
            titles[row["_id"]] = (row.get("title") or "", row["text"])
    target.mkdir(parents=True)
    for doc_id in beir.corpus:
        title, text = titles[doc_id]
        (target / f"{doc_id}.md").write_text(f"# {title or doc_id}\n\n{text}\n")
    return len(beir.corpus)


def by_kind(per_query: dict[str, float]) -> dict[str, float]:
    """Mean nDCG@10 of the heading queries and of the cloze queries."""
    kinds: dict[str, list[float]] = {}
    for query, value in per_query.items():
        kinds.setdefault(query.split(":", 1)[0], []).append(value)
    return {kind: round(sum(v) / len(v), 3) for kind, v in kinds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument(
        "--beir", action="store_true", help="FOLDER is a BEIR dataset: compare with its real queries"
    )
    parser.add_argument("--max-docs", type=int)
    parser.add_argument("--systems", default=SYSTEMS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        if args.beir:
            documents = Path(scratch) / "documents"
            beir_as_documents(args.folder, args.max_docs, documents)
            pseudo = evaluate_retrieval(documents, systems=args.systems)
            real = evaluate_retrieval(args.folder, systems=args.systems, max_docs=args.max_docs)
            count = real["num_queries"]
        else:
            pseudo = evaluate_retrieval(args.folder, systems=args.systems)
            count = real_questions_set(args.folder, Path(scratch) / "real")
            real = evaluate_retrieval(Path(scratch) / "real", systems=args.systems)
    names = list(pseudo["systems"])
    scores = {n: (pseudo["systems"][n]["ndcg@10"], real["systems"][n]["ndcg@10"]) for n in names}
    tau, p = kendalltau([s[0] for s in scores.values()], [s[1] for s in scores.values()])
    result = {
        "pseudo_queries": pseudo["query_kinds"],
        "real_questions": count,
        "corpus_size": pseudo["corpus_size"],
        "ndcg@10": {n: {"pseudo": round(a, 3), "real": round(b, 3)} for n, (a, b) in scores.items()},
        "pseudo_ndcg@10_by_kind": {n: by_kind(pseudo["per_query_ndcg@10"][n]) for n in names},
        "kendall_tau": round(float(tau), 3),
        "p_value": round(float(p), 3),
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
