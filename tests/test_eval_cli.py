"""``ragkit eval`` end to end on a small SciFact sample with a tiny model."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ragkit.cli.app import app
from ragkit.encoder.encoder import Encoder
from ragkit.evaluation.systems import ALL_SYSTEMS, minilm_folder

runner = CliRunner()
FIELDS = {
    "ndcg@10",
    "recall@10",
    "recall@100",
    "mrr@10",
    "map@100",
    "delta_vs_causal_mean",
    "ci95",
    "p_value",
}


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def count_encoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    counts: list[int] = []
    original = Encoder.encode_pooled

    def counting(self, texts, poolings, **kwargs):
        counts.append(len(texts))
        return original(self, texts, poolings, **kwargs)

    monkeypatch.setattr(Encoder, "encode_pooled", counting)
    return counts


def test_eval_json_has_every_field_and_runs_fast(
    scifact_sample: Path, tiny_backbone_dir: Path, tmp_path: Path, fresh_home: Path, count_encoded: list[int]
) -> None:
    started = time.perf_counter()
    out = tmp_path / "report"
    result = runner.invoke(
        app, ["eval", str(scifact_sample), "-e", str(tiny_backbone_dir), "--json", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    expected = set(ALL_SYSTEMS) if minilm_folder() else set(ALL_SYSTEMS) - {"minilm"}
    assert set(payload["systems"]) == expected
    assert payload["dataset"] == "scifact-sample" and payload["split"] == "test"
    assert payload["num_queries"] == 20 and payload["corpus_size"] > 50
    for name, entry in payload["systems"].items():
        assert set(entry) >= FIELDS, name
        assert 0 <= entry["ndcg@10"] <= 1 and entry["recall@10"] <= entry["recall@100"]
        assert len(entry["ci95"]) == 2 and 0 <= entry["p_value"] <= 1
    assert payload["systems"]["causal-mean"]["delta_vs_causal_mean"] == 0.0
    # BM25 on real SciFact text is a strong baseline even on a sample
    assert payload["systems"]["bm25"]["ndcg@10"] > 0.5
    if "minilm" in payload["systems"]:
        assert payload["systems"]["minilm"]["ndcg@10"] > 0.5
    # the untrained default and bidirectional-mean are one encoder: one fingerprint, one set of vectors
    assert (
        payload["systems"]["ragkit"]["system"]["fingerprint"]
        == payload["systems"]["bidirectional-mean"]["system"]["fingerprint"]
    )
    assert {p.name for p in out.iterdir()} == {"results.json", "report.md", "ndcg.png"}
    assert (out / "ndcg.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| bm25 |" in (out / "report.md").read_text()
    assert time.perf_counter() - started < 60

    # A rerun encodes nothing: every vector comes from the per-fingerprint cache.
    encoded_first = sum(count_encoded)
    assert encoded_first > 0
    again = runner.invoke(app, ["eval", str(scifact_sample), "-e", str(tiny_backbone_dir), "--json"])
    assert again.exit_code == 0
    assert sum(count_encoded) == encoded_first
    assert json.loads(again.stdout)["systems"]["bm25"] == payload["systems"]["bm25"]


def test_max_docs_subsample_is_reproducible(scifact_sample: Path, fresh_home: Path) -> None:
    args = ["eval", str(scifact_sample), "--systems", "bm25", "--max-docs", "50", "--json"]
    first = json.loads(runner.invoke(app, [*args, "--seed", "1"]).stdout)
    again = json.loads(runner.invoke(app, [*args, "--seed", "1"]).stdout)
    other = json.loads(runner.invoke(app, [*args, "--seed", "2"]).stdout)
    assert first["corpus_size"] == 50 and first == {**again, "seconds": first["seconds"]}
    assert first["systems"]["bm25"]["delta_vs_causal_mean"] is None
    assert other["systems"]["bm25"]["ndcg@10"] != first["systems"]["bm25"]["ndcg@10"] or other != first


def test_sts_eval(tmp_path: Path, tiny_backbone_dir: Path, fresh_home: Path) -> None:
    sts = tmp_path / "sts.tsv"
    rows = [
        ("5.0", "the cat sat on the mat", "the cat sits on the mat"),
        ("0.0", "stock market fell", "green tree by the river"),
        ("3.0", "a dog runs fast", "the dog ran"),
        ("1.0", "music guitar", "big house"),
    ]
    sts.write_text("score\tsentence1\tsentence2\n" + "".join("\t".join(r) + "\n" for r in rows))
    result = runner.invoke(
        app,
        [
            "eval",
            "--sts",
            str(sts),
            "-e",
            str(tiny_backbone_dir),
            "--systems",
            "causal-mean,bidirectional-mean",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["pairs"] == 4 and set(payload["systems"]) == {"causal-mean", "bidirectional-mean"}
    for entry in payload["systems"].values():
        assert -1 <= entry["spearman"] <= 1 and -1 <= entry["pearson"] <= 1
    assert payload["systems"]["causal-mean"]["delta_vs_causal_mean"] is None
    delta = payload["systems"]["bidirectional-mean"]["delta_vs_causal_mean"]
    spearmans = {name: entry["spearman"] for name, entry in payload["systems"].items()}
    assert delta["delta"] == pytest.approx(spearmans["bidirectional-mean"] - spearmans["causal-mean"])
    assert delta["ci95"] is None  # four pairs: too few for an interval, and no NaN in the JSON


def test_eval_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval"])
    assert result.exit_code == 1 and "give a BEIR dataset folder" in result.output
    result = runner.invoke(app, ["eval", str(tmp_path), "--systems", "bm25"])
    assert result.exit_code != 0 and "is not a BEIR dataset (corpus.jsonl" in str(result.exception)
    result = runner.invoke(app, ["eval", str(tmp_path), "--systems", "bm99"])
    assert "unknown system(s) bm99" in str(result.exception)


def test_causal_baselines_share_one_model_and_pass(
    scifact_sample: Path,
    tiny_backbone_dir: Path,
    fresh_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ragkit.evaluation.retrieval import evaluate_retrieval

    loads: list[str | None] = []
    original = Encoder.from_pretrained.__func__

    def counting(cls, name="default", **kwargs):
        loads.append(kwargs.get("pooling"))
        return original(cls, name, **kwargs)

    monkeypatch.setattr(Encoder, "from_pretrained", classmethod(counting))
    both = evaluate_retrieval(
        scifact_sample, encoder=str(tiny_backbone_dir), systems="causal-mean,causal-last"
    )
    assert loads == [None, "mean"]  # the encoder under test, then one model for both baselines
    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "other-home"))
    alone = evaluate_retrieval(scifact_sample, encoder=str(tiny_backbone_dir), systems="causal-last")
    assert alone["systems"]["causal-last"]["ndcg@10"] == both["systems"]["causal-last"]["ndcg@10"]
    assert alone["per_query_ndcg@10"]["causal-last"] == both["per_query_ndcg@10"]["causal-last"]


def test_hybrid_system_is_what_index_search_returns(tmp_path: Path, tiny_backbone_dir: Path) -> None:
    """The eval's hybrid ranks a corpus exactly as ``Index.search`` ranks the same texts."""
    from conftest import WORDS, write_beir
    from ragkit.evaluation.beir import load_beir
    from ragkit.evaluation.retrieval import evaluate_retrieval, exact_search, hybrid_run
    from ragkit.indexer.builder import IndexOptions, build_index
    from ragkit.search.index import Index

    rng = random.Random(3)
    texts = {f"d{i}": " ".join(rng.choice(WORDS) for _ in range(8)) for i in range(30)}
    queries = {f"q{i}": " ".join(rng.choice(WORDS) for _ in range(4)) for i in range(6)}
    dataset_dir = tmp_path / "beir"
    write_beir(dataset_dir, {d: ("", t) for d, t in texts.items()}, queries, [(q, "d0", 1) for q in queries])
    result = evaluate_retrieval(dataset_dir, encoder=str(tiny_backbone_dir), systems="hybrid")
    assert list(result["systems"]) == ["ragkit", "hybrid"]
    assert result["systems"]["hybrid"]["system"]["fusion"] == "convex"

    docs = tmp_path / "docs"
    docs.mkdir()
    for doc, text in texts.items():
        (docs / f"{doc}.txt").write_text(text + "\n")
    build_index(IndexOptions(source=docs, index_dir=tmp_path / "index", encoder=str(tiny_backbone_dir)))
    index = Index.open(tmp_path / "index")
    dataset = load_beir(dataset_dir, "test")
    encoder = index.encoder
    doc_ids = list(dataset.corpus)
    stored = np.vstack(
        [
            np.frombuffer(r[0], dtype=np.float16)
            for r in index.db.execute(
                "SELECT c.vector FROM chunks c JOIN documents d ON d.id = c.document_id ORDER BY d.path"
            )
        ]
    ).astype(np.float32)
    order = sorted(doc_ids, key=lambda d: f"{d}.txt")
    doc_vectors = stored[[order.index(d) for d in doc_ids]]
    query_ids = list(dataset.queries)
    dense = exact_search(
        doc_vectors, encoder.encode_queries([dataset.queries[q] for q in query_ids]), doc_ids, query_ids
    )
    fused = hybrid_run(dataset, dense, k=10)
    for query in query_ids:
        hits = index.search(dataset.queries[query], k=10)
        assert [h.source.removesuffix(".txt") for h in hits] == list(fused[query])
