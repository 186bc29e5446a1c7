"""Queries without torch: NumPy reads the same weights, hashes them the same way and gives the
same vectors as torch, and a search process imports torch only when that is not verified."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from test_encoder import TEXTS, _encoder_with_adapter

from conftest import CATS_AND_DOGS, build_tiny_index, make_model
from ragkit.encoder import Encoder
from ragkit.encoder.adapters import Adapter, adapter_file_hash, load_adapter
from ragkit.encoder.attention import set_bidirectional
from ragkit.encoder.light import load_light_model
from ragkit.encoder.numpy_encoder import NumpyEncoder, load_numpy_encoder
from ragkit.encoder.numpy_engine import VERDICT_NAME, load_numpy_model, verify_against_light
from ragkit.encoder.numpy_weights import read_float_tensors
from ragkit.errors import EncoderFormatError, InvalidInputError


def test_safetensors_are_read_without_torch_and_widened_exactly_as_torch(tmp_path: Path):
    generator = torch.Generator().manual_seed(0)
    tensors = {
        "f32": torch.randn(3, 5, generator=generator),
        "f16": torch.randn(4, generator=generator).half(),
        "bf16": torch.randn(2, 3, generator=generator).bfloat16(),
        "empty": torch.zeros(0),
    }
    save_file(tensors, str(tmp_path / "t.safetensors"))
    read = read_float_tensors(tmp_path / "t.safetensors")
    assert set(read) == set(tensors)
    for key, tensor in tensors.items():
        assert read[key].dtype == np.float32
        np.testing.assert_array_equal(read[key], tensor.float().numpy())
    save_file({"ids": torch.arange(4)}, str(tmp_path / "ints.safetensors"))
    with pytest.raises(ValueError, match="I64"):
        read_float_tensors(tmp_path / "ints.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(ValueError, match="not a safetensors file"):
        read_float_tensors(tmp_path / "bad.safetensors")
    save_file({"e16": torch.zeros(0, 3).half(), "eb16": torch.zeros(2, 0).bfloat16()}, str(tmp_path / "e.st"))
    assert {k: v.shape for k, v in read_float_tensors(tmp_path / "e.st").items()} == {
        "e16": (0, 3),
        "eb16": (2, 0),
    }


def _raw_safetensors(path: Path, header: object, data: bytes) -> Path:
    encoded = json.dumps(header).encode()
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + data)
    return path


@pytest.mark.parametrize(
    "header, data, message",
    [
        ([1, 2], b"", "not a JSON object"),
        ({"a": "F32"}, b"", "not a JSON object"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 8, "do not match"),
        ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8, "do not match"),
        ({"a": {"dtype": "F32", "shape": [0, 5], "data_offsets": [4, 0]}}, b"\0" * 8, "do not match"),
        ({"a": {"dtype": "F32", "shape": [2]}}, b"\0" * 8, "malformed"),
    ],
)
def test_a_damaged_safetensors_file_is_refused_never_read_as_zeros(tmp_path: Path, header, data, message):
    with pytest.raises(ValueError, match=message):
        read_float_tensors(_raw_safetensors(tmp_path / "x.safetensors", header, data))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_an_adapters_hash_read_from_its_file_equals_the_loaded_adapters(tmp_path: Path, dtype):
    generator = torch.Generator().manual_seed(1)
    config = {"r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]}
    tensors = {
        "model.layers.0.self_attn.q_proj.lora_A.weight": torch.randn(2, 8, generator=generator).to(dtype),
        "model.layers.0.self_attn.q_proj.lora_B.weight": torch.randn(8, 2, generator=generator).to(dtype),
    }
    Adapter("a", config, tensors).save(tmp_path / "a")
    assert adapter_file_hash(tmp_path / "a") == load_adapter(tmp_path / "a").content_hash()
    changed = dict(tensors)
    changed["model.layers.0.self_attn.q_proj.lora_B.weight"] = (
        tensors["model.layers.0.self_attn.q_proj.lora_B.weight"] * 2
    )
    Adapter("b", config, changed).save(tmp_path / "b")
    assert adapter_file_hash(tmp_path / "b") != adapter_file_hash(tmp_path / "a")
    with pytest.raises(EncoderFormatError, match="cannot read adapter"):
        adapter_file_hash(tmp_path / "missing")


def test_numpy_forward_equals_the_light_one_and_a_wrong_model_is_caught(tmp_path: Path):
    model = make_model("llama", seed=0)  # grouped-query attention: 4 heads, 2 key/value heads
    set_bidirectional(model, True)
    model.save_pretrained(tmp_path / "m", safe_serialization=True)
    light = load_light_model(tmp_path / "m")
    verdict = verify_against_light(light, tmp_path / "m")
    assert verdict["verified"] and verdict["max_relative_difference"] < 1e-5
    ids = [5, 17, 3, 99, 42, 8]
    with torch.inference_mode():
        expected = light(input_ids=torch.tensor([ids])).last_hidden_state[0].numpy()
    np.testing.assert_allclose(load_numpy_model(tmp_path / "m").forward(ids), expected, atol=1e-5)

    other = make_model("llama", seed=10)
    set_bidirectional(other, True)
    other.save_pretrained(tmp_path / "other", safe_serialization=True)
    assert not verify_against_light(load_light_model(tmp_path / "other"), tmp_path / "m")["verified"]


def _merged_folder(home: Path) -> Path:
    return next(f for f in (home / "merged").iterdir() if not f.name.startswith("."))


def test_numpy_encoder_has_the_full_encoders_fingerprint_and_vectors_for_every_pooling(
    tiny_backbone_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "home"))
    saved = _encoder_with_adapter(tiny_backbone_dir, tmp_path / "enc", seed=3)
    assert load_numpy_encoder(str(saved)) is None  # no merged cache yet
    full = Encoder.from_pretrained(str(saved))
    assert load_numpy_encoder(str(saved)) is None  # the light forward never ran: no verdict
    Encoder.from_pretrained(str(saved), backend="light")
    assert json.loads((_merged_folder(tmp_path / "home") / VERDICT_NAME).read_text())["verified"]
    for pooling in ("mean", "weighted_mean", "last_token", "first_token"):
        reference = full if pooling == "mean" else full.with_pooling(pooling)
        folder = saved if pooling == "mean" else reference.save(tmp_path / pooling)
        numpy_encoder = load_numpy_encoder(str(folder))
        assert isinstance(numpy_encoder, NumpyEncoder), pooling
        assert numpy_encoder.fingerprint == reference.fingerprint
        assert numpy_encoder.dimension == reference.dimension
        np.testing.assert_allclose(numpy_encoder.encode(TEXTS), reference.encode(TEXTS), atol=1e-5)
        np.testing.assert_allclose(
            numpy_encoder.encode_queries(TEXTS[:3]), reference.encode_queries(TEXTS[:3]), atol=1e-5
        )
        np.testing.assert_allclose(
            numpy_encoder.encode_documents(TEXTS[0]), reference.encode_documents(TEXTS[0]), atol=1e-5
        )
    # A verdict made by another NumPy (or engine version) is no verdict.
    verdict_file = _merged_folder(tmp_path / "home") / VERDICT_NAME
    verdict = json.loads(verdict_file.read_text())
    verdict_file.write_text(json.dumps({**verdict, "numpy": "0.0"}))
    assert load_numpy_encoder(str(saved)) is None
    verdict_file.write_text(json.dumps(verdict))
    with pytest.raises(InvalidInputError, match="batch_size"):
        load_numpy_encoder(str(saved)).encode(TEXTS, batch_size=0)
    # Declined rather than guessed: a causal encoder, a bare backbone, a failed verdict.
    causal = Encoder.from_pretrained(str(saved), bidirectional=False).save(tmp_path / "causal")
    assert load_numpy_encoder(str(causal)) is None
    assert load_numpy_encoder(str(tiny_backbone_dir)) is None
    (_merged_folder(tmp_path / "home") / VERDICT_NAME).write_text(json.dumps({"verified": False}))
    assert load_numpy_encoder(str(saved)) is None


def test_the_instruction_is_attended_but_not_pooled_and_end_tokens_pooled_as_in_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from conftest import make_tokenizer

    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "home"))
    backbone = tmp_path / "tiny-eos"
    make_model("llama", seed=2).save_pretrained(backbone, safe_serialization=True)
    make_tokenizer(bos=True, eos=True).save_pretrained(backbone)
    plain = _encoder_with_adapter(backbone, tmp_path / "plain", seed=4)
    full = Encoder.from_pretrained(str(plain), instructions={"query": "find the matching passage for"})
    saved = full.save(tmp_path / "instructed")
    Encoder.from_pretrained(str(saved), backend="light")  # records the verdict
    numpy_encoder = load_numpy_encoder(str(saved))
    assert numpy_encoder is not None and numpy_encoder.fingerprint == full.fingerprint
    queries = numpy_encoder.encode_queries(TEXTS)
    np.testing.assert_allclose(queries, full.encode_queries(TEXTS), atol=1e-5)
    assert np.abs(queries - numpy_encoder.encode_documents(TEXTS)).max() > 1e-3  # the instruction counts
    np.testing.assert_allclose(
        numpy_encoder.encode(TEXTS, instruction="another task"),
        full.encode(TEXTS, instruction="another task"),
        atol=1e-5,
    )


def test_a_check_that_raises_leaves_the_light_load_working_and_records_nothing(
    tiny_backbone_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import ragkit.encoder.numpy_engine as engine
    from ragkit.encoder.light import LightLlama

    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "home"))
    saved = _encoder_with_adapter(tiny_backbone_dir, tmp_path / "enc", seed=3)
    Encoder.from_pretrained(str(saved))

    def broken(light, folder):
        raise RuntimeError("a BLAS that crashes")

    monkeypatch.setattr(engine, "verify_against_light", broken)
    light = Encoder.from_pretrained(str(saved), backend="light")
    assert isinstance(light.model, LightLlama)
    assert not (_merged_folder(tmp_path / "home") / VERDICT_NAME).exists()
    assert load_numpy_encoder(str(saved)) is None


_SEARCH = """
import json, sys
from ragkit import Index
from ragkit.answer import answer
index = Index.open(sys.argv[1])
hits = index.search("the cat sat", k=3, hybrid=False)
hybrid = index.search("the cat sat", k=3)
answered = answer(index, "where did the cat sit", k=2)
print(json.dumps({"hits": [h.chunk_id for h in hits], "hybrid": [h.chunk_id for h in hybrid],
                  "answer": answered.text, "engine": type(index.encoder).__name__,
                  "torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules}))
"""


def _search_in_fresh_process(index_dir: Path, home: Path) -> dict:
    env = {**os.environ, "RAGKIT_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-c", _SEARCH, str(index_dir)],
        capture_output=True,
        text=True,
        env=env,
        cwd=index_dir.parent,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_search_imports_torch_only_when_the_numpy_engine_is_not_verified(
    tiny_backbone_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    home = tmp_path / "home"
    monkeypatch.setenv("RAGKIT_HOME", str(home))
    saved = _encoder_with_adapter(tiny_backbone_dir, tmp_path / "enc", seed=3)
    index_dir = build_tiny_index(tmp_path, saved, {"a.md": CATS_AND_DOGS})
    from ragkit.answer import answer
    from ragkit.search.index import Index

    expected = Index.open(index_dir, encoder=Encoder.from_pretrained(str(saved)))
    expected_hits = [h.chunk_id for h in expected.search("the cat sat", k=3, hybrid=False)]
    expected_hybrid = [h.chunk_id for h in expected.search("the cat sat", k=3)]
    expected_answer = answer(expected, "where did the cat sit", k=2).text
    verdict = _merged_folder(home) / VERDICT_NAME
    verdict.unlink(missing_ok=True)

    first = _search_in_fresh_process(index_dir, home)  # not verified yet: torch, then the verdict
    assert first["torch"] and first["engine"] == "Encoder" and first["hits"] == expected_hits
    assert json.loads(verdict.read_text())["verified"]
    second = _search_in_fresh_process(index_dir, home)
    assert second == {
        "hits": expected_hits,
        "hybrid": expected_hybrid,
        "answer": expected_answer,
        "engine": "NumpyEncoder",
        "torch": False,
        "transformers": False,
    }

    verdict.write_text(json.dumps({"verified": False, "max_relative_difference": 0.5}))
    refused = _search_in_fresh_process(index_dir, home)
    assert refused["torch"] and refused["engine"] == "Encoder" and refused["hits"] == expected_hits
