"""How far apart two encoders' vectors are on the same texts: the least and median cosine.

For a change meant to leave an encoder as it is (a rank cut, another engine, a precision), the
retrieval numbers can hide small drifts that the vectors show. Texts are the sentences of an
STS-B file (``score<TAB>sentence1<TAB>sentence2``, as ``ragkit eval --sts`` reads), each encoded
as a query (with the encoder's instruction) and as a document:

    python bench/encoder_agreement.py runs/soup runs/soup-r32 --sts ../shared/datasets/stsb/sts-test.tsv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from bench_output import emit

from ragkit import Encoder
from ragkit.evaluation.beir import DatasetError
from ragkit.evaluation.sts import load_sts


def sentences(path: Path, count: int) -> list[str]:
    """The first ``count`` distinct sentences of the file's pairs, in file order."""
    _, first, second = load_sts(path)
    distinct = dict.fromkeys(text for pair in zip(first, second, strict=True) for text in pair)
    return list(distinct)[:count]


def agreement(first: Encoder, second: Encoder, texts: list[str]) -> dict:
    """Least and median cosine per text, for queries (instruction included) and documents apart."""
    result = {}
    for encode in ("encode_queries", "encode_documents"):
        cosine = (getattr(first, encode)(texts) * getattr(second, encode)(texts)).sum(1)
        result[encode] = {"min": round(float(cosine.min()), 7), "median": round(float(np.median(cosine)), 7)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--sts", type=Path, required=True, help="an STS-B style TSV")
    parser.add_argument("--texts", type=int, default=300)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    try:
        texts = sentences(args.sts, args.texts)
    except DatasetError as exc:
        raise SystemExit(f"error: {exc}") from None
    first, second = (Encoder.from_pretrained(name, backend="torch") for name in (args.first, args.second))
    result = {"first": first.fingerprint, "second": second.fingerprint, "texts": len(texts)}
    emit(result | agreement(first, second, texts), args.out)


if __name__ == "__main__":
    main()
