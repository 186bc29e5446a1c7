"""``--compile`` (a compiled forward for training) and ``--lora-dropout``."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch
from test_trainer_run import run_cli
from test_trainer_supervised import SMALL, _adapter_tensors, _options, _salad_pairs, _write_pairs

from ragkit.errors import InvalidInputError
from ragkit.trainer import compiled as compiled_module
from ragkit.trainer.loop import train
from ragkit.trainer.recipe import RECIPES


@pytest.fixture
def pairs_files(tmp_path) -> list:
    return [_write_pairs(tmp_path / "pairs.jsonl", _salad_pairs(24, 0))]


def _rows(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


needs_compiler = pytest.mark.skipif(
    compiled_module.cpp_compiler() is None, reason="torch.compile on the CPU needs a C++ compiler"
)


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


@needs_compiler
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_compiled_training_follows_the_eager_run(tiny_causal_dir, pairs_files, tmp_path, chunk_size):
    """Same losses and weights as eager, also when chunks are recomputed through the compiled graph."""
    options = _options(tiny_causal_dir, tmp_path / "eager", pairs_files, precision="fp32")
    options = replace(options, recipe=options.recipe.with_overrides(lora_dropout=0.0))
    before = _graphs()
    train(options)
    assert _graphs() == before  # eager: nothing compiled
    train(replace(options, out=tmp_path / "compiled", compile=True, chunk_size=chunk_size))
    assert _graphs() > before  # the run's forward passes went through compiled graphs
    settings = json.loads((tmp_path / "compiled" / "training.json").read_text())
    assert settings["compile"] is True and settings["recipe"]["lora_dropout"] == 0.0
    card = (tmp_path / "compiled" / "README.md").read_text()
    assert "dropout 0.0" in card and "compiled with torch.compile" in card
    assert "torch.compile" not in (tmp_path / "eager" / "README.md").read_text()
    eager, fused = _rows(tmp_path / "eager"), _rows(tmp_path / "compiled")
    assert len(eager) == len(fused) == 6
    for a, b in zip(eager, fused, strict=True):
        assert abs(a["loss"] - b["loss"]) <= 1e-4 * abs(a["loss"]) + 1e-5, (a, b)
    first, second = _adapter_tensors(tmp_path / "eager"), _adapter_tensors(tmp_path / "compiled")
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        torch.testing.assert_close(second[name].float(), tensor.float(), atol=1e-3, rtol=0)  # fp16 files


@needs_compiler
def test_each_unsupervised_stage_runs_compiled_and_mntp_follows_eager(tiny_causal_dir, tiny_corpus, tmp_path):
    """MNTP runs the causal LM's decoder through the compiled wrapper; SimCSE's stage (a
    changed model, with dropout) compiles its own graphs."""
    from test_trainer_run import _options as corpus_options

    options = corpus_options(tiny_causal_dir, tiny_corpus, tmp_path / "eager", precision="fp32")
    options = replace(options, recipe=options.recipe.with_overrides(lora_dropout=0.0))
    train(options)
    seen: list[tuple[str, int]] = []
    hooked = replace(options, out=tmp_path / "compiled", compile=True)
    hooked.on_step = lambda stage, step, loss: seen.append((stage, _graphs()))
    before = _graphs()
    train(hooked)
    mntp = [graphs for stage, graphs in seen if stage == "mntp"]
    simcse = [graphs for stage, graphs in seen if stage == "simcse"]
    assert mntp[0] > before and simcse[0] > mntp[-1]  # each stage compiled graphs of its own
    eager, fused = _rows(tmp_path / "eager"), _rows(tmp_path / "compiled")
    for a, b in zip(eager, fused, strict=True):
        if a["stage"] == "mntp":  # no dropout: the same losses
            assert abs(a["loss"] - b["loss"]) <= 1e-4 * abs(a["loss"]) + 1e-5, (a, b)
        else:  # attention dropout draws differ between compiled and eager kernels
            assert b["loss"] == b["loss"] and b["loss"] > 0


def test_lora_dropout_is_a_recipe_setting(tiny_causal_dir, pairs_files, tmp_path, capsys):
    assert RECIPES["quick"].lora_dropout == 0.05
    assert RECIPES["quick"].with_overrides(lora_dropout=0.0).lora_dropout == 0.0
    for bad in (-0.1, 1.0):
        with pytest.raises(InvalidInputError, match="--lora-dropout"):
            RECIPES["quick"].with_overrides(lora_dropout=bad)
    out = tmp_path / "enc"
    args = ["train", "--backbone", str(tiny_causal_dir), "--stages", "supervised", "--out", str(out), *SMALL]
    for path in pairs_files:
        args += ["--pairs", str(path)]
    code, err = run_cli([*args, "--lora-dropout", "1.5"], capsys)
    assert code == 1 and "--lora-dropout" in err and not out.exists()
    code, err = run_cli([*args, "--lora-dropout", "0"], capsys)
    assert code == 0, err
    settings = json.loads((out / "training.json").read_text())
    assert settings["recipe"]["lora_dropout"] == 0.0 and settings["compile"] is False
    code, err = run_cli([*args, "--resume"], capsys)  # the recipe's 0.05 is another run
    assert code == 1 and "different recipe" in err and "lora_dropout 0.0 there, 0.05 now" in err


def test_compile_without_a_cpp_compiler_is_one_clear_error(
    tiny_causal_dir, pairs_files, tmp_path, capsys, monkeypatch
):
    import torch._inductor.cpp_builder as builder

    def no_compiler():
        raise RuntimeError("no working C++ compiler")

    with monkeypatch.context() as patched:
        patched.setattr(builder, "get_cpp_compiler", no_compiler)
        assert compiled_module.cpp_compiler() is None
    monkeypatch.setattr(compiled_module, "cpp_compiler", lambda: None)
    compiled_module.check_can_compile("cuda")  # GPU kernels need no C++ compiler
    with pytest.raises(InvalidInputError, match="C\\+\\+ compiler"):
        compiled_module.check_can_compile("cpu")
    out = tmp_path / "enc"
    args = ["train", "--backbone", str(tiny_causal_dir), "--stages", "supervised", "--out", str(out), *SMALL]
    for path in pairs_files:
        args += ["--pairs", str(path)]
    code, err = run_cli([*args, "--compile", "--device", "cpu"], capsys)
    assert code == 1 and "C++ compiler" in err and "without --compile" in err
    assert not out.exists()  # refused before the run folder was made


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_the_compiler_torch_would_use_is_found():
    assert compiled_module.cpp_compiler() is not None
