"""Cutting a LoRA's rank: exact at its own rank, the best approximation below it."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from conftest import load_bench_script, make_lora, make_model
from ragkit.encoder.adapter_rank import cut_rank
from ragkit.encoder.adapters import load_adapter, merge_adapters
from ragkit.encoder.soup import average_adapters
from ragkit.errors import EncoderFormatError

WEIGHT = "layers.0.self_attn.q_proj.weight"


def _change(adapter, key: str = WEIGHT):
    base = make_model().state_dict()[key]
    return merge_adapters(make_model(), [copy.deepcopy(adapter)]).state_dict()[key] - base


def test_a_cut_at_the_true_rank_of_a_soup_keeps_its_weight_change():
    import torch

    runs = [make_lora(1), make_lora(1)]  # equal runs: the rank-8 soup has rank 4
    soup = average_adapters(runs, "soup")
    cut = cut_rank(soup, 4)
    assert cut.adapter.config["r"] == 4 and cut.adapter.config["lora_alpha"] == 8
    assert torch.allclose(_change(cut.adapter), _change(soup), atol=1e-5)
    assert min(cut.kept_energy.values()) > 0.999999
    assert {t.dtype for t in cut.adapter.tensors.values()} == {t.dtype for t in soup.tensors.values()}


def test_a_lower_cut_is_the_best_approximation_of_that_rank():
    import torch

    soup = average_adapters([make_lora(1), make_lora(2), make_lora(3)], "soup")
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
        cut_rank(make_lora(1), rank)


@pytest.mark.parametrize(
    "setting, value", [("use_rslora", True), ("use_dora", True), ("alpha_pattern", {"q_proj": 3})]
)
def test_variants_that_are_not_a_plain_product_are_refused(setting, value):
    adapter = make_lora(1)
    adapter.config = {**adapter.config, setting: value}
    with pytest.raises(EncoderFormatError, match="only plain LoRAs can be cut"):
        cut_rank(adapter, 2)


def test_extra_or_half_weights_are_refused_rather_than_dropped():
    adapter = make_lora(1)
    magnitude = {**adapter.tensors, "layers.0.self_attn.q_proj.lora_magnitude_vector": 1}
    with pytest.raises(EncoderFormatError, match="not LoRA A/B"):
        cut_rank(dataclasses.replace(adapter, tensors=magnitude), 2)
    lone = {k: v for k, v in adapter.tensors.items() if not k.endswith("q_proj.lora_A.weight")}
    with pytest.raises(EncoderFormatError, match=r"lacks the A or B half of .*q_proj"):
        cut_rank(dataclasses.replace(adapter, tensors=lone), 2)


def test_a_non_integer_scale_and_half_precision_are_kept():
    import torch

    adapter = make_lora(1)
    adapter = dataclasses.replace(
        adapter,
        config={**adapter.config, "lora_alpha": 5},
        tensors={k: v.to(torch.float16) for k, v in adapter.tensors.items()},
    )
    cut = cut_rank(adapter, 3)
    assert cut.adapter.config["lora_alpha"] == 3.75  # alpha / r stays 5 / 4
    assert {t.dtype for t in cut.adapter.tensors.values()} == {torch.float16}
    full = _change(adapter).double()
    left, values, right = torch.linalg.svd(full)
    best = (left[:, :3] * values[:3]) @ right[:3]
    assert torch.allclose(_change(cut.adapter).double(), best, atol=2e-3)


def test_a_zero_change_cuts_to_zero_and_keeps_all_of_nothing():
    import torch

    adapter = make_lora(1)
    zero = {k: torch.zeros_like(v) if k.endswith("lora_B.weight") else v for k, v in adapter.tensors.items()}
    cut = cut_rank(dataclasses.replace(adapter, tensors=zero), 2)
    assert set(cut.kept_energy.values()) == {1.0}
    assert all(
        float(t.abs().sum()) == 0 for k, t in cut.adapter.tensors.items() if k.endswith("lora_B.weight")
    )


def _encoder(root, shared, last):
    import json

    root.mkdir()
    config = {"format": "ragkit-encoder", "format_version": 1, "backbone": "tiny", "backbone_identity": "x"}
    config |= {"adapters": ["00-a", "01-b"], "fusion": {"method": "convex", "dense_weight": 0.4}}
    (root / "ragkit.json").write_text(json.dumps(config))
    (root / "training.json").write_text(json.dumps({"format": "ragkit-training", "seed": 1}))
    (root / "README.md").write_text("card of the original")
    (root / "evaluation.json").write_text("{}")
    shared.save(root / "adapters" / "00-a")
    last.save(root / "adapters" / "01-b")
    return root


def test_cut_script_copies_the_encoder_with_the_last_adapter_cut(tmp_path):
    import json

    import torch

    shared, soup = make_lora(0), average_adapters([make_lora(1), make_lora(2)], "01-b")
    encoder = _encoder(tmp_path / "enc", shared, soup)
    record = load_bench_script("cut_adapter_rank").write_cut(encoder, tmp_path / "cut", 3)
    out = tmp_path / "cut"
    assert load_adapter(out / "adapters" / "01-b").config["r"] == 3
    kept = load_adapter(out / "adapters" / "00-a")
    assert all(torch.equal(kept.tensors[key], value) for key, value in shared.tensors.items())
    training = json.loads((out / "training.json").read_text())
    assert training["seed"] == 1 and training["rank_cut"] == record
    assert record["from_rank"] == 8 and 0 < record["kept_energy_min"] <= record["kept_energy_median"] < 1
    assert not (out / "README.md").exists() and not (out / "evaluation.json").exists()
    settings = json.loads((out / "ragkit.json").read_text())
    assert settings["fusion"] is None and settings["adapters"] == ["00-a", "01-b"]
    assert (encoder / "README.md").exists() and load_adapter(encoder / "adapters" / "01-b").config["r"] == 8


def test_cut_script_keeps_the_fusion_settings_when_asked(tmp_path):
    import json

    soup = average_adapters([make_lora(1), make_lora(2)], "01-b")
    encoder = _encoder(tmp_path / "enc", make_lora(0), soup)
    load_bench_script("cut_adapter_rank").write_cut(encoder, tmp_path / "cut", 3, keep_fusion=True)
    settings = json.loads((tmp_path / "cut" / "ragkit.json").read_text())
    assert settings["fusion"]["method"] == "convex" and settings["fusion"]["dense_weight"] == 0.4
    assert not (tmp_path / "cut" / "README.md").exists()


@pytest.mark.parametrize("rank", [0, 9])
def test_cut_script_refuses_and_writes_nothing(tmp_path, rank):
    soup = average_adapters([make_lora(1), make_lora(2)], "01-b")
    encoder = _encoder(tmp_path / "enc", make_lora(0), soup)
    with pytest.raises(SystemExit, match="between 1 and the adapter's rank 8"):
        load_bench_script("cut_adapter_rank").write_cut(encoder, tmp_path / "cut", rank)
    assert not (tmp_path / "cut").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc"]  # no temporary folder left


def test_soup_script_can_cut_the_averagedmake_lora(tmp_path):
    import json

    shared = make_lora(0)
    runs = []
    for seed in (1, 2):
        root = _encoder(tmp_path / f"r{seed}", shared, make_lora(seed))
        (root / "tokenizer").mkdir()
        (root / "tokenizer" / "tokenizer.json").write_text("{}")
        runs.append(root)
    with pytest.raises(SystemExit, match="between 1 and the adapter's rank 8"):
        load_bench_script("lora_soup").write_soup(runs, tmp_path / "soup", rank=0)
    assert not (tmp_path / "soup").exists()
    record = load_bench_script("lora_soup").write_soup(runs, tmp_path / "soup", rank=5)
    assert load_adapter(tmp_path / "soup" / "adapters" / "01-b").config["r"] == 5
    assert record["rank_cut"]["rank"] == 5 and record["rank_cut"]["kept_energy_min"] < 1
    training = json.loads((tmp_path / "soup" / "training.json").read_text())
    assert training["soup"]["rank_cut"] == record["rank_cut"]
