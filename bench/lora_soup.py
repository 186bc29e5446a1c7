"""An encoder whose last LoRA is the mean of the last LoRAs of several runs on one encoder.

Each folder must be a saved encoder with the same settings and the same adapters except the
last (runs of ``ragkit train --backbone X --stages supervised`` on one encoder X, with any
seeds, pairs or losses). The output keeps those shared adapters and replaces the last one by
the uniform average of the runs' weight changes (:mod:`ragkit.encoder.soup`). Its
``training.json`` keeps the shared base and every run's own record under ``soup``, its
``stages.json`` one supervised row over the runs, and ``metrics.jsonl`` / ``loss.png`` each
run's loss curve:

    python bench/lora_soup.py runs/stack09 runs/stack10 runs/stack11 --out runs/soup

With ``--rank R`` the averaged adapter is then cut to rank R by SVD (:mod:`ragkit.encoder.adapter_rank`),
and ``training.json`` records the share of each module's weight-change energy kept.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ragkit.atomic import atomic_folder, is_free_folder
from ragkit.encoder.adapter_rank import cut_rank, energy_summary
from ragkit.encoder.adapters import adapter_file_hash, load_adapter
from ragkit.encoder.soup import average_adapters
from ragkit.errors import EncoderFormatError
from ragkit.trainer.run_folder import plot_loss

CONFIG = "ragkit.json"


def _settings(folder: Path) -> dict:
    try:
        return json.loads((folder / CONFIG).read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {folder} is not a saved encoder: {exc}") from None


def check_runs(folders: list[Path]) -> list[str]:
    """The shared adapter names; refuses runs that do not start from one encoder."""
    first = _settings(folders[0])
    names = first.get("adapters") or []
    if not names:
        raise SystemExit(f"error: {folders[0]} has no adapters to average")
    for folder in folders[1:]:
        if _settings(folder) != first:
            raise SystemExit(f"error: {folder}/{CONFIG} differs from {folders[0]}/{CONFIG}")
    for name in names[:-1]:
        hashes = {adapter_file_hash(folder / "adapters" / name) for folder in folders}
        if len(hashes) != 1:
            raise SystemExit(f"error: the runs differ in adapter {name}: they did not start from one encoder")
    return names


def write_soup(folders: list[Path], out: Path, rank: int | None = None) -> dict:
    """Writes the encoder folder at once, nothing on failure; returns the ``soup`` record."""
    names = check_runs(folders)
    if not is_free_folder(out):
        raise SystemExit(f"error: {out} exists and is not an empty folder")
    last = names[-1]
    try:
        soup = average_adapters([load_adapter(folder / "adapters" / last) for folder in folders], last)
        cut = cut_rank(soup, rank) if rank is not None else None
    except EncoderFormatError as exc:
        raise SystemExit(f"error: {exc}") from None
    if cut is not None:
        soup = cut.adapter
    record = {
        "method": "uniform mean of the last adapters' weight changes, ranks stacked",
        "adapter": last,
        "sources": [
            {"run": folder.name, "adapter_hash": adapter_file_hash(folder / "adapters" / last)}
            for folder in folders
        ],
    }
    if cut is not None:
        record["method"] += f", then cut to rank {rank} by SVD"
        record["rank_cut"] = {"rank": rank, **energy_summary(cut)}
    with atomic_folder(out) as tmp:
        shutil.copy2(folders[0] / CONFIG, tmp / CONFIG)
        shutil.copytree(folders[0] / "tokenizer", tmp / "tokenizer")
        for name in names[:-1]:
            shutil.copytree(folders[0] / "adapters" / name, tmp / "adapters" / name)
        soup.save(tmp / "adapters" / last)
        write_training_records(folders, tmp, record)
    return record


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _metrics(folder: Path) -> list[dict]:
    path = folder / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def write_training_records(folders: list[Path], out: Path, soup: dict) -> None:
    """``training.json``, ``stages.json``, ``metrics.jsonl`` and ``loss.png`` for the soup."""
    runs = [_json(folder / "training.json") for folder in folders]
    stages = [_json(folder / "stages.json").get("supervised", {}) for folder in folders]
    shared = ("format", "backbone", "backbone_identity", "base_adapters", "base", "model_layers", "layers")
    training = {key: runs[0][key] for key in shared if key in runs[0]}
    training |= {"recipe": runs[0].get("recipe", {}), "stages": ["supervised"]}
    own = [{k: v for k, v in run.items() if k not in ("base", "base_adapters")} for run in runs]
    training["soup"] = {**soup, "runs": own}
    (out / "training.json").write_text(json.dumps(training, indent=2) + "\n")
    losses = [s["final_loss"] for s in stages if s.get("final_loss") is not None]
    steps = [s.get("steps") for s in stages]  # runs may differ in length
    row = {
        "steps": steps[0] if len(set(steps)) == 1 else steps,
        "averaged_runs": len(folders),
        "final_loss": None,  # no loss belongs to the mean itself
        "mean_run_final_loss": sum(losses) / len(losses) if losses else None,
        "seconds": round(sum(s.get("seconds", 0) for s in stages), 1),
        "tokens_per_s": round(sum(s.get("tokens_per_s", 0) for s in stages) / len(stages), 1),
        "precision": stages[0].get("precision"),
    }
    (out / "stages.json").write_text(json.dumps({"supervised": row}, indent=2) + "\n")
    with (out / "metrics.jsonl").open("w") as handle:
        for number, (folder, run) in enumerate(zip(folders, runs, strict=True), start=1):
            for metric in _metrics(folder):
                metric["stage"] = f"supervised, run {number} (seed {run.get('seed')})"
                handle.write(json.dumps(metric) + "\n")
    plot_loss(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="saved encoder folders (at least two)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rank", type=int, help="cut the averaged adapter to this rank by SVD")
    args = parser.parse_args()
    if len(args.runs) < 2:
        raise SystemExit("error: give at least two runs to average")
    record = write_soup(args.runs, args.out, args.rank)
    cut = f", cut to rank {args.rank}" if args.rank is not None else ""
    print(f"{args.out}: adapter {record['adapter']} averaged over {len(args.runs)} runs{cut}")


if __name__ == "__main__":
    main()
