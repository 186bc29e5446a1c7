"""``ragkit eval --dtype``: the corpus embedded as ``ragkit index`` would, cached by precision."""

from __future__ import annotations

import json
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


def _query_vectors(backbone: Path, dataset: Path) -> np.ndarray:
    from ragkit.evaluation.beir import load_beir

    encoder = Encoder.from_pretrained(str(backbone))
    queries = load_beir(dataset, "test").queries
    instruction = encoder.config.instructions.get("query", "")
    return encoder.encode(list(queries.values()), instruction=instruction)


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
    assert not list((tmp_path / "other" / "vectors").glob("*float16*"))
    again = evaluate_retrieval(
        dataset, encoder=str(tiny_backbone_dir), systems="ragkit", document_dtype="float32"
    )  # every vector cached: the corpus encoder is never loaded
    assert again["systems"]["ragkit"]["system"]["document_dtype_reason"] == "every vector was cached"


def test_bf16_documents_are_cached_apart_and_queries_stay_float32(
    dataset: Path, tiny_backbone_dir: Path, home: Path
) -> None:
    bf16 = evaluate_retrieval(
        dataset, encoder=str(tiny_backbone_dir), systems="ragkit", document_dtype="bfloat16"
    )
    system = bf16["systems"]["ragkit"]["system"]
    assert (system["document_dtype"], system["document_dtype_reason"]) == ("bfloat16", "asked for")
    fingerprint = system["fingerprint"]
    queries_only = _cached_vectors(fingerprint, home)
    assert len(queries_only) == 8  # the queries, embedded in float32 on torch
    np.testing.assert_allclose(
        np.stack([queries_only[k] for k in sorted(queries_only)]).sum(0),
        _query_vectors(tiny_backbone_dir, dataset).sum(0),
        atol=1e-5,
    )
    bf16_vectors = _cached_vectors(f"{fingerprint}-torch-cpu-bfloat16", home)
    assert len(bf16_vectors) == 24

    fp32 = evaluate_retrieval(dataset, encoder=str(tiny_backbone_dir), systems="ragkit")
    fp32_vectors = _cached_vectors(fingerprint, home)
    assert len(fp32_vectors) == 24 + 8
    assert all(np.array_equal(fp32_vectors[k], v) for k, v in queries_only.items())  # reused, not mixed
    cosines = [float(bf16_vectors[k] @ fp32_vectors[k]) for k in bf16_vectors]
    assert min(cosines) > 0.98 and any(c < 0.999999 for c in cosines)  # close, but not the same vectors
    assert _cached_vectors(f"{fingerprint}-torch-cpu-bfloat16", home).keys() == bf16_vectors.keys()
    assert fp32["systems"]["ragkit"]["system"]["fingerprint"] == fingerprint


