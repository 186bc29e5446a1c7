"""Document precision: bf16 only where the retrieval check passes, recorded in the index."""

from __future__ import annotations

import json

import pytest
import torch
import transformers as tf
from test_trainer_run import run_cli
from typer.testing import CliRunner

from conftest import TINY_CONFIG, make_encoder, make_model, make_tokenizer
from ragkit.cli.app import app
from ragkit.encoder import document_precision
from ragkit.encoder.document_precision import MIN_AGREEMENT, MIN_COSINE, choose
from ragkit.encoder.encoder import Encoder
from ragkit.indexer.builder import IndexOptions, build_index
from ragkit.search.index import Index

BF16_CPU = ["avx512_bf16"]


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch):
    """Remembered checks are keyed by fingerprint, and the tiny models here share one."""
    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "home"))


def _anisotropic_model():
    """A tiny Llama whose states all lean one way (a large bias on the last MLP), as real LLM
    embeddings do: bf16 keeps each vector within cosine 0.9999 but reorders neighbours."""
    torch.manual_seed(0)
    config = tf.LlamaConfig(**TINY_CONFIG, pad_token_id=0, attn_implementation="sdpa", mlp_bias=True)
    model = tf.AutoModel.from_config(config).eval()
    with torch.no_grad():
        for layer in model.layers:
            layer.mlp.down_proj.bias.zero_()
        direction = torch.randn(config.hidden_size, generator=torch.Generator().manual_seed(2))
        model.layers[-1].mlp.down_proj.bias.copy_(3.0 * direction)
    return model


def _wrap(model, like: Encoder, dtype: str | None = None) -> Encoder:
    return Encoder.from_model(model, make_tokenizer(), like.config, backbone=like.backbone, dtype=dtype)


def test_bf16_that_reorders_neighbours_is_refused_and_auto_keeps_fp32():
    reference = _wrap(_anisotropic_model(), make_encoder())
    built = []

    def candidate(ref: Encoder) -> Encoder:
        built.append(ref)
        return _wrap(_anisotropic_model(), ref, dtype="bfloat16")

    choice, chosen = choose(reference, features=BF16_CPU, candidate=candidate)
    assert chosen is reference and choice.dtype == "float32"
    assert choice.reason == "bf16 failed the retrieval check"
    assert choice.min_cosine >= MIN_COSINE  # every vector is close: only the neighbours give it away
    assert choice.top_agreement < MIN_AGREEMENT
    again, chosen = choose(reference, features=BF16_CPU, candidate=candidate)
    assert (again, chosen) == (choice, reference) and len(built) == 1  # remembered, not rebuilt


def test_bf16_that_keeps_neighbours_is_chosen():
    reference = make_encoder()
    choice, chosen = choose(
        reference, features=BF16_CPU, candidate=lambda ref: _wrap(make_model(), ref, dtype="bfloat16")
    )
    assert choice.dtype == "bfloat16" and choice.passed
    assert chosen is not reference and chosen.describe()["dtype"] == "bfloat16"
    assert choice.min_cosine >= MIN_COSINE and choice.top_agreement >= MIN_AGREEMENT


def test_a_cpu_without_native_bf16_stays_fp32_without_building_anything():
    reference = make_encoder()

    def candidate(ref):
        raise AssertionError("no bf16 engine is built on a CPU without native bf16")

    choice, chosen = choose(reference, features=[], candidate=candidate)
    assert (choice.dtype, chosen) == ("float32", reference)
    assert "no native bf16" in choice.reason
    assert document_precision.expected_choice(reference, features=[]) == choice


def test_the_index_records_what_embedded_its_documents_and_when_it_mixes(tmp_path, tiny_backbone_dir):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nthe cat sat on the mat\n")
    (docs / "b.md").write_text("# B\n\nthe dog runs in the city\n")
    options = dict(source=docs, index_dir=tmp_path / "index", encoder=str(tiny_backbone_dir), chunk_tokens=16)
    build_index(IndexOptions(**options))
    first = Index.open(tmp_path / "index").status()
    assert first["document_precision"]["dtypes"] == ["float32"] and not first["document_precision"]["mixed"]
    assert first["document_precision"]["last_run"]["dtype"] == "float32"
    assert first["query_precision"] == "float32"

    (docs / "b.md").write_text("# B\n\nthe dog runs fast in the green city\n")
    build_index(IndexOptions(**options, dtype="bfloat16"))
    mixed = Index.open(tmp_path / "index").status()["document_precision"]
    assert mixed == {
        "dtypes": ["bfloat16", "float32"],
        "mixed": True,
        "last_run": {"dtype": "bfloat16", "reason": "asked for"},
    }
    shown = CliRunner().invoke(app, ["status", "--index", str(tmp_path / "index")])
    assert shown.exit_code == 0 and "mixed: bfloat16, float32" in shown.output

    build_index(IndexOptions(**options, rebuild=True))
    rebuilt = Index.open(tmp_path / "index").status()["document_precision"]
    assert rebuilt["dtypes"] == ["float32"] and not rebuilt["mixed"]


def test_info_says_which_precision_documents_get_and_a_bad_dtype_is_refused(
    tmp_path, tiny_backbone_dir, capsys
):
    runner = CliRunner()
    shown = runner.invoke(app, ["info", str(tiny_backbone_dir), "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["document_precision"].startswith(("float32", "bfloat16"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nthe cat sat\n")
    code, err = run_cli(
        ["index", str(docs), "--index", str(tmp_path / "i"), "-e", str(tiny_backbone_dir), "--dtype", "fp8"],
        capsys,
    )
    assert code != 0 and "dtype must be one of auto, float32, bfloat16" in err and "Traceback" not in err
    assert not (tmp_path / "i" / "index.db").exists() or Index.open(tmp_path / "i").status()["documents"] == 0
