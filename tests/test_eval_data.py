"""BEIR and STS loading: formats, errors naming file and line, reproducible subsampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import write_beir
from ragkit.encoder.vector_cache import VectorCache
from ragkit.evaluation.beir import DatasetError, load_beir, subsample
from ragkit.evaluation.sts import load_sts

CORPUS = {f"d{i}": (f"title {i}", f"text {i}") for i in range(10)}
QUERIES = {"q1": "first", "q2": "second", "q3": "never judged"}
QRELS = [("q1", "d1", 1), ("q1", "d2", 0), ("q2", "d3", 2), ("q9", "d1", 1), ("q2", "d99", 1)]


@pytest.mark.parametrize("gz", [False, True])
def test_load_beir_plain_and_gzipped(tmp_path: Path, gz: bool, caplog) -> None:
    data = load_beir(write_beir(tmp_path / "ds", CORPUS, QUERIES, QRELS, gz=gz))
    assert data.corpus["d1"] == "title 1 text 1"
    assert set(data.queries) == {"q1", "q2"}  # only judged queries are evaluated
    assert data.qrels == {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2}}
    assert data.dropped == {"unknown_queries": 1, "unknown_docs": 1}
    assert "dropped 1 judgments naming unknown queries" in caplog.text


def test_missing_files_and_malformed_lines(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_beir(tmp_path / "nowhere")
    folder = write_beir(tmp_path / "ds", CORPUS, QUERIES, QRELS)
    with pytest.raises(DatasetError, match=r"qrels/dev.tsv not found"):
        load_beir(folder, split="dev")
    lines = (folder / "corpus.jsonl").read_text().splitlines()
    lines[3] = '{"_id": "d3", "text": broken'
    (folder / "corpus.jsonl").write_text("\n".join(lines))
    with pytest.raises(DatasetError, match=r"corpus\.jsonl line 4: not valid JSON"):
        load_beir(folder)
    folder = write_beir(tmp_path / "ds2", CORPUS, QUERIES, QRELS)
    (folder / "queries.jsonl").write_text('{"_id": "q1"}\n')
    with pytest.raises(DatasetError, match=r"queries\.jsonl line 1: needs the fields _id, text"):
        load_beir(folder)
    folder = write_beir(tmp_path / "ds3", CORPUS, QUERIES, QRELS)
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(DatasetError, match=r"test\.tsv line 2: expected 3"):
        load_beir(folder)


def test_subsample_keeps_judged_and_is_reproducible(tmp_path: Path) -> None:
    corpus = {f"d{i}": ("", f"text {i}") for i in range(200)}
    qrels = [("q1", "d5", 1), ("q2", "d150", 1)]
    data = load_beir(write_beir(tmp_path / "ds", corpus, {"q1": "a", "q2": "b"}, qrels))
    a, b, c = subsample(data, 50, seed=1), subsample(data, 50, seed=1), subsample(data, 50, seed=2)
    assert len(a.corpus) == 50 and {"d5", "d150"} <= set(a.corpus)
    assert list(a.corpus) == list(b.corpus) and set(a.corpus) != set(c.corpus)
    assert subsample(data, 500).corpus == data.corpus


def test_load_sts(tmp_path: Path) -> None:
    path = tmp_path / "sts.tsv"
    path.write_text("score\tsentence1\tsentence2\n5.0\ta\tb\n0.5\tc\td\n2\te\tf\n")
    gold, first, second = load_sts(path)
    assert gold.tolist() == [5.0, 0.5, 2.0] and first == ["a", "c", "e"] and second == ["b", "d", "f"]
    path.write_text("5.0\ta\tb\nhigh\tc\td\n1\te\tf\n")
    with pytest.raises(DatasetError, match="line 2: score 'high'"):
        load_sts(path)


def test_vector_cache_encodes_only_missing(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    cache = VectorCache("fp", root=tmp_path)
    first = cache.encode(["aa", "b", "cccc"], "", encode, chunk=2)
    assert first[:, 0].tolist() == [2, 1, 4] and sum(map(len, calls)) == 3
    again = cache.encode(["cccc", "dd", "aa"], "", encode)
    assert again[:, 0].tolist() == [4, 2, 2] and calls[-1] == ["dd"]
    # the instruction is part of the key
    cache.encode(["aa"], "find", encode)
    assert calls[-1] == ["aa"]
    cache.close()
    reopened = VectorCache("fp", root=tmp_path)
    reopened.encode(["aa", "b"], "", encode)
    assert calls[-1] == ["aa"]  # nothing new was encoded after reopening
    reopened.close()
