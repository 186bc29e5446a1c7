"""bf16 training: precision choice, autocast fidelity, fp32 weights, resume rules."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from test_trainer_run import _options, run_cli

from ragkit.errors import InvalidInputError
from ragkit.hardware import cpu_bf16_features
from ragkit.trainer.loop import train
from ragkit.trainer.precision import resolve_precision


def test_cpu_features_come_from_the_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile\n")
    assert cpu_bf16_features(cpuinfo, ask_torch=False) == ["avx512_bf16"]
    cpuinfo.write_text("flags\t\t: fpu sse avx2 fma\n")
    assert cpu_bf16_features(cpuinfo, ask_torch=False) == []
    assert cpu_bf16_features(tmp_path / "missing", ask_torch=False) == []


def test_auto_follows_the_hardware_and_explicit_choices_stand():
    assert resolve_precision("auto", "cpu", ["amx_bf16"]).name == "bf16"
    assert resolve_precision("auto", "cpu", ["avx512_bf16"]).name == "bf16"
    plain = resolve_precision("auto", "cpu", [])
    assert plain.name == "fp32" and "no native bf16" in plain.reason
    assert resolve_precision("bf16", "cpu", []).name == "bf16"
    assert resolve_precision("fp32", "cpu", ["amx_bf16"]).name == "fp32"
    assert resolve_precision("auto", "cuda").name == "bf16"
    assert resolve_precision("fp32", "cuda").name == "fp32"
    with pytest.raises(InvalidInputError, match="--precision"):
        resolve_precision("fp16", "cpu")


def test_autocast_is_bf16_only_when_asked():
    bf16, fp32 = resolve_precision("bf16", "cpu"), resolve_precision("fp32", "cpu")
    a = torch.randn(4, 8)
    with bf16.autocast():
        assert (a @ a.T).dtype == torch.bfloat16
    with fp32.autocast():
        assert (a @ a.T).dtype == torch.float32


def _losses(out) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_bf16_training_tracks_fp32_and_keeps_fp32_weights(tiny_causal_dir, tiny_corpus, tmp_path):
    runs = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        train(_options(tiny_causal_dir, tiny_corpus, out, precision=precision, adapter_dtype="float32"))
        runs[precision] = out
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert {row["precision"] for row in rows} == {precision}
        assert json.loads((out / "training.json").read_text())["precision"] == precision
        assert f"precision {precision}" in (out / "README.md").read_text()
    fp32, bf16 = _losses(runs["fp32"]), _losses(runs["bf16"])
    assert len(fp32) == len(bf16) == 12
    # bf16 keeps 8 bits of mantissa: each step's loss within 2 % of the fp32 run's.
    for a, b in zip(fp32, bf16, strict=True):
        assert abs(a - b) <= 0.02 * abs(a) + 1e-3, (a, b)
    assert fp32 != bf16  # the autocast really ran in bf16
    for precision in ("fp32", "bf16"):
        for folder in (runs[precision] / "adapters").iterdir():
            tensors = load_file(folder / "adapter_model.safetensors")
            assert {t.dtype for t in tensors.values()} == {torch.float32}


def test_checkpointed_lora_and_optimizer_state_stay_fp32(tiny_causal_dir, tiny_corpus, tmp_path):
    from ragkit.trainer.checkpoint import list_checkpoints, load_checkpoint

    out = tmp_path / "run"
    options = _options(tiny_causal_dir, tiny_corpus, out, precision="bf16")
    options.stages = ["mntp"]
    calls = []

    def stop_after_checkpoint(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    import ragkit.trainer.loop as loop

    original = loop._checkpoint

    def checkpoint_then_stop(*args, **kwargs):
        original(*args, **kwargs)
        stop_after_checkpoint()

    loop._checkpoint = checkpoint_then_stop
    try:
        with pytest.raises(KeyboardInterrupt):
            train(options)
    finally:
        loop._checkpoint = original
    checkpoint = load_checkpoint(list_checkpoints(out / "checkpoints")[-1])
    assert {t.dtype for t in checkpoint.weights.values()} == {torch.float32}
    moments = [t for state in checkpoint.optimizer_state["state"].values() for t in state.values()]
    assert moments and {t.dtype for t in moments if t.numel() > 1} == {torch.float32}


def test_resume_with_another_precision_is_refused(tiny_causal_dir, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    train(_options(tiny_causal_dir, tiny_corpus, out, precision="bf16"))
    args = ["train", "--backbone", str(tiny_causal_dir), "--corpus", str(tiny_corpus), "--out", str(out)]
    small = ["--steps", "6", "--batch-size", "4", "--max-length", "24", "--checkpoint-every", "2"]
    code, err = run_cli([*args, *small, "--resume", "--precision", "fp32"], capsys)
    assert code == 1
    assert "trained in bf16" in err and "--precision bf16" in err
    code, err = run_cli([*args, *small, "--precision", "fp16"], capsys)
    assert code == 1 and "--precision must be one of" in err
