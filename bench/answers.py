"""Answer quality on questions about ``docs/``: does the shown answer contain the fact?

For each question of ``tests/data/answer-questions.jsonl`` (a split: ``dev`` chose the
thresholds, ``test`` reports), retrieves the top 5 passages from an index of ``docs/`` and
answers extractively and, with ``--generate``, with the packaged SmolLM2-135M-Instruct
through the grounding check. Records whether the answer contains the question's fact,
whether an unanswerable question was declined, what the check removed, any term of a shown
answer found in no passage (should be none) and the seconds per answer. Per generated
sentence it also records the support measures, for calibrating the check.

    python bench/answers.py --index .ragkit --split test --generate --out bench/results/answers-test.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ragkit.answer import answer
from ragkit.answer.grounding import GroundingCheck, invented_terms
from ragkit.answer.prompt import citation_numbers, strip_citations
from ragkit.answer.words import content_words, overlap
from ragkit.documents.sentences import split_sentences
from ragkit.search.index import Index

QUESTIONS = Path(__file__).resolve().parent.parent / "tests" / "data" / "answer-questions.jsonl"


class Recorder:
    """A chat model wrapper that keeps the raw generated text, before the check."""

    def __init__(self, model):
        self.model, self.raw = model, ""

    def stream(self, messages):
        self.raw = ""
        for piece in self.model.stream(messages):
            self.raw += piece
            yield piece


def contains(text: str, fact: str | None) -> bool:
    return bool(fact) and fact.lower() in " ".join(text.split()).lower()


def support_rows(raw: str, result, index) -> list[dict]:
    """Each raw generated sentence with its best overlap and cosine over the passages it cites."""
    from ragkit.answer.extractive import score_sentences

    hits = result.hits
    check = GroundingCheck(hits, index.encoder, score_sentences(result.query, hits, index.encoder))
    rows = []
    for sentence in split_sentences(raw):
        bare = strip_citations(sentence)
        cited = [n for n in citation_numbers(sentence) if 1 <= n <= len(hits)]
        vector = index.encoder.encode_documents([bare], show_progress=False)[0]
        best_overlap = best_cosine = 0.0
        for n in cited:
            best_overlap = max(best_overlap, overlap(content_words(bare), check.passage_words[n - 1]))
            rows_of = [i for i, s in enumerate(check.sentences) if s.passage == n]
            if rows_of:
                best_cosine = max(best_cosine, float(np.max(check.vectors[rows_of] @ vector)))
        rows.append(
            {
                "sentence": sentence,
                "cited": cited,
                "overlap": round(best_overlap, 3),
                "cosine": round(best_cosine, 3),
                "kept": check.supported(sentence) and not invented_terms(sentence, check.passages_text),
            }
        )
    return rows


def run(index: Index, rows: list[dict], generator) -> list[dict]:
    records = []
    for row in rows:
        hits = index.search(row["question"], k=5)
        record = {"question": row["question"], "fact": row["fact"]}
        started = time.perf_counter()
        extracted = answer(index, row["question"], hits=hits)
        record["extract"] = {
            "seconds": round(time.perf_counter() - started, 2),
            "text": extracted.text,
            "answered": extracted.answered,
            "contains_fact": contains(extracted.text, row["fact"]),
            "invented_shown": invented_terms(extracted.text, "\n".join(h.text for h in hits)),
        }
        if generator is not None:
            started = time.perf_counter()
            generated = answer(index, row["question"], hits=hits, mode="generate", generator=generator)
            record["generate"] = {
                "seconds": round(time.perf_counter() - started, 2),
                "raw": generator.raw,
                "text": generated.text,
                "mode": generated.mode,
                "contains_fact": contains(generated.text, row["fact"]),
                "raw_contains_fact": contains(generator.raw, row["fact"]),
                "removed_sentences": generated.removed_sentences,
                "invented_removed": generated.invented,
                "invented_shown": invented_terms(generated.text, "\n".join(h.text for h in hits)),
                "sentences": support_rows(generator.raw, generated, index),
            }
        records.append(record)
        print(json.dumps({k: v for k, v in record.items() if k in ("question", "extract")})[:300], flush=True)
    return records


def summary(records: list[dict]) -> dict:
    answerable = [r for r in records if r["fact"]]
    declined = [r for r in records if not r["fact"]]
    out = {
        "questions": len(records),
        "answerable": len(answerable),
        "extract_contains_fact": sum(r["extract"]["contains_fact"] for r in answerable),
        "extract_declined_unanswerable": sum(not r["extract"]["answered"] for r in declined),
        "extract_answered_answerable": sum(r["extract"]["answered"] for r in answerable),
        "extract_invented_shown": sum(len(r["extract"]["invented_shown"]) for r in records),
        "extract_seconds_mean": round(float(np.mean([r["extract"]["seconds"] for r in records])), 2),
    }
    generated = [r for r in records if "generate" in r]
    if generated:
        g = [r["generate"] for r in generated]
        facts = [x for x, r in zip(g, generated, strict=True) if r["fact"]]
        out |= {
            "generate_contains_fact": sum(x["contains_fact"] for x in facts),
            "generate_raw_contains_fact": sum(x["raw_contains_fact"] for x in facts),
            "generate_kept_generated": sum(x["mode"] == "generate" for x in g),
            "generate_fell_back": sum(x["mode"] == "extract" for x in g),
            "generate_removed_sentences": sum(x["removed_sentences"] for x in g),
            "generate_raw_sentences": sum(len(x["sentences"]) for x in g),
            "generate_invented_removed": sum(len(x["invented_removed"]) for x in g),
            "generate_invented_shown": sum(len(x["invented_shown"]) for x in g),
            "generate_seconds_mean": round(float(np.mean([x["seconds"] for x in g])), 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default=".ragkit", help="an index of docs/")
    parser.add_argument("--split", default="test", choices=["dev", "test"])
    parser.add_argument("--generate", action="store_true", help="also generated answers (SmolLM2)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["split"] == args.split]
    index = Index.open(args.index)
    generator = None
    if args.generate:
        from ragkit.answer.generator import ChatModel

        generator = Recorder(ChatModel())
    records = run(index, rows, generator)
    result = {"split": args.split, "summary": summary(records), "records": records}
    print(json.dumps(result["summary"], indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
