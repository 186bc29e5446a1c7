"""Kill -9 a real `ragkit index` at 20 seeded random moments: the index always opens
consistent, every document is entirely old or entirely new, and the next run completes."""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path

import numpy as np
from test_indexer import _state

from conftest import WORDS, slow_index_command
from ragkit.indexer import store
from ragkit.indexer.builder import IndexOptions, build_index
from ragkit.search.index import Index

ROUNDS = 20


def _write_docs(folder: Path, rng: random.Random, round_: int) -> None:
    """Seeded churn: rewrite a few files, add one, delete one."""
    folder.mkdir(exist_ok=True)
    existing = sorted(folder.glob("*.md"))
    for path in rng.sample(existing, min(3, len(existing))):
        path.write_text(_document(rng, f"Changed {round_}"))
    if existing and round_ % 3 == 2:
        rng.choice(existing).unlink()
    (folder / f"doc-{round_:02d}.md").write_text(_document(rng, f"Doc {round_}"))


def _document(rng: random.Random, title: str) -> str:
    sections = []
    for s in range(rng.randint(2, 4)):
        body = "\n\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))) for _ in range(2))
        sections.append(f"## Part {s}\n\n{body}")
    return f"# {title}\n\n" + "\n\n".join(sections) + "\n"


def test_kill_9_at_random_moments_leaves_a_consistent_index(tmp_path, tiny_backbone_dir):
    rng = random.Random(1234)
    docs, index_dir = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    for i in range(8):
        (docs / f"seed-{i}.md").write_text(_document(rng, f"Seed {i}"))
    options = {"encoder": str(tiny_backbone_dir), "chunk_tokens": 24, "overlap": 4}
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
    }
    command = slow_index_command(
        0.05,
        source=[docs],
        index_dir=index_dir,
        encoder=str(tiny_backbone_dir),
        chunk_tokens=24,
        overlap=4,
        group_chunks=3,
    )

    started = time.monotonic()
    subprocess.run(command, env=env, check=True, capture_output=True)
    duration = time.monotonic() - started
    killed_mid_work = 0
    for round_ in range(ROUNDS):
        old = _state(index_dir)
        _write_docs(docs, rng, round_)
        expected_dir = tmp_path / f"expected-{round_}"
        build_index(IndexOptions(source=docs, index_dir=expected_dir, **options))
        new = _state(expected_dir)

        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.1, duration * 1.1))
        process.kill()
        process.wait()
        killed_mid_work += process.returncode == -9
        if process.returncode != -9:
            # The run had finished: the calibration run was slow (a busy machine), so aim earlier.
            duration = max(0.5, duration * 0.8)

        index = Index.open(index_dir)  # must open, repairing FAISS from SQLite if needed
        assert np.array_equal(index.vectors.ids(), store.chunk_ids(index.db))
        now = _state(index_dir)  # also checks each document's recorded chunk count
        for path, texts in now.items():
            assert texts in (old.get(path), new.get(path)), f"round {round_}: {path} is half old, half new"
        assert set(now) <= set(old) | set(new)

        summary = build_index(IndexOptions(source=docs, index_dir=index_dir, **options))
        assert _state(index_dir) == new, f"round {round_}: the next run did not complete the work"
        assert summary.chunks_total == sum(len(t) for t in new.values())
    assert killed_mid_work >= ROUNDS // 2  # most kills landed while the run was still going
