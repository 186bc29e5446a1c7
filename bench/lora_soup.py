"""An encoder whose last LoRA is the mean of the last LoRAs of several runs on one encoder.

Each folder must be a saved encoder with the same settings and the same adapters except the
last (runs of ``ragkit train --backbone X --stages supervised`` on one encoder X, with any
seeds, pairs or losses). The output keeps those shared adapters and replaces the last one by
the uniform average of the runs' weight changes (:mod:`ragkit.encoder.soup`):

    python bench/lora_soup.py runs/stack09 runs/stack10 runs/stack11 --out runs/soup
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ragkit.encoder.adapters import adapter_file_hash, load_adapter
from ragkit.encoder.soup import average_adapters
from ragkit.errors import EncoderFormatError

CONFIG = "ragkit.json"


def _settings(folder: Path) -> dict:
    try:
        return json.loads((folder / CONFIG).read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {folder} is not a saved encoder: {exc}") from None


def check_runs(folders: list[Path]) -> list[str]:
    """The shared adapter names; refuses runs that do not start from one encoder."""
    first = _settings(folders[0])
    names = first["adapters"]
    for folder in folders[1:]:
        if _settings(folder) != first:
            raise SystemExit(f"error: {folder}/{CONFIG} differs from {folders[0]}/{CONFIG}")
    for name in names[:-1]:
        hashes = {adapter_file_hash(folder / "adapters" / name) for folder in folders}
        if len(hashes) != 1:
            raise SystemExit(f"error: the runs differ in adapter {name}: they did not start from one encoder")
    return names


def write_soup(folders: list[Path], out: Path) -> dict:
    """Writes the encoder folder; returns what ``soup.json`` records."""
    names = check_runs(folders)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"error: {out} exists and is not empty")
    last = names[-1]
    try:
        soup = average_adapters([load_adapter(folder / "adapters" / last) for folder in folders], last)
    except EncoderFormatError as exc:
        raise SystemExit(f"error: {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(folders[0] / CONFIG, out / CONFIG)
    shutil.copytree(folders[0] / "tokenizer", out / "tokenizer")
    for name in names[:-1]:
        shutil.copytree(folders[0] / "adapters" / name, out / "adapters" / name)
    soup.save(out / "adapters" / last)
    record = {
        "method": "uniform mean of the last adapters' weight changes, ranks stacked",
        "adapter": last,
        "sources": [
            {"folder": str(folder), "adapter_hash": adapter_file_hash(folder / "adapters" / last)}
            for folder in folders
        ],
    }
    (out / "soup.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="saved encoder folders (at least two)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if len(args.runs) < 2:
        raise SystemExit("error: give at least two runs to average")
    record = write_soup(args.runs, args.out)
    print(f"{args.out}: adapter {record['adapter']} averaged over {len(args.runs)} runs")


if __name__ == "__main__":
    main()
