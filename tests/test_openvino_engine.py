"""The OpenVINO engine: the torch vectors, a verified build, and torch whenever it cannot apply."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from test_encoder import TEXTS, _encoder_with_adapter

import ragkit.encoder.merged as merged
from ragkit.encoder import Encoder
from ragkit.encoder import openvino_engine as engine
from ragkit.encoder.light import LightLlama
from ragkit.errors import InvalidInputError

pytest.importorskip("openvino")


@pytest.fixture
def saved(tiny_backbone_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(merged, "_warned", set())
    folder = _encoder_with_adapter(tiny_backbone_dir, tmp_path / "enc", seed=4)
    Encoder.from_pretrained(str(folder))  # builds and verifies the merged-weights cache
    return folder


def _engine_files(home: Path) -> list[Path]:
    return sorted((home / "engines").glob("openvino-*/encoder.*"))


@pytest.mark.parametrize("side", ["right", "left"])
def test_the_engine_gives_torch_s_vectors_and_fingerprint(saved: Path, tmp_path: Path, side: str):
    torch_encoder = Encoder.from_pretrained(str(saved), backend="torch", padding_side=side)
    fast = Encoder.from_pretrained(str(saved), backend="auto", padding_side=side)  # auto
    assert fast.describe()["backend"] == "openvino" and torch_encoder.describe()["backend"] == "torch"
    assert fast.fingerprint == torch_encoder.fingerprint
    assert fast.describe()["parameters"] == torch_encoder.describe()["parameters"]
    for kwargs in ({}, {"instruction": "Find the passage: "}):
        ours, theirs = fast.encode(TEXTS, **kwargs), torch_encoder.encode(TEXTS, **kwargs)
        assert float((ours * theirs).sum(1).min()) > 0.9999
        np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert fast.probe_result.is_bidirectional()


def test_a_damaged_engine_artefact_is_rebuilt(saved: Path, tmp_path: Path, caplog):
    expected = Encoder.from_pretrained(str(saved), backend="auto").encode(TEXTS)
    files = _engine_files(tmp_path / "home")
    assert [f.suffix for f in files] == [".bin", ".xml"]
    files[0].write_bytes(files[0].read_bytes()[:100])  # truncated weights
    with caplog.at_level(logging.WARNING, logger="ragkit"):
        again = Encoder.from_pretrained(str(saved), backend="auto")
    assert "damaged; rebuilding" in caplog.text
    assert again.describe()["backend"] == "openvino"
    np.testing.assert_allclose(again.encode(TEXTS), expected, atol=1e-5)


def test_auto_never_uses_an_engine_that_failed_its_check(saved: Path, monkeypatch, caplog):
    monkeypatch.setattr(engine, "MIN_COSINE", 1.5)  # no conversion can pass this
    with caplog.at_level(logging.WARNING, logger="ragkit"):
        encoder = Encoder.from_pretrained(str(saved), backend="auto")
        Encoder.from_pretrained(str(saved), backend="auto")
    assert isinstance(encoder.model, LightLlama) and encoder.describe()["backend"] == "light"
    assert caplog.text.count("disagrees with torch") == 1  # said once


def test_not_installed_falls_back_with_one_line_and_unknown_backends_are_refused(
    saved: Path, monkeypatch, caplog
):
    monkeypatch.setattr(engine, "installed", lambda: False)
    with caplog.at_level(logging.WARNING, logger="ragkit"):
        encoder = Encoder.from_pretrained(str(saved), backend="openvino")
    assert encoder.describe()["backend"] == "light"
    assert caplog.text.count("OpenVINO is not installed") == 1
    with pytest.raises(InvalidInputError, match="unknown backend 'nonexistent'"):
        Encoder.from_pretrained(str(saved), backend="nonexistent")
    # The default backend is torch (training and evaluation measure the torch model).
    assert Encoder.from_pretrained(str(saved)).describe()["backend"] == "torch"


def test_the_compiled_cache_speeds_loads_and_a_bad_one_is_replaced(saved: Path, tmp_path: Path, caplog):
    expected = Encoder.from_pretrained(str(saved), backend="auto").encode(TEXTS)
    (folder,) = (tmp_path / "home" / "engines").glob("openvino-*")
    blobs = [p for p in (folder / engine.COMPILED_DIR).rglob("*") if p.is_file()]
    assert blobs, "the first load leaves OpenVINO's compiled form beside the model"
    for blob in blobs:
        blob.write_bytes(b"\0" * blob.stat().st_size)  # garbage of the right size
    again = Encoder.from_pretrained(str(saved), backend="auto")
    assert again.describe()["backend"] == "openvino"
    np.testing.assert_allclose(again.encode(TEXTS), expected, atol=1e-5)


def test_a_compiled_copy_that_disagrees_with_the_build_is_never_used(saved: Path, monkeypatch, caplog):
    expected = Encoder.from_pretrained(str(saved), backend="light").encode(TEXTS)
    compile_for_real = engine._compile

    def skewed(folder: Path, cached: bool = True, precision: str = "f32"):
        compiled = compile_for_real(folder, cached, precision)
        if not cached:
            return compiled
        return lambda arrays: [compiled(arrays)[0][..., ::-1].copy()]  # a different model

    monkeypatch.setattr(engine, "_compile", skewed)
    with caplog.at_level(logging.WARNING, logger="ragkit"):
        encoder = Encoder.from_pretrained(str(saved), backend="auto")
    assert "disagrees with the build; compiling afresh" in caplog.text
    assert encoder.describe()["backend"] == "openvino"
    np.testing.assert_allclose(encoder.encode(TEXTS), expected, atol=1e-4)


def test_bf16_is_an_opt_in_held_to_its_pooled_vectors(saved: Path, monkeypatch, caplog):
    torch_encoder = Encoder.from_pretrained(str(saved), backend="torch")
    fast = Encoder.from_pretrained(str(saved), backend="auto", dtype="bfloat16")
    assert fast.describe()["backend"] == "openvino" and fast.describe()["dtype"] == "bfloat16"
    assert fast.fingerprint == torch_encoder.fingerprint
    for kwargs in ({}, {"instruction": "Find the passage: "}):
        ours, theirs = fast.encode(TEXTS, **kwargs), torch_encoder.encode(TEXTS, **kwargs)
        assert float((ours * theirs).sum(1).min()) > engine.BF16_MIN_COSINE
    assert Encoder.from_pretrained(str(saved), backend="auto").describe()["dtype"] == "float32"

    monkeypatch.setattr(engine, "BF16_MIN_COSINE", 1.5)  # no engine can pass this
    with caplog.at_level(logging.WARNING, logger="ragkit"):
        refused = Encoder.from_pretrained(str(saved), backend="auto", dtype="bfloat16")
    assert refused.describe()["backend"] == "torch" and "disagrees with its build-time check" in caplog.text
    assert float((refused.encode(TEXTS) * torch_encoder.encode(TEXTS)).sum(1).min()) > 0.99


def test_the_bf16_check_judges_real_text_not_random_ids(
    saved: Path, tmp_path: Path, tiny_backbone_dir: Path, monkeypatch
):
    """Rows of random ids are all rare tokens; the bf16 engine is held to documentation prose."""
    import torch
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    from ragkit.encoder.probe_texts import probe_texts

    Encoder.from_pretrained(str(saved), backend="auto")  # builds the engine
    (probe_file,) = (tmp_path / "home" / "engines").glob("openvino-*/probe.safetensors")
    recorded = load_file(str(probe_file))
    mask = recorded["text_attention_mask"]
    assert mask.shape[0] == engine.TEXT_PROBE_ROWS and mask[0, 0] == 1 and mask[-1, 0] == 0  # both sides
    assert mask[1, -1] == 0 and mask[-1, -1] == 1
    tokenizer = Tokenizer.from_file(str(tiny_backbone_dir / "tokenizer.json"))
    first = tokenizer.encode(probe_texts()[0][0]).ids[: engine.TEXT_PROBE_TOKENS]
    assert recorded["text_input_ids"][0, : len(first)].tolist() == first
    pooled_probes = []
    measure = engine._min_cosine

    def spy(compiled, probe, expected, pooled=False):
        if pooled:
            pooled_probes.append(probe[0])
        return measure(compiled, probe, expected, pooled)

    monkeypatch.setattr(engine, "_min_cosine", spy)
    fast = Encoder.from_pretrained(str(saved), backend="auto", dtype="bfloat16")
    assert fast.describe()["dtype"] == "bfloat16"
    assert pooled_probes and all(torch.equal(ids, recorded["text_input_ids"]) for ids in pooled_probes)


@pytest.mark.parametrize(
    "rows",
    [
        [[5, 6, 7], [8, 9]],
        [[5, 6], [7, 8]],  # equal lengths
        [[5] * 60 for _ in range(10)],  # long passages: cut, and at most TEXT_PROBE_ROWS
        [[], [5, 6, 7], [], [8, 9, 10, 11]],  # empty rows skipped
    ],
)
def test_the_text_probe_is_padded_on_both_sides(rows):
    ids, mask, positions = engine.text_probe(rows, vocab=64)
    assert 2 <= len(ids) <= engine.TEXT_PROBE_ROWS
    assert mask[0, -1] == 0 and mask[0, 0] == 1  # right-padded
    assert mask[-1, 0] == 0 and mask[-1, -1] == 1  # left-padded
    assert positions[-1][mask[-1].bool()].tolist() == list(range(int(mask[-1].sum())))
    assert int(mask.sum(1).max()) <= engine.TEXT_PROBE_TOKENS


def test_no_text_probe_from_too_little_text_or_ids_the_model_lacks():
    assert engine.text_probe([], vocab=64) is None
    assert engine.text_probe([[5, 6], []], vocab=64) is None
    assert engine.text_probe([[5, 6], [70, 80]], vocab=64) is None  # ids past the vocabulary
    ids, mask, _ = engine.text_probe([[5, 70, 6], [7, 8]], vocab=64)
    assert sorted(ids[mask.bool()].tolist()) == [5, 6, 7, 8]
