"""Hard-negative mining at a training run's start: mined from scratch, then read from the cache.

Reads the pairs files as ``ragkit train --pairs`` does, mines every dataset's negatives into
an empty cache folder (what a first start pays), then mines again from that cache (what a
second start or a ``--resume`` pays), and checks both give the same pairs.

    python bench/negatives_cache.py PAIRS... --out eval-results/negatives-cache.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench_output import emit

from ragkit.trainer.negatives import mine_negatives
from ragkit.trainer.pairs import read_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", type=Path, help="pairs files (JSON lines, .gz ok)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    pair_set = read_pairs(args.pairs)
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        cold = mine_negatives(pair_set, cache_root=Path(cache))
        mined_s = time.perf_counter() - started
        started = time.perf_counter()
        warm = mine_negatives(pair_set, cache_root=Path(cache))
        cached_s = time.perf_counter() - started
    if warm.pairs != cold.pairs:
        raise SystemExit("the cached negatives differ from the mined ones")
    emit(
        {
            "pairs": len(pair_set.pairs),
            "datasets": len(pair_set.datasets),
            "negatives_mined": cold.mined,
            "mined_seconds": round(mined_s, 1),
            "cached_seconds": round(cached_s, 1),
            "speedup": round(mined_s / cached_s, 1),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
