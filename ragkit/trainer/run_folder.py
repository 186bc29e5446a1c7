"""The output folder of a training run: refusing to clobber, run settings, curve and card.

A run folder is recognised by ``training.json``; anything else that is not empty belongs
to someone else and is never overwritten.
"""

from __future__ import annotations

import json
from pathlib import Path

from ragkit.atomic import write_text
from ragkit.errors import InvalidInputError

RUN_FILE = "training.json"
METRICS_FILE = "metrics.jsonl"
RUN_FORMAT = "ragkit-training"
_COMPARED = (
    "backbone_identity",
    "base_adapters",
    "layers",
    "stages",
    "recipe",
    "seed",
    "corpus_hash",
    "negatives_from",
    "pairs_hash",
    "precision",
    "chunk_size",
    "mixture",
    "teacher",
    "teacher_filter",
    "distill_weight",
    "correlation_weight",
)


def prepare_output(out: Path, settings: dict, *, resume: bool) -> bool:
    """Check ``out`` can take this run; returns True when an earlier run is being resumed."""
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out {out} is a file, not a folder")
    run_file = out / RUN_FILE
    if run_file.is_file():
        if not resume:
            raise InvalidInputError(
                f"{out} already holds a training run; add --resume to continue it, or choose another --out"
            )
        try:
            previous = json.loads(run_file.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"cannot read {run_file}: {exc}") from None
        for key in _COMPARED:
            if previous.get(key) != settings.get(key):
                raise InvalidInputError(_resume_refusal(key, out, previous.get(key), settings.get(key)))
        _record_resumed_settings(run_file, previous, settings)
        return True
    if resume:
        raise InvalidInputError(f"nothing to resume: {out} holds no training run; drop --resume to start one")
    if out.is_dir() and any(out.iterdir()):
        raise InvalidInputError(
            f"{out} exists and holds files that are not a ragkit training run; refusing to overwrite "
            "them: choose an empty or new --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps({"format": RUN_FORMAT, **settings}, indent=2) + "\n")
    return False


def _record_resumed_settings(run_file: Path, previous: dict, settings: dict) -> None:
    """Record the settings a resume may change (``compile``, the teacher's path) as this start ran.

    Those settings do not change what is trained, so a resume may differ in them; the record
    then says what the latest start used and keeps each earlier start's values under
    ``earlier_starts``, so nothing it once said is lost.
    """
    changed = {
        key: previous.get(key)
        for key, value in settings.items()
        if key not in _COMPARED and previous.get(key) != value
    }
    if not changed:
        return
    record = {**previous, **settings}
    record["earlier_starts"] = [*previous.get("earlier_starts", []), changed]
    write_text(run_file, json.dumps(record, indent=2) + "\n")  # a kill never leaves half a record


def _resume_refusal(key: str, out: Path, before, now) -> str:
    """Why a run cannot be resumed with a changed setting, and what to pass instead."""
    if key == "precision":
        return (
            f"cannot resume: {out} was trained in {before or 'fp32'}, and this run would train in "
            f"{now}; pass --precision {before or 'fp32'} or choose another --out"
        )
    if key == "chunk_size":
        return (
            f"cannot resume: {out} was started with --chunk-size {before or 'off'} and this run asks "
            f"for {now or 'off'} (each chunk draws its own dropout); pass the original or another --out"
        )
    if key == "recipe" and isinstance(before, dict) and isinstance(now, dict):
        changed = [k for k in sorted(before.keys() | now.keys()) if before.get(k) != now.get(k)]
        return (
            f"cannot resume: {out} was started with a different recipe ("
            + "; ".join(f"{k} {before.get(k)!r} there, {now.get(k)!r} now" for k in changed)
            + "); pass the original settings (e.g. --lora-dropout, --steps, --lr) or another --out"
        )
    what = _SETTING_WORDS.get(key, key.replace("_", " "))
    return (
        f"cannot resume: {out} was started with a different {what}; "
        "pass the original settings or another --out"
    )


_SETTING_WORDS = {
    "backbone_identity": "backbone",
    "base_adapters": "starting encoder (its adapters differ)",
    "layers": "layer count (--layers)",
    "corpus_hash": "corpus (its passages differ)",
    "pairs_hash": "pair set (the --pairs files' rows differ)",
    "negatives_from": "hard-negative miner (--negatives-from)",
}


def read_metrics(out: Path) -> list[dict]:
    path = out / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by a kill; the checkpoint decides what counts
    return rows


def trim_metrics(out: Path, stages: list[str], stage: str, step: int) -> None:
    """Drop records after the checkpoint being resumed from, so the curve has no repeats."""
    order = {name: i for i, name in enumerate(stages)}
    kept = [
        row
        for row in read_metrics(out)
        if order.get(row.get("stage"), 99) < order[stage]
        or (row.get("stage") == stage and row.get("step", 0) <= step)
    ]
    (out / METRICS_FILE).write_text("".join(json.dumps(row) + "\n" for row in kept))


def append_metrics(out: Path, row: dict) -> None:
    with (out / METRICS_FILE).open("a") as handle:
        handle.write(json.dumps(row) + "\n")


def plot_loss(out: Path) -> Path | None:
    """``loss.png``: one panel per stage, raw loss and a moving average."""
    rows = read_metrics(out)
    stages = list(dict.fromkeys(row["stage"] for row in rows))
    if not stages:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(stages), figsize=(5 * len(stages), 3.5), squeeze=False)
    for axis, stage in zip(axes[0], stages, strict=True):
        points = [(row["step"], row["loss"]) for row in rows if row["stage"] == stage]
        steps, losses = zip(*points, strict=True)
        window = max(1, len(losses) // 20)
        smooth = [
            sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1])
            for i in range(len(losses))
        ]
        axis.plot(steps, losses, alpha=0.35, label="loss")
        axis.plot(steps, smooth, label=f"moving average ({window})")
        axis.set_title(stage.upper())
        axis.set_xlabel("step")
        axis.set_ylabel("loss")
        axis.legend()
    fig.tight_layout()
    path = out / "loss.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
