"""Encoder behaviour on tiny models: padding, ordering, saving, adapters, bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FAMILIES, make_encoder, make_model
from ragkit import Encoder
from ragkit.encoder.adapters import adapter_from_peft
from ragkit.errors import EncoderFormatError, InvalidInputError, ModelNotFoundError

TEXTS = [
    "the cat sat on the mat",
    "dog",
    "what is the answer to the question of the big red house by the river in the city",
    "music guitar",
    "stock market fell fast",
    "why is the tree green and the river blue",
]


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("family", FAMILIES)
def test_padding_invariance(family: str, padding_side: str) -> None:
    enc = make_encoder(family, padding_side=padding_side)
    batched = enc.encode(TEXTS, batch_size=len(TEXTS), max_tokens_per_batch=10_000)
    for i, text in enumerate(TEXTS):
        alone = enc.encode([text])[0]
        np.testing.assert_allclose(batched[i], alone, atol=1e-5, err_msg=f"{family} {text!r}")


def test_order_is_restored_after_length_sorting() -> None:
    enc = make_encoder()
    texts = TEXTS * 5
    ref = enc.encode(texts, batch_size=3, max_tokens_per_batch=40)
    perm = np.random.default_rng(3).permutation(len(texts))
    shuffled = enc.encode([texts[i] for i in perm], batch_size=4)
    np.testing.assert_allclose(shuffled, ref[perm], atol=1e-5)
    # rows really differ, so a wrong order could not pass by accident
    assert np.abs(ref[0] - ref[1]).max() > 1e-2


def test_output_contract() -> None:
    enc = make_encoder()
    vectors = enc.encode(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), enc.dimension)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    raw = enc.encode(TEXTS, normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    single = enc.encode("the cat sat on the mat")
    assert single.shape == (enc.dimension,)
    np.testing.assert_allclose(single, vectors[0], atol=1e-6)


def test_truncation_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    enc = make_encoder(max_length=6)
    with caplog.at_level(logging.WARNING, logger="ragkit"):
        enc.encode(["cat", "the cat sat on the mat in the big house", "dog sat"])
    assert enc.last_truncated == 1
    assert "1 of 3 texts were longer than max_length=6" in caplog.text
    enc.encode(["cat"])
    assert enc.last_truncated == 0


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda e: e.encode([]), InvalidInputError, "empty"),
        (lambda e: e.encode([""]), InvalidInputError, "empty"),
        (lambda e: e.encode(["ok", None]), InvalidInputError, "NoneType"),
        (lambda e: e.encode(["ok"], batch_size=0), InvalidInputError, "batch_size"),
    ],
)
def test_bad_input(call, error, message: str) -> None:
    with pytest.raises(error, match=message):
        call(make_encoder())


def test_unknown_names_and_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="unknown backbone 'no-such-model'"):
        Encoder.from_pretrained("no-such-model")
    with pytest.raises(ModelNotFoundError, match="neither a model folder"):
        Encoder.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="safetensors"):
        Encoder.from_pretrained(str(tmp_path))
    with pytest.raises(InvalidInputError, match="pooling"):
        Encoder.from_pretrained(str(tmp_path), pooling="max")


def test_hub_failure_is_one_line() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        Encoder.from_pretrained("example-org/definitely-not-cached-model")
    assert "Hugging Face Hub" in str(info.value) and "\n" not in str(info.value)


def test_load_from_folder_save_and_reload_round_trip(tiny_backbone_dir: Path, tmp_path: Path) -> None:
    enc = Encoder.from_pretrained(
        str(tiny_backbone_dir),
        pooling="weighted_mean",
        max_length=32,
        instructions={"query": "find relevant document"},
    )
    assert enc.backbone.source == "folder"
    saved = enc.save(tmp_path / "enc")
    config = json.loads((saved / "ragkit.json").read_text())
    assert config["pooling"] == "weighted_mean" and config["instructions"]["query"]
    assert not list(saved.rglob("*.bin")) and not list(saved.rglob("*.pt"))
    again = Encoder.from_pretrained(str(saved))
    assert again.fingerprint == enc.fingerprint
    np.testing.assert_array_equal(again.encode(TEXTS), enc.encode(TEXTS))
    np.testing.assert_array_equal(again.encode_queries(TEXTS), enc.encode_queries(TEXTS))
    # Overrides apply on top of a saved encoder and change the fingerprint.
    causal = Encoder.from_pretrained(str(saved), bidirectional=False)
    assert causal.fingerprint != enc.fingerprint


def test_fingerprint_tracks_everything_that_changes_vectors(tiny_backbone_dir: Path) -> None:
    base = Encoder.from_pretrained(str(tiny_backbone_dir))
    same = Encoder.from_pretrained(str(tiny_backbone_dir))
    assert base.fingerprint == same.fingerprint
    variants = [
        Encoder.from_pretrained(str(tiny_backbone_dir), pooling="last_token"),
        Encoder.from_pretrained(str(tiny_backbone_dir), bidirectional=False),
        Encoder.from_pretrained(str(tiny_backbone_dir), max_length=16),
        Encoder.from_pretrained(str(tiny_backbone_dir), instructions={"query": "find"}),
    ]
    assert len({base.fingerprint, *(v.fingerprint for v in variants)}) == 5
    # Different weights in the same folder: a different fingerprint.
    make_model("llama", seed=1).save_pretrained(tiny_backbone_dir, safe_serialization=True)
    assert Encoder.from_pretrained(str(tiny_backbone_dir)).fingerprint != base.fingerprint


def test_saved_encoder_refuses_changed_backbone(tiny_backbone_dir: Path, tmp_path: Path) -> None:
    saved = Encoder.from_pretrained(str(tiny_backbone_dir)).save(tmp_path / "enc")
    make_model("llama", seed=5).save_pretrained(tiny_backbone_dir, safe_serialization=True)
    with pytest.raises(EncoderFormatError, match="different weights"):
        Encoder.from_pretrained(str(saved))


def test_save_refuses_to_clobber_other_folders(tiny_backbone_dir: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(EncoderFormatError, match="refusing"):
        Encoder.from_pretrained(str(tiny_backbone_dir)).save(precious)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_lora_adapters_round_trip(tiny_backbone_dir: Path, tmp_path: Path) -> None:
    """A LoRA adapter saved as safetensors reloads and merges to the same vectors."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_pretrained(tiny_backbone_dir)
    peft_model = get_peft_model(
        lm,
        LoraConfig(
            r=4, lora_alpha=8, init_lora_weights=False, target_modules=["q_proj", "v_proj", "down_proj"]
        ),
    )
    adapter = adapter_from_peft("mntp", peft_model)
    assert all(k.startswith("layers.") for k in adapter.tensors)

    base = Encoder.from_pretrained(str(tiny_backbone_dir))
    merged = peft_model.merge_and_unload().model  # causal-LM wrapper -> bare backbone
    expected = Encoder.from_model(
        merged, base.tokenizer, base.config, backbone=base.backbone, adapters=[adapter]
    )
    saved = expected.save(tmp_path / "enc")
    assert (saved / "adapters" / "00-mntp" / "adapter_model.safetensors").is_file()
    loaded = Encoder.from_pretrained(str(saved))
    np.testing.assert_allclose(loaded.encode(TEXTS), expected.encode(TEXTS), atol=1e-6)
    assert loaded.fingerprint == expected.fingerprint != base.fingerprint
    assert np.abs(loaded.encode(TEXTS) - base.encode(TEXTS)).max() > 1e-3


