"""The transformers-free query path: same vectors, same fingerprint, or no light path at all."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_encoder import TEXTS, _encoder_with_adapter

from conftest import FAMILIES, make_model, make_tokenizer
from ragkit.encoder import Encoder
from ragkit.encoder.attention import set_bidirectional
from ragkit.encoder.config import tokenizer_hash
from ragkit.encoder.light import LightLlama, load_light_model, supports, verify_against
from ragkit.encoder.light_tokenizer import LightTokenizer
from ragkit.encoder.numpy_engine import NumpyLlama
from ragkit.encoder.openvino_engine import OpenVinoBody


@pytest.mark.parametrize("seed", [0, 1])
def test_light_forward_equals_transformers_with_padding_on_either_side(tmp_path: Path, seed: int):
    model = make_model("llama", seed=seed)  # grouped-query attention: 4 heads, 2 key/value heads
    set_bidirectional(model, True)
    model.save_pretrained(tmp_path / "m", safe_serialization=True)
    assert verify_against(model, tmp_path / "m") < 1e-5
    # A wrong model is caught: the check is not a formality.
    other = make_model("llama", seed=seed + 10)
    set_bidirectional(other, True)
    assert verify_against(other, tmp_path / "m") > 1e-2
    # Causal attention is not what the light model computes.
    set_bidirectional(model, False)
    assert verify_against(model, tmp_path / "m") > 1e-3


def test_only_plain_llama_is_supported(tmp_path: Path):
    for family in FAMILIES:
        config = make_model(family).config.to_dict()
        assert supports(config) == (family == "llama"), family
    config = make_model("llama").config.to_dict()
    assert not supports({**config, "attention_bias": True})
    assert not supports({**config, "rope_parameters": {"rope_type": "linear", "factor": 2.0}})


def test_light_tokenizer_gives_the_same_ids_pad_and_hash(tmp_path: Path):
    hf = make_tokenizer(bos=True, eos=True)
    hf.save_pretrained(tmp_path / "tok")
    light = LightTokenizer(tmp_path / "tok")
    for special in (True, False):
        assert (
            light(TEXTS, add_special_tokens=special)["input_ids"]
            == hf(TEXTS, add_special_tokens=special)["input_ids"]
        )
    assert light("the cat")["input_ids"] == hf("the cat")["input_ids"]
    assert (light.pad_token_id, light.eos_token_id) == (hf.pad_token_id, hf.eos_token_id)
    assert tokenizer_hash(light) == tokenizer_hash(hf)
    text = "日本語 and wörds, with   spaces.\nnew line"
    assert (
        light(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        == hf(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    )


def test_light_encoder_has_the_fingerprint_and_vectors_of_the_full_one(
    tiny_backbone_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "home"))
    saved = _encoder_with_adapter(tiny_backbone_dir, tmp_path / "enc", seed=3)
    full = Encoder.from_pretrained(str(saved))  # builds and verifies the merged cache
    manifest = json.loads(next((tmp_path / "home" / "merged").glob("*/ragkit-cache.json")).read_text())
    assert manifest["light"]["verified"] is True
    light = Encoder.from_pretrained(str(saved), backend="light")
    assert isinstance(light.model, LightLlama) and isinstance(light.tokenizer, LightTokenizer)
    assert light.fingerprint == full.fingerprint
    assert light.probe_result.is_bidirectional()
    np.testing.assert_allclose(light.encode(TEXTS), full.encode(TEXTS), atol=1e-5)
    np.testing.assert_allclose(light.encode_queries(TEXTS[:2]), full.encode_queries(TEXTS[:2]), atol=1e-5)
    # A light encoder saves like any other: the copy loads to the same encoder.
    copy = Encoder.from_pretrained(str(light.save(tmp_path / "copy")))
    assert copy.fingerprint == full.fingerprint
    np.testing.assert_allclose(copy.encode(TEXTS), full.encode(TEXTS), atol=1e-5)


def test_light_is_declined_when_unverified_causal_or_not_fp32(
    tiny_backbone_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "home"))
    saved = _encoder_with_adapter(tiny_backbone_dir, tmp_path / "enc", seed=3)
    Encoder.from_pretrained(str(saved))
    manifest_path = next((tmp_path / "home" / "merged").glob("*/ragkit-cache.json"))
    for options in ({"bidirectional": False}, {"dtype": "bfloat16"}):
        loaded = Encoder.from_pretrained(str(saved), backend="light", **options)
        assert not isinstance(loaded.model, LightLlama)
    # No verified verdict (say, a verification that failed): transformers, not a guess.
    manifest = json.loads(manifest_path.read_text())
    manifest["light"] = {"verified": False, "max_difference": 0.5}
    manifest_path.write_text(json.dumps(manifest))
    assert "ragkit-cache.json" not in manifest["files"]  # so editing it keeps it valid
    assert not isinstance(Encoder.from_pretrained(str(saved), backend="light").model, LightLlama)


def test_load_light_model_refuses_other_families(tmp_path: Path):
    make_model("qwen2").save_pretrained(tmp_path / "q", safe_serialization=True)
    with pytest.raises(ValueError, match="plain Llama"):
        load_light_model(tmp_path / "q")


def test_index_search_loads_light_and_falls_back_on_a_fingerprint_mismatch(
    tiny_backbone_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from conftest import CATS_AND_DOGS, build_tiny_index
    from ragkit.search.index import Index

    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "home"))
    saved = _encoder_with_adapter(tiny_backbone_dir, tmp_path / "enc", seed=3)
    index_dir = build_tiny_index(tmp_path, saved, {"a.md": CATS_AND_DOGS})
    light = Index.open(index_dir)
    hits = light.search("the cat sat", k=3, hybrid=False)
    assert isinstance(light.encoder.model, LightLlama | OpenVinoBody | NumpyLlama)  # never transformers
    full = Index.open(index_dir, encoder=Encoder.from_pretrained(str(saved)))
    expected = full.search("the cat sat", k=3, hybrid=False)
    assert [h.chunk_id for h in hits] == [h.chunk_id for h in expected]
    np.testing.assert_allclose([h.score for h in hits], [h.score for h in expected], atol=1e-5)

    # Should the light tokenizer ever hash differently, the index reloads through transformers.
    # (The NumPy engine uses the light tokenizer too: every engine without transformers falls.)
    import ragkit.encoder.encoder as encoder_module
    import ragkit.encoder.numpy_encoder as numpy_module

    real_hash = encoder_module.tokenizer_hash
    for module in (encoder_module, numpy_module):
        monkeypatch.setattr(
            module,
            "tokenizer_hash",
            lambda t: "different" if isinstance(t, LightTokenizer) else real_hash(t),
        )
    reopened = Index.open(index_dir)
    assert [h.chunk_id for h in reopened.search("the cat sat", k=3, hybrid=False)] == [
        h.chunk_id for h in expected
    ]
    assert not isinstance(reopened.encoder.model, LightLlama | NumpyLlama)
