"""LoRA soups: the stacked-rank adapter merges to the mean of the runs' merged weights."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from conftest import load_bench_script, make_lora, make_model
from ragkit.encoder.adapters import load_adapter, merge_adapters
from ragkit.encoder.soup import average_adapters
from ragkit.errors import EncoderFormatError

WEIGHT = "layers.0.self_attn.q_proj.weight"


def _merged(adapter) -> dict:
    return merge_adapters(make_model(), [copy.deepcopy(adapter)]).state_dict()


def test_soup_merges_to_the_mean_of_the_runs_weights():
    import torch

    runs = [make_lora(seed) for seed in (1, 2, 3)]
    soup = average_adapters(runs, "soup")
    base = make_model().state_dict()
    mean = {k: sum(_merged(run)[k] for run in runs) / 3 for k in base}
    merged = _merged(soup)
    assert soup.config["r"] == 12 and soup.config["lora_alpha"] == 24
    for key in (WEIGHT, "layers.1.mlp.down_proj.weight"):
        assert torch.allclose(merged[key], mean[key], atol=1e-5)
        # The mean is not any single run's weights, nor the base's.
        assert not torch.allclose(merged[key], _merged(runs[0])[key], atol=1e-3)
        assert not torch.allclose(merged[key], base[key], atol=1e-3)


def test_soup_is_saved_and_read_back_as_an_ordinary_adapter(tmp_path):
    import torch

    soup = average_adapters([make_lora(1), make_lora(2)], "soup")
    soup.save(tmp_path / "soup")
    again = load_adapter(tmp_path / "soup")
    assert again.config["r"] == 8
    assert torch.allclose(_merged(again)[WEIGHT], _merged(soup)[WEIGHT])


@pytest.mark.parametrize(
    "other, message",
    [
        (lambda: make_lora(2, r=8), "differ in r"),
        (lambda: make_lora(2, targets=("q_proj",)), "adapt different weights"),
    ],
)
def test_runs_that_cannot_be_averaged_are_refused(other, message):
    with pytest.raises(EncoderFormatError, match=message):
        average_adapters([make_lora(1), other()], "soup")


@pytest.mark.parametrize(
    "setting, value",
    [
        ("use_rslora", True),
        ("use_dora", True),
        ("rank_pattern", {"q_proj": 8}),
        ("init_lora_weights", "pissa"),
        ("bias", "all"),
        ("modules_to_save", ["embed_tokens"]),
    ],
)
def test_lora_variants_that_are_not_a_plain_product_are_refused(setting, value):
    runs = [make_lora(1), make_lora(2)]
    runs[1].config = {**runs[1].config, setting: value}
    with pytest.raises(EncoderFormatError, match="only plain LoRAs"):
        average_adapters(runs, "soup")


def test_one_adapter_is_not_a_soup():
    with pytest.raises(EncoderFormatError, match="at least two"):
        average_adapters([make_lora(1)], "soup")


def _run_folder(root: Path, shared, last) -> Path:
    root.mkdir()
    (root / "ragkit.json").write_text(json.dumps({"format": "ragkit-encoder", "adapters": ["00-a", "01-b"]}))
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "tokenizer.json").write_text("{}")
    shared.save(root / "adapters" / "00-a")
    last.save(root / "adapters" / "01-b")
    seed = int(root.name[1:])
    run = {"format": "ragkit-training", "base": {"encoder": "default"}, "recipe": {"quick": 1}, "seed": seed}
    (root / "training.json").write_text(json.dumps(run))
    stats = {"steps": 3, "final_loss": float(seed), "seconds": 60.0, "tokens_per_s": 100.0}
    (root / "stages.json").write_text(json.dumps({"supervised": stats}))
    rows = [{"stage": "supervised", "step": step, "loss": 1.0 / step} for step in (1, 2, 3)]
    (root / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root


def test_script_writes_an_encoder_folder_with_the_shared_adapters_and_the_soup(tmp_path):
    import torch

    shared = make_lora(0)
    runs = [_run_folder(tmp_path / f"r{i}", shared, make_lora(i)) for i in (1, 2)]
    record = load_bench_script("lora_soup").write_soup(runs, tmp_path / "soup")
    out = tmp_path / "soup"
    assert json.loads((out / "ragkit.json").read_text())["adapters"] == ["00-a", "01-b"]
    assert len(record["sources"]) == 2 and record["adapter"] == "01-b"
    kept = load_adapter(out / "adapters" / "00-a")
    assert all(torch.equal(kept.tensors[key], value) for key, value in shared.tensors.items())
    assert load_adapter(out / "adapters" / "01-b").config["r"] == 8
    training = json.loads((out / "training.json").read_text())
    assert training["base"] == {"encoder": "default"}
    assert [run["seed"] for run in training["soup"]["runs"]] == [1, 2]
    stages = json.loads((out / "stages.json").read_text())["supervised"]
    assert stages["averaged_runs"] == 2 and stages["seconds"] == 120.0
    assert stages["steps"] == 3
    assert stages["mean_run_final_loss"] == 1.5 and stages["final_loss"] is None
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 6 and metrics[3]["stage"] == "supervised, run 2 (seed 2)"
    assert (out / "loss.png").stat().st_size > 0


def test_script_refuses_runs_from_different_encoders_and_keeps_out_untouched(tmp_path):
    runs = [
        _run_folder(tmp_path / "r1", make_lora(0), make_lora(1)),
        _run_folder(tmp_path / "r2", make_lora(5), make_lora(2)),
    ]
    with pytest.raises(SystemExit, match="did not start from one encoder"):
        load_bench_script("lora_soup").write_soup(runs, tmp_path / "soup")
    assert not (tmp_path / "soup").exists()


def test_script_records_each_runs_length_when_they_differ(tmp_path):
    shared = make_lora(0)
    runs = [_run_folder(tmp_path / f"r{i}", shared, make_lora(i)) for i in (1, 2)]
    stats = json.loads((runs[1] / "stages.json").read_text())
    (runs[1] / "stages.json").write_text(json.dumps({"supervised": {**stats["supervised"], "steps": 5}}))
    load_bench_script("lora_soup").write_soup(runs, tmp_path / "soup")
    stages = json.loads((tmp_path / "soup" / "stages.json").read_text())["supervised"]
    assert stages["steps"] == [3, 5]


def test_script_that_fails_midway_leaves_no_folder_and_no_leftovers(tmp_path):
    shared = make_lora(0)
    runs = [_run_folder(tmp_path / f"r{i}", shared, make_lora(i)) for i in (1, 2)]
    (runs[0] / "tokenizer" / "tokenizer.json").unlink()
    (runs[0] / "tokenizer").rmdir()  # the copy fails after the soup is computed
    with pytest.raises(OSError):
        load_bench_script("lora_soup").write_soup(runs, tmp_path / "soup")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r1", "r2"]


def test_script_refuses_a_folder_that_holds_files_and_keeps_them(tmp_path):
    shared = make_lora(0)
    runs = [_run_folder(tmp_path / f"r{i}", shared, make_lora(i)) for i in (1, 2)]
    (tmp_path / "soup").mkdir()
    (tmp_path / "soup" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="exists and is not an empty folder"):
        load_bench_script("lora_soup").write_soup(runs, tmp_path / "soup")
    assert (tmp_path / "soup" / "notes.txt").read_text() == "mine"
    (tmp_path / "soup" / "notes.txt").unlink()  # an empty folder is filled
    load_bench_script("lora_soup").write_soup(runs, tmp_path / "soup")
    assert (tmp_path / "soup" / "adapters" / "01-b").is_dir()
