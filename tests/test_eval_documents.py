"""``ragkit eval --dtype``: the corpus embedded as ``ragkit index`` would, cached by precision."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from test_encoder import _encoder_with_adapter
from typer.testing import CliRunner

import ragkit.encoder.document_precision as document_precision
from conftest import WORDS, make_encoder, write_beir
from ragkit.cli.app import app
from ragkit.encoder.cache import vectors_file
from ragkit.encoder.encoder import Encoder
from ragkit.errors import InvalidInputError, RagkitError
from ragkit.evaluation.retrieval import evaluate_retrieval

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    rng = random.Random(5)
    texts = {f"d{i}": " ".join(rng.choice(WORDS) for _ in range(12)) for i in range(24)}
    queries = {f"q{i}": " ".join(rng.choice(WORDS) for _ in range(4)) for i in range(8)}
    qrels = [(q, f"d{i * 3}", 1) for i, q in enumerate(queries)]
    return write_beir(tmp_path / "beir", {d: ("", t) for d, t in texts.items()}, queries, qrels)


def _rows(fingerprint: str, home: Path, name: str | None = None) -> int:
    path = vectors_file(name or fingerprint, home)
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]


def _cached_vectors(name: str, home: Path) -> dict[str, np.ndarray]:
    with sqlite3.connect(vectors_file(name, home)) as db:
        return {
            k: np.frombuffer(v, dtype=np.float32) for k, v in db.execute("SELECT key, vector FROM vectors")
        }


def test_float32_documents_share_the_fingerprint_cache_and_score_as_before(
    dataset: Path, tiny_backbone_dir: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = evaluate_retrieval(dataset, encoder=str(tiny_backbone_dir), systems="ragkit,hybrid")
    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "other"))
    now = evaluate_retrieval(
        dataset, encoder=str(tiny_backbone_dir), systems="ragkit,hybrid", document_dtype="float32"
    )
    assert now["per_query_ndcg@10"] == before["per_query_ndcg@10"]
    system = now["systems"]["ragkit"]["system"]
    assert system["document_dtype"] == "float32" and system["document_backend"] == "torch"
    fingerprint = system["fingerprint"]
    assert _rows(fingerprint, tmp_path / "other") == 24 + 8  # documents and queries, one file
    assert not list((tmp_path / "other" / "vectors").glob("*-documents-*"))


def test_bf16_documents_are_cached_apart_and_queries_stay_float32(
    dataset: Path, tiny_backbone_dir: Path, home: Path
) -> None:
    fp32 = evaluate_retrieval(dataset, encoder=str(tiny_backbone_dir), systems="ragkit")
    fingerprint = fp32["systems"]["ragkit"]["system"]["fingerprint"]
    fp32_vectors = _cached_vectors(fingerprint, home)
    bf16 = evaluate_retrieval(
        dataset, encoder=str(tiny_backbone_dir), systems="ragkit", document_dtype="bfloat16"
    )
    system = bf16["systems"]["ragkit"]["system"]
    assert (system["document_dtype"], system["document_dtype_reason"]) == ("bfloat16", "asked for")
    assert system["fingerprint"] == fingerprint
    apart = f"{fingerprint}-documents-bfloat16"
    bf16_vectors = _cached_vectors(apart, home)
    assert len(bf16_vectors) == 24  # the documents only: queries come from the float32 cache
    assert set(_cached_vectors(fingerprint, home)) == set(fp32_vectors)  # nothing bf16 mixed in
    shared = set(bf16_vectors) & set(fp32_vectors)
    assert len(shared) == 24
    cosines = [float(bf16_vectors[k] @ fp32_vectors[k]) for k in shared]
    assert min(cosines) > 0.98 and any(c < 0.999999 for c in cosines)  # close, but not the same vectors


def test_the_fast_engine_embeds_the_corpus_with_torch_s_scores(
    dataset: Path, tiny_backbone_dir: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("openvino")
    saved = _encoder_with_adapter(tiny_backbone_dir, tmp_path / "enc", seed=4)
    Encoder.from_pretrained(str(saved))  # builds and verifies the merged-weights cache
    torch_run = evaluate_retrieval(dataset, encoder=str(saved), systems="ragkit")
    assert "document_backend" not in torch_run["systems"]["ragkit"]["system"]
    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "other"))
    Encoder.from_pretrained(str(saved))
    engine_run = evaluate_retrieval(dataset, encoder=str(saved), systems="ragkit", document_dtype="float32")
    assert engine_run["systems"]["ragkit"]["system"]["document_backend"] == "openvino"
    for query, score in torch_run["per_query_ndcg@10"]["ragkit"].items():
        assert engine_run["per_query_ndcg@10"]["ragkit"][query] == pytest.approx(score, abs=1e-9)


def test_a_corpus_encoder_of_another_model_is_refused(
    dataset: Path, tiny_backbone_dir: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = make_encoder()

    def load_other(name, **kwargs):
        other.precision_choice = document_precision.PrecisionChoice("float32", "asked for")
        return other

    monkeypatch.setattr(document_precision, "load_document_encoder", load_other)
    with pytest.raises(RagkitError, match="it is another model"):
        evaluate_retrieval(
            dataset, encoder=str(tiny_backbone_dir), systems="ragkit", document_dtype="float32"
        )


def test_a_loaded_encoder_or_a_ray_run_cannot_take_another_document_dtype(
    dataset: Path, tiny_backbone_dir: Path, home: Path
) -> None:
    loaded = Encoder.from_pretrained(str(tiny_backbone_dir))
    with pytest.raises(InvalidInputError, match="needs the encoder as a name or folder"):
        evaluate_retrieval(dataset, encoder=loaded, systems="ragkit", document_dtype="bfloat16")
    with pytest.raises(InvalidInputError, match="Ray workers embed the corpus in float32"):
        evaluate_retrieval(dataset, encoder=str(tiny_backbone_dir), ray="local", document_dtype="bfloat16")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dtype", "fp8"], "--dtype must be one of auto, float32, bfloat16, float16, not 'fp8'"),
        (["--dtype", "bfloat16", "--sts", "x.tsv"], "STS-B sentences are encoded in float32"),
        (["--dtype", "bfloat16", "--ray", "local"], "--ray workers embed the corpus in float32"),
    ],
)
def test_the_cli_refuses_a_dtype_it_cannot_honour_before_loading(
    dataset: Path, extra: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args, **kwargs):
        raise AssertionError("no model loads for a refused flag")

    monkeypatch.setattr(Encoder, "from_pretrained", classmethod(never))
    result = runner.invoke(app, ["eval", str(dataset), *extra])
    assert result.exit_code != 0
    assert message in " ".join(result.output.split())


def test_the_engine_benchmark_compares_like_with_like_and_restores_the_cache(
    dataset: Path, tiny_backbone_dir: Path, home: Path, tmp_path: Path
) -> None:
    pytest.importorskip("openvino")
    from conftest import load_bench_script
    from ragkit.encoder import vector_cache

    bench = load_bench_script("eval_engine")
    saved = _encoder_with_adapter(tiny_backbone_dir, tmp_path / "enc", seed=4)
    Encoder.from_pretrained(str(saved))
    before = vector_cache.vectors_file
    record = bench.compare(str(dataset), str(saved), None, "float32", tmp_path / "scratch")
    assert vector_cache.vectors_file is before
    assert record["document_backend"] == "openvino" and record["document_dtype"] == "float32"
    assert record["corpus_size"] == 24 and record["queries"] == 8
    assert max(record["max_per_query_difference"].values()) < 1e-9
    assert record["ndcg@10"]["torch"] == record["ndcg@10"]["engine"]
    assert record["torch_seconds"] > 0 and record["engine_seconds"] > 0 and record["speedup"] > 0
    assert sorted(p.name for p in (tmp_path / "scratch").iterdir()) == ["engine", "torch"]
    assert not (home / "vectors").exists() or not list((home / "vectors").iterdir())
