"""Training throughput, loss and peak memory of training variants, in one run, on the real model.

Runs ``ragkit train`` once per (stage, variant) from the same start with the same seed and
data, and reports tokens/s per stage, each variant's ratio to the first, the loss curves
step by step and each run's peak resident memory. Variants:

- ``fp32``: no autocast;
- ``bf16``: bf16 autocast (what ``--precision bf16`` does);
- either with ``+compile`` (``--compile``) and/or ``+nodropout`` (``--lora-dropout 0``),
  e.g. ``bf16+compile+nodropout``.

Each run reports its rate over the whole stage and its steady rate, over the steps after the
first (which holds ``--compile``'s compiling).

``--chunk-size`` is passed to every run (``--chunk-sizes`` compares several in one run).

    python bench/train_precision.py --stages supervised --steps 60 --batch-size 4 \\
        --out eval-results/train-precision-curves.json
    python bench/train_precision.py --stages supervised --steps 12 --batch-size 16 \\
        --variants fp32,bf16,fp32+nodropout,bf16+nodropout,bf16+compile+nodropout
    python bench/train_precision.py --stages supervised --steps 3 --batch-size 64 \\
        --variants bf16 --chunk-sizes 0,16 --out eval-results/train-chunked-memory.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_output import emit

from ragkit.hardware import cpu_bf16_features

PAIRS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "train" / "qed.jsonl.gz"
STAGE_ARGS = {
    "mntp": ["--backbone", "smollm2-135m", "--stages", "mntp"],
    "simcse": ["--backbone", "smollm2-135m", "--stages", "simcse"],
    "supervised": ["--backbone", "default", "--stages", "supervised", "--pairs", str(PAIRS)],
}
EXTRAS = {"compile": ["--compile"], "nodropout": ["--lora-dropout", "0"]}


def run(stage: str, variant: str, steps: int, batch_size: int | None, chunk: int, folder: Path) -> dict:
    out = folder / f"{stage}-{variant.replace('+', '-')}-{chunk}"
    command = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "ragkit", "train", *STAGE_ARGS[stage]]
    precision, *extras = variant.split("+")
    command += ["--steps", str(steps), "--precision", precision]
    command += [flag for extra in extras for flag in EXTRAS[extra]]
    command += ["--out", str(out), "--checkpoint-every", str(steps)]
    if batch_size:
        command += ["--batch-size", str(batch_size)]
    if chunk:
        command += ["--chunk-size", str(chunk)]
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[3:])} failed:\n{done.stderr[-2000:]}")
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"rows": rows, "peak_gb": round(peak_kb / 1024**2, 2), "steady": steady_rate(rows)}


def steady_rate(rows: list[dict]) -> float | None:
    """Tokens/s over the steps after the first, from the rows' rates and times since the stage
    started (one uninterrupted stage: the runs here are never resumed)."""
    if len(rows) < 2 or len({row["stage"] for row in rows}) > 1:
        return None
    first, last = rows[0], rows[-1]
    if last["seconds"] <= first["seconds"]:
        return None
    tokens = last["tokens_per_s"] * last["seconds"] - first["tokens_per_s"] * first["seconds"]
    return round(tokens / (last["seconds"] - first["seconds"]), 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stages", default="mntp,simcse,supervised")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=None, help="default: each stage's quick recipe")
    parser.add_argument(
        "--variants", default="fp32,bf16", help="comma list: fp32 or bf16, each with +compile, +nodropout"
    )
    parser.add_argument("--chunk-sizes", default="0", help="comma list; 0 = no chunking")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    variants = args.variants.split(",")
    for variant in variants:
        precision, *extras = variant.split("+")
        if precision not in ("fp32", "bf16") or set(extras) - set(EXTRAS):
            parser.error(f"unknown variant {variant!r}: fp32 or bf16, then any of +{', +'.join(EXTRAS)}")
    chunks = [int(c) for c in args.chunk_sizes.split(",")]
    result: dict = {"cpu_bf16_features": cpu_bf16_features(), "steps": args.steps, "stages": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for stage in args.stages.split(","):
            runs = {
                f"{v}" + (f"-chunk{c}" if c else ""): run(stage, v, args.steps, args.batch_size, c, Path(tmp))
                for c in chunks
                for v in variants
            }
            # tokens_per_s in metrics.jsonl is the rate over the stage so far: the last row's is the run's.
            rates = {name: r["rows"][-1]["tokens_per_s"] for name, r in runs.items()}
            first = next(iter(rates))
            steady = {name: r["steady"] for name, r in runs.items()}
            result["stages"][stage] = {
                "tokens_per_s": rates,
                f"over_{first}": {name: round(rate / rates[first], 2) for name, rate in rates.items()},
                "steady_tokens_per_s": steady,
                f"steady_over_{first}": {
                    name: round(rate / steady[first], 2) if rate and steady[first] else None
                    for name, rate in steady.items()
                },
                "peak_gb": {name: r["peak_gb"] for name, r in runs.items()},
                "loss": {name: [row["loss"] for row in r["rows"]] for name, r in runs.items()},
                "final_loss": {name: r["rows"][-1]["loss"] for name, r in runs.items()},
            }
    emit(result, args.out)


if __name__ == "__main__":
    main()
