"""Layer pruning: the kept layers compute what they did, in every load path and in training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_encoder import TEXTS, _encoder_with_adapter
from test_trainer_run import _options, run_cli

from conftest import make_model
from ragkit.encoder import Encoder
from ragkit.encoder.light import LightLlama
from ragkit.encoder.pruning import keep_bottom_layers, layer_count
from ragkit.errors import InvalidInputError
from ragkit.trainer.loop import train


@pytest.mark.parametrize("family", ["llama", "gemma3_text"])
def test_a_pruned_model_outputs_the_normed_hidden_state_of_its_last_kept_layer(family: str):
    full = make_model(family)
    ids = torch.tensor([[1, 5, 9, 12, 7, 3]])
    with torch.no_grad():
        hidden = full(input_ids=ids, output_hidden_states=True).hidden_states[1]
        expected = full.norm(hidden)
        pruned = keep_bottom_layers(make_model(family), 1)
        got = pruned(input_ids=ids).last_hidden_state
    assert layer_count(pruned) == 1 and pruned.config.num_hidden_layers == 1
    if family == "gemma3_text":
        assert pruned.config.layer_types == ["sliding_attention"]
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, full(input_ids=ids).last_hidden_state)  # layer 2 did matter


@pytest.mark.parametrize("layers", [0, 3, True, 1.5])
def test_a_layer_count_outside_the_model_is_refused(layers):
    with pytest.raises(InvalidInputError, match="from 1 to 2"):
        keep_bottom_layers(make_model(), layers)


def test_encoder_layers_change_the_fingerprint_only_when_set(tiny_backbone_dir: Path):
    full = Encoder.from_pretrained(str(tiny_backbone_dir))
    same = Encoder.from_pretrained(str(tiny_backbone_dir), layers=2)
    pruned = Encoder.from_pretrained(str(tiny_backbone_dir), layers=1)
    assert full.describe()["layers"] == 2 and pruned.describe()["layers"] == 1
    assert len({full.fingerprint, same.fingerprint, pruned.fingerprint}) == 3
    assert not np.allclose(full.encode(TEXTS), pruned.encode(TEXTS), atol=1e-3)
    with pytest.raises(InvalidInputError, match="from 1 to 2"):
        Encoder.from_pretrained(str(tiny_backbone_dir), layers=3)


def test_saved_pruned_encoder_loads_pruned_through_the_cache_and_the_light_path(
    tiny_backbone_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "home"))
    saved = _encoder_with_adapter(tiny_backbone_dir, tmp_path / "enc", seed=2)
    uncached = Encoder.from_pretrained(str(saved), layers=1)  # merges, prunes, caches
    Encoder.from_pretrained(str(saved), layers=1).save(tmp_path / "pruned")
    assert json.loads((tmp_path / "pruned" / "ragkit.json").read_text())["layers"] == 1
    cached = Encoder.from_pretrained(str(tmp_path / "pruned"))
    light = Encoder.from_pretrained(str(tmp_path / "pruned"), backend="light")
    assert isinstance(light.model, LightLlama) and len(light.model.layers) == 1
    assert uncached.fingerprint == cached.fingerprint == light.fingerprint
    np.testing.assert_allclose(cached.encode(TEXTS), uncached.encode(TEXTS), atol=1e-5)
    np.testing.assert_allclose(light.encode(TEXTS), uncached.encode(TEXTS), atol=1e-5)
    with pytest.raises(InvalidInputError, match="from 1 to 1"):  # never more than it was trained with
        Encoder.from_pretrained(str(tmp_path / "pruned"), layers=2)
    engine = Encoder.from_pretrained(str(tmp_path / "pruned"), backend="auto")
    assert engine.describe()["layers"] == 1 and engine.fingerprint == cached.fingerprint
    np.testing.assert_allclose(engine.encode(TEXTS), uncached.encode(TEXTS), atol=1e-4)
    unpruned = Encoder.from_pretrained(str(saved))
    assert unpruned.fingerprint != cached.fingerprint and unpruned.describe()["layers"] == 2


def test_training_pruned_puts_lora_on_kept_layers_and_records_the_count(
    tiny_causal_dir: Path, tiny_corpus: Path, tmp_path: Path, capsys
):
    out = tmp_path / "enc"
    train(_options(tiny_causal_dir, tiny_corpus, out, stages=["mntp"], layers=1))
    keys = load_file(out / "adapters" / "00-mntp" / "adapter_model.safetensors").keys()
    assert keys and all(k.startswith("base_model.model.layers.0.") for k in keys)
    assert json.loads((out / "ragkit.json").read_text())["layers"] == 1
    assert "pruned to its bottom 1 layers" in (out / "README.md").read_text()
    assert json.loads((out / "training.json").read_text())["model_layers"] == 1
    encoder = Encoder.from_pretrained(str(out))
    assert encoder.describe()["layers"] == 1
    # A stage on top keeps the pruning; asking for more layers than the start has is refused.
    more = tmp_path / "more"
    args = ["--stages", "simcse", "--layers", "2", "--steps", "2", "--batch-size", "4", "--out", str(more)]
    code, err = run_cli(["train", "--backbone", str(out), "--corpus", str(tiny_corpus), *args], capsys)
    assert code != 0 and "from 1 to 1" in err and not more.exists()
    train(_options(out, tiny_corpus, more, stages=["simcse"]))
    assert Encoder.from_pretrained(str(more)).describe()["layers"] == 1
    assert json.loads((more / "training.json").read_text())["model_layers"] == 1
