"""Mined hard negatives are cached per dataset: reused when the rows are the same, mined again
when they change or the cached file is not what the dataset needs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from test_trainer_supervised import _salad_pairs, _write_pairs

from ragkit.trainer import negatives
from ragkit.trainer.negatives import mine_negatives
from ragkit.trainer.pairs import read_pairs


def _two_datasets(tmp_path: Path, second_seed: int = 1):
    first = _write_pairs(tmp_path / "first.jsonl", _salad_pairs(24, 0))
    # No groups in the second set: every negative there comes from BM25.
    rows = [{k: v for k, v in r.items() if k != "group"} for r in _salad_pairs(18, second_seed)]
    second = _write_pairs(tmp_path / f"second-{second_seed}.jsonl", rows)
    return read_pairs([first, second])


def _counting(monkeypatch) -> list[int]:
    """Count the datasets actually mined (not read from the cache)."""
    mined: list[int] = []
    real = negatives._mine_dataset

    def counted(pairs, rows, passages, depth):
        mined.append(len(rows))
        return real(pairs, rows, passages, depth)

    monkeypatch.setattr(negatives, "_mine_dataset", counted)
    return mined


def test_the_cache_gives_the_same_negatives_and_is_reused(tmp_path: Path, monkeypatch):
    pair_set = _two_datasets(tmp_path)
    mined = _counting(monkeypatch)
    first = mine_negatives(pair_set, cache_root=tmp_path / "cache")
    assert mined == [24, 18] and len(list((tmp_path / "cache").glob("*.json"))) == 2
    again = mine_negatives(pair_set, cache_root=tmp_path / "cache")
    assert mined == [24, 18]  # nothing mined the second time
    assert again.pairs == first.pairs and again.mined == first.mined == 42
    assert all(p.negatives and p.negatives[0] != p.positive for p in again.pairs)
    assert sum(p.negatives[0] in {q.positive for q in pair_set.pairs} for p in again.pairs) == 42


def test_a_changed_dataset_is_mined_again_and_the_other_reused(tmp_path: Path, monkeypatch):
    mine_negatives(_two_datasets(tmp_path), cache_root=tmp_path / "cache")
    mined = _counting(monkeypatch)
    changed = _two_datasets(tmp_path, second_seed=2)
    result = mine_negatives(changed, cache_root=tmp_path / "cache")
    assert mined == [18]
    assert result.pairs == mine_negatives(changed, cache_root=tmp_path / "elsewhere").pairs
    del mined[:]
    mine_negatives(_two_datasets(tmp_path), depth=3, cache_root=tmp_path / "cache")
    assert mined == [24, 18]  # another depth is another key


@pytest.mark.parametrize(
    "damage",
    [
        "not json",
        json.dumps({"format": 1, "negatives": [0, 1]}),  # the wrong length
        json.dumps({"format": 1, "negatives": [10_000] * 24}),  # past the passages
        json.dumps({"format": 1, "negatives": [0.5] * 24}),
        json.dumps({"format": 99, "negatives": [0] * 24}),
    ],
)
def test_a_damaged_cache_entry_is_mined_again_and_rewritten(tmp_path: Path, monkeypatch, damage: str):
    pair_set = _two_datasets(tmp_path)
    expected = mine_negatives(pair_set, cache_root=tmp_path / "cache")
    entries = sorted((tmp_path / "cache").glob("*.json"), key=lambda p: p.stat().st_mtime)
    for entry in entries:
        if len(json.loads(entry.read_text())["negatives"]) == 24:
            entry.write_text(damage)
    mined = _counting(monkeypatch)
    assert mine_negatives(pair_set, cache_root=tmp_path / "cache").pairs == expected.pairs
    assert mined == [24]
    assert mine_negatives(pair_set, cache_root=tmp_path / "cache").pairs == expected.pairs
    assert mined == [24]  # rewritten: read back the next time


def test_a_cache_that_cannot_be_written_costs_a_warning_only(tmp_path: Path, caplog):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    pair_set = _two_datasets(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ragkit"):
        result = mine_negatives(pair_set, cache_root=blocked / "cache")
    assert result.pairs == mine_negatives(pair_set, cache_root=tmp_path / "ok").pairs
    assert "could not cache hard negatives" in caplog.text


@pytest.mark.parametrize("change", ["format", "bm25s", "settings"])
def test_what_mining_depends_on_is_in_the_key(tmp_path: Path, monkeypatch, change: str):
    pair_set = _two_datasets(tmp_path)
    mine_negatives(pair_set, cache_root=tmp_path / "cache")
    mined = _counting(monkeypatch)
    if change == "format":
        monkeypatch.setattr(negatives, "MINING_FORMAT", negatives.MINING_FORMAT + 1)
    elif change == "bm25s":
        real = negatives.version
        monkeypatch.setattr(negatives, "version", lambda name: real(name) + ".post1")
    else:
        monkeypatch.setitem(negatives.BM25_SETTINGS, "k1", 0.9)
    mine_negatives(pair_set, cache_root=tmp_path / "cache")
    assert mined == [24, 18]


def test_a_cache_entry_never_replaces_negatives_that_came_with_the_rows(tmp_path: Path, monkeypatch):
    rows = [{"query": f"q {i} cat", "positive": f"the cat {i}", "negative": f"dog {i}"} for i in range(4)]
    rows += [{"query": f"q {i} tree", "positive": f"the tree {i} river"} for i in range(4)]
    pair_set = read_pairs([_write_pairs(tmp_path / "p.jsonl", rows)])
    expected = mine_negatives(pair_set, cache_root=tmp_path / "cache")
    assert [p.negatives for p in expected.pairs[:4]] == [(f"dog {i}",) for i in range(4)]
    (entry,) = (tmp_path / "cache").glob("*.json")
    entry.write_text(json.dumps({"format": negatives.MINING_FORMAT, "negatives": [0] * 8}))
    mined = _counting(monkeypatch)
    assert mine_negatives(pair_set, cache_root=tmp_path / "cache").pairs == expected.pairs
    assert mined == [8]
