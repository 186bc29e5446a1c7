"""A copy of a saved encoder whose last adapter (or a named one) is cut to a lower rank by SVD.

A soup's adapter stacks its runs' ranks, so it is larger than the weight change it holds needs.
The cut keeps each module's top singular directions (:mod:`ragkit.encoder.adapter_rank`); the
copy's ``training.json`` records the rank and the least and median share of weight-change energy
kept. The copy is another encoder (another fingerprint): measure it before using it in place of
the original. Its model card and evaluation are not copied, since they describe the original:

    python bench/cut_adapter_rank.py ragkit/default_encoder --rank 32 --out runs/default-r32
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ragkit.encoder.adapter_rank import cut_rank, energy_summary
from ragkit.encoder.adapters import adapter_file_hash, load_adapter
from ragkit.errors import EncoderFormatError

# Files that describe the original's measured quality, not the copy's.
_NOT_COPIED = ("README.md", "evaluation.json")


def write_cut(encoder: Path, out: Path, rank: int, adapter: str | None = None) -> dict:
    """Writes the copy; returns what ``training.json`` records under ``rank_cut``."""
    try:
        names = json.loads((encoder / "ragkit.json").read_text()).get("adapters") or []
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {encoder} is not a saved encoder: {exc}") from None
    name = adapter or (names[-1] if names else None)
    if name not in names:
        raise SystemExit(f"error: {encoder} has no adapter {name!r} (it has {', '.join(names) or 'none'})")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SystemExit(f"error: {out} exists and is not an empty folder")
    source = encoder / "adapters" / name
    try:
        original = load_adapter(source)
        cut = cut_rank(original, rank)
    except EncoderFormatError as exc:
        raise SystemExit(f"error: {exc}") from None
    shutil.copytree(encoder, out, ignore=shutil.ignore_patterns(*_NOT_COPIED), dirs_exist_ok=True)
    shutil.rmtree(out / "adapters" / name)
    cut.adapter.save(out / "adapters" / name)
    record = {
        "adapter": name,
        "from_rank": original.config["r"],
        "rank": rank,
        "source_hash": adapter_file_hash(source),
        **energy_summary(cut),
    }
    training_path = out / "training.json"
    training = json.loads(training_path.read_text()) if training_path.is_file() else {}
    training["rank_cut"] = record
    training_path.write_text(json.dumps(training, indent=2) + "\n")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("encoder", type=Path, help="a saved encoder folder")
    parser.add_argument("--rank", type=int, required=True, help="the rank to cut to")
    parser.add_argument("--adapter", help="the adapter to cut (default: the last)")
    parser.add_argument("--out", type=Path, required=True, help="an empty or new folder")
    args = parser.parse_args()
    record = write_cut(args.encoder, args.out, args.rank, args.adapter)
    print(
        f"{args.out}: adapter {record['adapter']} cut from rank {record['from_rank']} to {record['rank']}, "
        f"energy kept: median {record['kept_energy_median']:.5f}, least {record['kept_energy_min']:.5f}"
    )


if __name__ == "__main__":
    main()