def test_an_encoder_under_test_in_bf16_never_shares_the_float32_cache(
    dataset: Path, tiny_backbone_dir: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GPU evaluates in bf16; its vectors must not answer a later float32 evaluation."""
    from ragkit.evaluation.sts import evaluate_sts

    sts = tmp_path / "sts.tsv"
    rows = [f"{i % 5}.0\tthe cat {WORDS[i]} sat\ta dog {WORDS[i + 1]} ran" for i in range(6)]
    sts.write_text("score\tsentence1\tsentence2\n" + "\n".join(rows) + "\n")
    bf16 = Encoder.from_pretrained(str(tiny_backbone_dir), dtype="bfloat16")
    evaluate_retrieval(dataset, encoder=bf16, systems="ragkit")
    evaluate_sts(sts, encoder=bf16, systems="ragkit")
    fingerprint = bf16.fingerprint
    assert not (home / "vectors" / f"{fingerprint}.sqlite").exists()
    bf16_vectors = _cached_vectors(f"{fingerprint}-torch-cpu-bfloat16", home)
    assert len(bf16_vectors) == 24 + 8 + 12  # documents, queries and the STS sentences

    fp32 = evaluate_retrieval(dataset, encoder=str(tiny_backbone_dir), systems="ragkit")
    fp32_vectors = _cached_vectors(fingerprint, home)
    assert len(fp32_vectors) == 24 + 8
    shared = [k for k in bf16_vectors if k in fp32_vectors]
    assert max(float(np.abs(fp32_vectors[k] - bf16_vectors[k]).max()) for k in shared) > 1e-4
    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "empty-home"))
    fresh = evaluate_retrieval(dataset, encoder=str(tiny_backbone_dir), systems="ragkit")
    assert fp32["per_query_ndcg@10"] == fresh["per_query_ndcg@10"]


def test_auto_embeds_the_corpus_as_the_index_would_choose(
    dataset: Path, tiny_backbone_dir: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(document_precision, "cpu_bf16_features", lambda: [])
    result = evaluate_retrieval(
        dataset, encoder=str(tiny_backbone_dir), systems="ragkit", document_dtype="auto"
    )
    system = result["systems"]["ragkit"]["system"]
    assert system["document_dtype"] == "float32"
    assert system["document_dtype_reason"] == "the CPU has no native bf16 arithmetic"
    assert not list((home / "vectors").glob("*float16*"))  # float32: the fingerprint's own cache


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
    system = engine_run["systems"]["ragkit"]["system"]
    assert system["document_backend"] == "openvino"
    assert _rows(system["fingerprint"], tmp_path / "other") == 24 + 8
    assert not list((tmp_path / "other" / "vectors").glob("*float16*"))
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


def test_what_a_corpus_dtype_cannot_be_is_refused_before_loading(
    dataset: Path, tiny_backbone_dir: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = Encoder.from_pretrained(str(tiny_backbone_dir))

    def never(*args, **kwargs):
        raise AssertionError("nothing loads for a refused dtype")

    monkeypatch.setattr(Encoder, "from_pretrained", classmethod(never))
    with pytest.raises(InvalidInputError, match="needs the encoder as a name or folder"):
        evaluate_retrieval(dataset, encoder=loaded, systems="ragkit", document_dtype="bfloat16")
    with pytest.raises(InvalidInputError, match="Ray workers embed the corpus as they load the encoder"):
        evaluate_retrieval(dataset, encoder=str(tiny_backbone_dir), ray="local", document_dtype="bfloat16")
    with pytest.raises(InvalidInputError, match="document dtype must be one of"):
        evaluate_retrieval(dataset, encoder=str(tiny_backbone_dir), document_dtype="fp8")


def test_a_corpus_dtype_off_the_cpu_is_refused_and_the_cli_default_leaves_cuda_alone(
    dataset: Path, tiny_backbone_dir: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    import ragkit.encoder.encoder as encoder_module
    from ragkit.evaluation.corpus_encoder import default_corpus_dtype

    assert default_corpus_dtype("cpu") == "float32"
    monkeypatch.setattr(Encoder, "device", property(lambda self: torch.device("cuda")))
    with pytest.raises(InvalidInputError, match="on cuda the encoder embeds it in its own precision"):
        evaluate_retrieval(
            dataset, encoder=str(tiny_backbone_dir), systems="ragkit", document_dtype="float32"
        )
    monkeypatch.setattr(encoder_module, "resolve_device", lambda device: torch.device("cuda"))
    assert default_corpus_dtype(None) is None


def test_the_cli_passes_its_dtype_through(dataset: Path, tiny_backbone_dir: Path, home: Path) -> None:
    result = runner.invoke(
        app,
        [
            "eval",
            str(dataset),
            "-e",
            str(tiny_backbone_dir),
            "--systems",
            "ragkit",
            "--dtype",
            "bfloat16",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    system = json.loads(result.stdout)["systems"]["ragkit"]["system"]
    assert system["document_dtype"] == "bfloat16"
    default = runner.invoke(
        app, ["eval", str(dataset), "-e", str(tiny_backbone_dir), "--systems", "ragkit", "--json"]
    )
    assert (
        json.loads(default.stdout)["systems"]["ragkit"]["system"]["document_dtype"] == "float32"
    )  # a CPU here


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dtype", "fp8"], "--dtype must be one of auto, float32, bfloat16, float16, not 'fp8'"),
        (["--dtype", "bfloat16", "--sts", "x.tsv"], "STS-B sentences are encoded as it loads"),
        (
            ["--dtype", "bfloat16", "--ray", "local"],
            "--ray workers embed the corpus as they load the encoder",
        ),
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
