"""A copy of a saved encoder whose last adapter is cut to a lower rank by SVD.

A soup's adapter stacks its runs' ranks, so it is larger than the weight change it holds needs.
The cut keeps each module's top singular directions (:mod:`ragkit.encoder.adapter_rank`); the
copy's ``training.json`` records the rank and the least and median share of weight-change energy
kept. Only the last adapter is cut: every earlier one is the base a later one was trained on.
The copy is another encoder (another fingerprint): measure it before using it in place of the
original. Its model card and evaluation are not copied, since they describe the original; nor
are its fusion settings (chosen for the original on dev sets) unless ``--keep-fusion`` says the
cut is meant to stand in for it:

    python bench/cut_adapter_rank.py runs/soup --rank 32 --out runs/soup-r32
    python bench/cut_adapter_rank.py runs/soup --rank 32 --keep-fusion --out runs/default
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

from ragkit.atomic import atomic_folder, is_free_folder
from ragkit.encoder.adapter_rank import cut_rank, energy_summary
from ragkit.encoder.adapters import adapter_file_hash, load_adapter
from ragkit.encoder.config import EncoderConfig
from ragkit.encoder.folder import write_config
from ragkit.errors import EncoderFormatError

# Files at the top of an encoder that describe the original's measured quality, not the copy's.
_NOT_COPIED = {"README.md", "evaluation.json"}


def write_cut(encoder: Path, out: Path, rank: int, keep_fusion: bool = False) -> dict:
    """Writes the copy at once (nothing on failure); returns what ``training.json`` records."""
    if not is_free_folder(out):
        raise SystemExit(f"error: {out} exists and is not an empty folder")
    try:
        config = EncoderConfig.load(encoder)
        if not config.adapters:
            raise EncoderFormatError(f"{encoder} has no adapters to cut")
        name = config.adapters[-1]
        source = encoder / "adapters" / name
        original = load_adapter(source)
        cut = cut_rank(original, rank)
    except EncoderFormatError as exc:
        raise SystemExit(f"error: {exc}") from None
    record = {"adapter": name, "from_rank": original.config["r"], "rank": rank}
    record |= {"source_hash": adapter_file_hash(source), **energy_summary(cut)}
    training_path = encoder / "training.json"
    training = json.loads(training_path.read_text()) if training_path.is_file() else {}
    with atomic_folder(out) as tmp:
        shutil.copytree(encoder, tmp, ignore=_top_level(encoder), dirs_exist_ok=True)
        shutil.rmtree(tmp / "adapters" / name)
        cut.adapter.save(tmp / "adapters" / name)
        (tmp / "training.json").write_text(json.dumps({**training, "rank_cut": record}, indent=2) + "\n")
        write_config(tmp, config if keep_fusion else dataclasses.replace(config, fusion=None))
    return record


def _top_level(encoder: Path):
    """A copytree ignore that drops the original's card and evaluation, at the top only."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        return _NOT_COPIED & set(names) if Path(folder) == encoder else set()

    return ignore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("encoder", type=Path, help="a saved encoder folder")
    parser.add_argument("--rank", type=int, required=True, help="the rank to cut its last adapter to")
    parser.add_argument("--out", type=Path, required=True, help="an empty or new folder")
    parser.add_argument(
        "--keep-fusion",
        action="store_true",
        help="keep the original's hybrid fusion settings (for a cut measured to stand in for it)",
    )
    args = parser.parse_args()
    record = write_cut(args.encoder, args.out, args.rank, args.keep_fusion)
    print(
        f"{args.out}: adapter {record['adapter']} cut from rank {record['from_rank']} to {record['rank']}, "
        f"energy kept: median {record['kept_energy_median']:.5f}, least {record['kept_energy_min']:.5f}"
    )


if __name__ == "__main__":
    main()
