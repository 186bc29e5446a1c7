"""Training throughput and loss in fp32 against bf16 autocast, in one run, on the real model.

Runs ``ragkit train`` once per (stage, precision) from the same start with the same seed and
data, alternating precisions so both see the same machine load, and reports tokens/s per
stage, the bf16/fp32 ratio, and the two loss curves step by step.

    python bench/train_precision.py --steps 100 --stages supervised --out eval-results/train-precision.json
    python bench/train_precision.py --steps 8 --out eval-results/train-precision-stages.json
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


def run(stage: str, precision: str, steps: int, batch_size: int | None, folder: Path) -> list[dict]:
    out = folder / f"{stage}-{precision}"
    command = [sys.executable, "-m", "ragkit", "train", *STAGE_ARGS[stage], "--steps", str(steps)]
    command += ["--precision", precision, "--out", str(out), "--checkpoint-every", str(steps)]
    if batch_size:
        command += ["--batch-size", str(batch_size)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stages", default="mntp,simcse,supervised")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=None, help="default: each stage's quick recipe")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result: dict = {"cpu_bf16_features": cpu_bf16_features(), "steps": args.steps, "stages": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for stage in args.stages.split(","):
            rows = {p: run(stage, p, args.steps, args.batch_size, Path(tmp)) for p in ("fp32", "bf16")}
            # The first steps include start-up effects; the rate over the second half is the steady one.
            rates = {p: rows[p][-1]["tokens_per_s"] for p in rows}
            result["stages"][stage] = {
                "tokens_per_s": rates,
                "bf16_over_fp32": round(rates["bf16"] / rates["fp32"], 2),
                "loss": {p: [r["loss"] for r in rows[p]] for p in rows},
                "final_loss": {p: rows[p][-1]["loss"] for p in rows},
            }
    emit(result, args.out)


if __name__ == "__main__":
    main()
