"""Sentence-level training pairs for the supervised stage, built without labels.

STS-style similarity is about short texts whose meanings overlap by degree, which the
question-passage sets barely teach. Two weak sources give such pairs, and a teacher's
distillation term supplies the graded scores:

- neighbouring sentences of one packaged Wikipedia summary (``group`` = the article, so
  ``--mine-negatives`` gives another sentence of the same article as the hard negative);
- two SQuAD questions written on the same paragraph (``group`` = the article).

Both sides are plain texts, so each row's ``instruction`` is empty: sentences are compared
as they are at similarity time, without the retrieval instruction.

    python bench/similarity_pairs.py --squad ../shared/datasets/train/squad.jsonl.gz --out data/

writes ``wiki-sentences.jsonl.gz`` and ``squad-questions.jsonl.gz`` for ``ragkit train --pairs``.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import random
from pathlib import Path

from ragkit.documents.sentences import split_sentences
from ragkit.trainer.corpus import load_corpus

MIN_WORDS = 5


def wiki_sentence_pairs() -> list[dict]:
    """(sentence k, sentence k+1) of every summary, for sentences of at least MIN_WORDS words."""
    corpus = load_corpus(None)
    rows = []
    for title, text, _ in corpus.titled:
        sentences = [s for s in split_sentences(text) if len(s.split()) >= MIN_WORDS]
        for first, second in itertools.pairwise(sentences):
            rows.append({"query": first, "positive": second, "group": title, "instruction": ""})
    return rows


def squad_question_pairs(path: Path, seed: int) -> list[dict]:
    """Two questions on the same paragraph, each paragraph's questions paired in a seeded ring."""
    by_paragraph: dict[tuple[str, str], list[str]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            if row.get("split", "train") != "train":
                continue
            key = (str(row.get("group", "")), row["positive"])
            by_paragraph.setdefault(key, []).append(row["query"])
    rng = random.Random(seed)
    rows = []
    for (group, _), questions in sorted(by_paragraph.items()):
        questions = sorted(set(questions))
        if len(questions) < 2:
            continue
        rng.shuffle(questions)
        for a, b in zip(questions, questions[1:] + questions[:1], strict=True):
            rows.append({"query": a, "positive": b, "group": group, "instruction": ""})
            if len(questions) == 2:
                break
    return rows


def write(rows: list[dict], path: Path) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows):,} pairs -> {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--squad", type=Path, required=True, help="squad.jsonl.gz (train rows are used)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the two .jsonl.gz files")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    write(wiki_sentence_pairs(), args.out / "wiki-sentences.jsonl.gz")
    write(squad_question_pairs(args.squad, args.seed), args.out / "squad-questions.jsonl.gz")


if __name__ == "__main__":
    main()
