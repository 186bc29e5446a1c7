"""The Ray driver's peak memory on many small files: one ragkit checkout against another.

    python bench/ray_scale.py --files 100000 [--bytes 1500] [--padding-bytes 0] [--inflight-mb 64]
        [--baseline-code DIR] [--single] [--out FILE]

Writes N synthetic Markdown files of about ``--bytes`` bytes each, and a tiny seeded Llama
(2 layers, 32 wide) as the encoder, so the run measures the driver's planning, shipping and
writing rather than a large model's arithmetic. Each run is a fresh process (``build_index``
with ``ray="local"``, one worker) that reports its wall time and its own peak resident memory
(``ru_maxrss``): the driver's, not the worker's or Ray's object store. ``--baseline-code`` is
another checkout's folder holding ``ragkit/`` (for example ``git worktree add old <commit>``),
indexed the same way for comparison; ``--single`` adds a one-process index and checks that the
Ray index holds the same chunks and vectors.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_output import emit

HERE = Path(__file__).resolve().parent
WORDS = (
    "the a cat dog sat on mat rug query passage answer what is of and in to find relevant document "
    "search question how why runs fast slow red blue green big small house tree river city music"
).split()

CHILD = """
import json, resource, sys, time
from pathlib import Path
from ragkit.indexer.builder import IndexOptions, build_index
settings = json.loads(sys.argv[1])
started = time.perf_counter()
summary = build_index(IndexOptions(source=Path(settings.pop("source")), index_dir=Path(settings.pop("index")),
                                   **settings))
import ragkit
code = str(Path(ragkit.__file__).parent.parent)
print(json.dumps({"code": code, "wall_s": round(time.perf_counter() - started, 1),
                  "driver_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "phases_s": {k: round(v, 1) for k, v in summary.seconds.items()}}))
"""


def write_files(folder: Path, count: int, size: int, padding: int = 0) -> int:
    """``count`` files of about ``size`` bytes of text and ``padding`` bytes of blank lines
    (bytes the driver reads and ships, no tokens to embed), a hundred to a folder; returns
    the bytes written."""
    rng = random.Random(0)
    total = 0
    for i in range(count):
        lines = [f"# Note {i}", ""]
        while sum(len(line) + 1 for line in lines) < size:
            lines.append(" ".join(rng.choice(WORDS) for _ in range(12)))
        text = "\n".join(lines) + "\n" + (" " * 99 + "\n") * (padding // 100)
        path = folder / f"d{i // 100:04d}" / f"n{i}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        total += len(text)
    return total


def write_tiny_encoder(folder: Path) -> Path:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from conftest import make_model, make_tokenizer

    make_model("llama").save_pretrained(folder, safe_serialization=True)
    make_tokenizer().save_pretrained(folder)
    return folder


def run(code: Path, settings: dict) -> dict:
    """One index run in a fresh process on ``code``'s ragkit (run outside any checkout, since
    ``python -c`` puts the working folder ahead of ``PYTHONPATH``), and what it measured."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(settings)],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(settings["index"]).parent,
    )
    if done.returncode:
        raise SystemExit(f"index run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def same_index(ours: Path, reference: Path) -> dict:
    sys.path.insert(0, str(HERE))
    from ray_index import compare

    return compare(ours, reference)


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--bytes", type=int, default=1500, help="about this many bytes a file")
    parser.add_argument("--padding-bytes", type=int, default=0, help="blank lines added to each file")
    parser.add_argument("--inflight-mb", type=float, default=64.0)
    parser.add_argument("--baseline-code", type=Path, help="a checkout folder holding ragkit/")
    parser.add_argument("--single", action="store_true", help="also index in one process and compare")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        total = write_files(work / "docs", args.files, args.bytes, args.padding_bytes)
        common = {"source": str(work / "docs"), "encoder": str(write_tiny_encoder(work / "tiny"))}
        common |= {"chunk_tokens": 64, "overlap": 0}
        result: dict = {"files": args.files, "file_bytes_mb": round(total / 2**20, 1)}
        ray = {"ray": "local", "ray_workers": 1}
        result["sliced"] = run(
            HERE.parent, {**common, **ray, "ray_inflight_mb": args.inflight_mb, "index": str(work / "sliced")}
        )
        result["sliced"]["inflight_mb"] = args.inflight_mb
        if args.baseline_code:
            result["baseline"] = run(args.baseline_code, {**common, **ray, "index": str(work / "baseline")})
            result["baseline"] |= same_index(work / "baseline", work / "sliced")
        if args.single:
            result["single_process"] = run(HERE.parent, {**common, "index": str(work / "single")})
            result["sliced"] |= same_index(work / "sliced", work / "single")
        for name in ("sliced", "baseline", "single_process"):
            if name in result:
                result[name]["files_per_s"] = round(args.files / result[name]["wall_s"], 1)
    emit(result, args.out)


if __name__ == "__main__":
    main()
