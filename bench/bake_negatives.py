"""Write a copy of a pairs file with the hard negatives BM25/group mining gives it baked in.

``ragkit train --negatives-from teacher`` never re-mines a row that brings its own negative,
so a set passed through this keeps the shipped recipe's negatives while the other sets get the
teacher's: how the EVAL section "Teacher-mined negatives on the retrieval sets only" trains.

    python bench/bake_negatives.py data/wiki-sentences.jsonl.gz --out runs/baked/wiki-sentences-bm25.jsonl.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

from ragkit.trainer.negatives import mine_negatives
from ragkit.trainer.pairs import read_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    mined = mine_negatives(read_pairs([args.pairs]))
    opener = gzip.open if args.pairs.suffix == ".gz" else open
    with opener(args.pairs, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    if len(rows) != len(mined.pairs):
        raise SystemExit(f"{args.pairs}: {len(rows)} rows read, {len(mined.pairs)} pairs")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(args.out, "wt", encoding="utf-8") as out:
        for row, pair in zip(rows, mined.pairs, strict=True):
            if pair.negatives and "negative" not in row:
                row["negative"] = pair.negatives[0]
            out.write(json.dumps(row) + "\n")
    print(f"{args.out}: {len(rows):,} rows, {mined.mined:,} negatives baked in")


if __name__ == "__main__":
    main()
