"""What ``--dtype auto`` chooses for documents on this CPU, and how fast each choice embeds.

    python bench/document_precision.py [--docs docs/] [--rounds 3] [--out results.json]

Runs the fidelity check of ``ragkit/encoder/document_precision.py`` for the default encoder
(probe texts stored with ragkit, fp32 reference against the bf16 OpenVINO engine where the
CPU has native bf16), then embeds the paragraphs of a documentation folder, round by round
interleaved, with torch fp32 (transformers), the fp32 engine ``backend="auto"`` picks, and
the engine ``auto`` chose. Reports the verdict (cosine, top-10 agreement) and texts/s of
each, with the ratio to torch fp32 measured in the same rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench_output import emit

from ragkit.encoder import Encoder
from ragkit.encoder.document_precision import choose
from ragkit.hardware import cpu_bf16_features

HERE = Path(__file__).resolve().parent


def paragraphs(folder: Path, limit: int) -> list[str]:
    texts = []
    for path in sorted(folder.rglob("*.md")):
        for block in path.read_text(encoding="utf-8").split("\n\n"):
            block = " ".join(block.split())
            if len(block) >= 200 and not block.startswith(("```", "|")):
                texts.append(block)
    return texts[:limit]


def rate(encoder: Encoder, texts: list[str]) -> float:
    started = time.perf_counter()
    encoder.encode_documents(texts, show_progress=False, warn_truncated=False)
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--docs", type=Path, default=HERE.parent / "docs")
    parser.add_argument("--limit", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    texts = paragraphs(args.docs, args.limit)
    reference = Encoder.from_pretrained("default", backend="auto")
    choice, chosen = choose(reference)
    engines = {"torch fp32": Encoder.from_pretrained("default", backend="torch"), "auto fp32": reference}
    if chosen is not reference:
        engines[f"auto choice ({choice.dtype})"] = chosen
    for encoder in engines.values():
        rate(encoder, texts[:8])  # warm-up: compile, allocate
    rates: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(args.rounds):
        for name, encoder in engines.items():
            rates[name].append(rate(encoder, texts))
    base = statistics.median(rates["torch fp32"])
    emit(
        {
            "cpu_bf16_features": cpu_bf16_features(),
            "choice": choice.to_dict(),
            "texts": len(texts),
            "texts_per_s": {name: round(statistics.median(r), 2) for name, r in rates.items()},
            "ratio_to_torch_fp32": {name: round(statistics.median(r) / base, 2) for name, r in rates.items()},
        },
        args.out,
    )


if __name__ == "__main__":
    main()
