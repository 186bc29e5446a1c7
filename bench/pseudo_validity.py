"""How far can pseudo-queries be trusted? Rank the systems both ways on ``docs/`` and compare.

1. ``ragkit eval docs`` as a user runs it: heading and cloze queries made from the sections.
2. The same sections as a corpus, with the hand-written questions of
   ``tests/data/answer-questions.jsonl`` (both splits, answerable ones) as queries; a section
   is relevant when it contains the question's fact.
Reports every system's nDCG@10 both ways and Kendall's tau between the two rankings of the
systems.

    python bench/pseudo_validity.py docs --out eval-results/pseudo-validity-docs.json
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--systems", default=SYSTEMS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    pseudo = evaluate_retrieval(args.folder, systems=args.systems)
    with tempfile.TemporaryDirectory() as scratch:
        count = real_questions_set(args.folder, Path(scratch) / "real")
        real = evaluate_retrieval(Path(scratch) / "real", systems=args.systems)
    names = list(pseudo["systems"])
    scores = {n: (pseudo["systems"][n]["ndcg@10"], real["systems"][n]["ndcg@10"]) for n in names}
    tau, p = kendalltau([s[0] for s in scores.values()], [s[1] for s in scores.values()])
    result = {
        "pseudo_queries": pseudo["query_kinds"],
        "real_questions": count,
        "ndcg@10": {n: {"pseudo": round(a, 3), "real": round(b, 3)} for n, (a, b) in scores.items()},
        "kendall_tau": round(float(tau), 3),
        "p_value": round(float(p), 3),
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
