"""Cutting a LoRA's rank: exact at its own rank, the best approximation below it."""

from __future__ import annotations

import copy

import pytest

from conftest import make_model
from ragkit.encoder.adapter_rank import cut_rank
from ragkit.encoder.adapters import adapter_from_peft, merge_adapters
from ragkit.encoder.soup import average_adapters
from ragkit.errors import EncoderFormatError

WEIGHT = "layers.0.self_attn.q_proj.weight"


def _adapter(seed: int, r: int = 4):
    import torch
    from peft import LoraConfig, get_peft_model

    model = make_model()  # seeds itself: the LoRA's own seed comes after
    torch.manual_seed(seed)
    targets = ["q_proj", "down_proj"]
    config = LoraConfig(r=r, lora_alpha=2 * r, init_lora_weights=False, target_modules=targets)
    return adapter_from_peft(f"run{seed}", get_peft_model(model, config))


def _change(adapter, key: str = WEIGHT):
    base = make_model().state_dict()[key]
    return merge_adapters(make_model(), [copy.deepcopy(adapter)]).state_dict()[key] - base


def test_a_cut_at_the_true_rank_of_a_soup_keeps_its_weight_change():
    import torch

    runs = [_adapter(1), _adapter(1)]  # equal runs: the rank-8 soup has rank 4
    soup = average_adapters(runs, "soup")
    cut = cut_rank(soup, 4)
    assert cut.adapter.config["r"] == 4 and cut.adapter.config["lora_alpha"] == 8
    assert torch.allclose(_change(cut.adapter), _change(soup), atol=1e-5)
    assert min(cut.kept_energy.values()) > 0.999999
    assert {t.dtype for t in cut.adapter.tensors.values()} == {t.dtype for t in soup.tensors.values()}


def test_a_lower_cut_is_the_best_approximation_of_that_rank():
    import torch

    soup = average_adapters([_adapter(1), _adapter(2), _adapter(3)], "soup")
    full = _change(soup).double()
    cut = cut_rank(soup, 5)
    left, values, right = torch.linalg.svd(full)
    best = (left[:, :5] * values[:5]) @ right[:5]
    assert torch.allclose(_change(cut.adapter).double(), best, atol=1e-5)
    module = next(name for name in cut.kept_energy if "layers.0.self_attn.q_proj" in name)
    expected = float((values[:5] ** 2).sum() / (values**2).sum())
    assert cut.kept_energy[module] == pytest.approx(expected, rel=1e-4)
    assert 0.0 < expected < 0.9999  # three random runs: the cut loses something


@pytest.mark.parametrize("rank", [0, 5])
def test_a_rank_outside_one_to_the_adapters_own_is_refused(rank):
    with pytest.raises(EncoderFormatError, match="between 1 and the adapter's rank 4"):
        cut_rank(_adapter(1), rank)


def test_rank_scaled_variants_are_refused():
    adapter = _adapter(1)
    adapter.config["use_rslora"] = True
    with pytest.raises(EncoderFormatError, match="cannot be cut"):
        cut_rank(adapter, 2)


def _bench(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _encoder(root, shared, last):
    import json

    root.mkdir()
    (root / "ragkit.json").write_text(json.dumps({"format": "ragkit-encoder", "adapters": ["00-a", "01-b"]}))
    (root / "training.json").write_text(json.dumps({"format": "ragkit-training", "seed": 1}))
    (root / "README.md").write_text("card of the original")
    (root / "evaluation.json").write_text("{}")
    shared.save(root / "adapters" / "00-a")
    last.save(root / "adapters" / "01-b")
    return root


def test_cut_script_copies_the_encoder_with_the_last_adapter_cut(tmp_path):
    import json

    import torch

    from ragkit.encoder.adapters import load_adapter

    shared, soup = _adapter(0), average_adapters([_adapter(1), _adapter(2)], "01-b")
    encoder = _encoder(tmp_path / "enc", shared, soup)
    record = _bench("cut_adapter_rank").write_cut(encoder, tmp_path / "cut", 3)
    out = tmp_path / "cut"
    assert load_adapter(out / "adapters" / "01-b").config["r"] == 3
    kept = load_adapter(out / "adapters" / "00-a")
    assert all(torch.equal(kept.tensors[key], value) for key, value in shared.tensors.items())
    training = json.loads((out / "training.json").read_text())
    assert training["seed"] == 1 and training["rank_cut"] == record
    assert record["from_rank"] == 8 and 0 < record["kept_energy_min"] <= record["kept_energy_median"] < 1
    assert not (out / "README.md").exists() and not (out / "evaluation.json").exists()
    assert (encoder / "README.md").exists() and load_adapter(encoder / "adapters" / "01-b").config["r"] == 8


@pytest.mark.parametrize(
    "rank, adapter, message",
    [(9, None, "between 1 and the adapter's rank 8"), (2, "02-c", "no adapter '02-c'")],
)
def test_cut_script_refuses_and_writes_nothing(tmp_path, rank, adapter, message):
    soup = average_adapters([_adapter(1), _adapter(2)], "01-b")
    encoder = _encoder(tmp_path / "enc", _adapter(0), soup)
    with pytest.raises(SystemExit, match=message):
        _bench("cut_adapter_rank").write_cut(encoder, tmp_path / "cut", rank, adapter)
    assert not (tmp_path / "cut").exists()


def test_soup_script_can_cut_the_averaged_adapter(tmp_path):
    import json

    from ragkit.encoder.adapters import load_adapter

    shared = _adapter(0)
    runs = []
    for seed in (1, 2):
        root = _encoder(tmp_path / f"r{seed}", shared, _adapter(seed))
        (root / "tokenizer").mkdir()
        (root / "tokenizer" / "tokenizer.json").write_text("{}")
        runs.append(root)
    record = _bench("lora_soup").write_soup(runs, tmp_path / "soup", rank=5)
    assert load_adapter(tmp_path / "soup" / "adapters" / "01-b").config["r"] == 5
    assert record["rank_cut"]["rank"] == 5 and record["rank_cut"]["kept_energy_min"] < 1
    training = json.loads((tmp_path / "soup" / "training.json").read_text())
    assert training["soup"]["rank_cut"] == record["rank_cut"]