def _encoder_with_adapter(backbone: Path, out: Path, seed: int) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    lm = AutoModelForCausalLM.from_pretrained(backbone)
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=["q_proj", "down_proj"])
    adapter = adapter_from_peft("mntp", get_peft_model(lm, config))
    base = Encoder.from_pretrained(str(backbone))
    return Encoder.from_model(
        base.model, base.tokenizer, base.config, backbone=base.backbone, adapters=[adapter]
    ).save(out)


def test_merged_weights_are_cached_and_reload_without_peft(
    tiny_backbone_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second load reads the merged safetensors: same vectors, no merge; damage is rebuilt."""
    import ragkit.encoder.merged as merged_cache

    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "home"))
    saved = _encoder_with_adapter(tiny_backbone_dir, tmp_path / "enc", seed=1)
    first = Encoder.from_pretrained(str(saved))
    folders = list((tmp_path / "home" / "merged").iterdir())
    assert len([f for f in folders if not f.name.startswith(".")]) == 1
    expected = first.encode(TEXTS)

    def no_merge(*args, **kwargs):
        raise AssertionError("merged again although the cache was complete")

    monkeypatch.setattr(merged_cache, "merge_adapters", no_merge)
    again = Encoder.from_pretrained(str(saved))
    np.testing.assert_array_equal(again.encode(TEXTS), expected)
    assert again.fingerprint == first.fingerprint

    # A truncated cache file is detected and rebuilt (which merges once more).
    monkeypatch.undo()
    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "home"))
    cached = merged_cache.merged_folder(first.backbone, first.adapters)
    weights = next(cached.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    rebuilt = Encoder.from_pretrained(str(saved))
    np.testing.assert_array_equal(rebuilt.encode(TEXTS), expected)

    # Other adapter weights, another folder: stale merged weights are never picked up.
    other = _encoder_with_adapter(tiny_backbone_dir, tmp_path / "enc2", seed=2)
    second = Encoder.from_pretrained(str(other))
    assert merged_cache.merged_folder(second.backbone, second.adapters) != cached
    assert np.abs(second.encode(TEXTS) - expected).max() > 1e-3


def test_unwritable_home_still_loads_the_encoder(
    tiny_backbone_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    import ragkit.encoder.merged as merged_cache

    saved = _encoder_with_adapter(tiny_backbone_dir, tmp_path / "enc", seed=1)
    expected = Encoder.from_pretrained(str(saved)).encode(TEXTS)

    def refuse(*args, **kwargs):
        raise OSError("read-only file system")

    monkeypatch.setattr(merged_cache, "read_manifest", lambda folder: None)
    monkeypatch.setattr(merged_cache, "ensure_built", refuse)
    loaded = Encoder.from_pretrained(str(saved))
    np.testing.assert_allclose(loaded.encode(TEXTS), expected, atol=1e-6)
    assert "merging in memory" in caplog.text


def test_adapter_weights_must_be_safetensors(tiny_backbone_dir: Path, tmp_path: Path) -> None:
    saved = Encoder.from_pretrained(str(tiny_backbone_dir)).save(tmp_path / "enc")
    config = json.loads((saved / "ragkit.json").read_text())
    config["adapters"] = ["00-evil"]
    (saved / "ragkit.json").write_text(json.dumps(config))
    (saved / "adapters" / "00-evil").mkdir(parents=True)
    (saved / "adapters" / "00-evil" / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(EncoderFormatError, match="only safetensors"):
        Encoder.from_pretrained(str(saved))


def test_corrupt_saved_config_is_a_clear_error(tiny_backbone_dir: Path, tmp_path: Path) -> None:
    saved = Encoder.from_pretrained(str(tiny_backbone_dir)).save(tmp_path / "enc")
    (saved / "ragkit.json").write_text("{not json")
    with pytest.raises(EncoderFormatError, match="cannot read"):
        Encoder.from_pretrained(str(saved))


def test_hub_id_downloads_safetensors_only(monkeypatch: pytest.MonkeyPatch, tiny_backbone_dir: Path) -> None:
    """The hub path (for real users) goes through snapshot_download with safe patterns."""
    import huggingface_hub

    calls = []

    def fake_snapshot_download(repo_id: str, allow_patterns: list[str]) -> str:
        calls.append((repo_id, allow_patterns))
        return str(tiny_backbone_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    enc = Encoder.from_pretrained("some-org/tiny-llama")
    assert enc.backbone.source == "hub" and enc.config.backbone == "some-org/tiny-llama"
    assert calls[0][0] == "some-org/tiny-llama"
    patterns = calls[0][1]
    assert "*.safetensors" in patterns and not any(p.endswith((".bin", ".pt", ".pth")) for p in patterns)
    # same weights, same fingerprint, whether named by hub id or by folder
    assert enc.fingerprint == Encoder.from_pretrained(str(tiny_backbone_dir)).fingerprint


def test_bad_device_and_dtype_fail_before_loading() -> None:
    with pytest.raises(InvalidInputError, match="dtype"):
        Encoder.from_pretrained("no-such-model", dtype="int4")
    with pytest.raises(InvalidInputError, match="device"):
        Encoder.from_pretrained("no-such-model", device="tpu:7")


def test_encode_pooled_matches_separate_encodes(tiny_backbone_dir: Path) -> None:
    enc = Encoder.from_pretrained(str(tiny_backbone_dir), bidirectional=False)
    pooled = enc.encode_pooled(TEXTS, ["mean", "last_token", "weighted_mean"], instruction="find")
    for mode, vectors in pooled.items():
        alone = Encoder.from_pretrained(str(tiny_backbone_dir), bidirectional=False, pooling=mode)
        np.testing.assert_allclose(vectors, alone.encode(TEXTS, instruction="find"), atol=1e-6)
        # a pooling view of the loaded model is the same encoder as loading it with that pooling
        assert enc.with_pooling(mode).fingerprint == alone.fingerprint
    assert enc.with_pooling("mean").model is enc.model
