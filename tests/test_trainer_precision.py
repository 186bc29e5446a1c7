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


def test_frozen_linear_weights_are_held_in_bf16_and_restored_exactly():
    from peft import LoraConfig, get_peft_model

    from conftest import make_model

    model = get_peft_model(make_model(), LoraConfig(r=2, target_modules=["q_proj"])).base_model.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    bf16 = resolve_precision("bf16", "cpu")
    with bf16.frozen_weights(model):
        dtypes = {n: p.dtype for n, p in model.named_parameters()}
        assert dtypes["layers.0.mlp.down_proj.weight"] == torch.bfloat16
        assert dtypes["layers.0.self_attn.q_proj.base_layer.weight"] == torch.bfloat16
        trained = [n for n, p in model.named_parameters() if p.requires_grad]
        assert trained and all(dtypes[n] == torch.float32 for n in trained)  # the LoRA
        assert dtypes["embed_tokens.weight"] == dtypes["norm.weight"] == torch.float32
        held = model.get_parameter("layers.0.mlp.down_proj.weight")
        assert torch.equal(held.float(), before["layers.0.mlp.down_proj.weight"].to(torch.bfloat16).float())
    for name, param in model.named_parameters():
        assert param.dtype == torch.float32 and torch.equal(param, before[name]), name
    with resolve_precision("fp32", "cpu").frozen_weights(model):
        assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_bf16_training_with_frozen_weights_in_bf16_reaches_the_same_weights(
    tiny_causal_dir, tiny_corpus, tmp_path, monkeypatch
):
    """Autocast would have cast the frozen weights to the same bf16 values on every call."""
    import contextlib

    from ragkit.trainer.precision import Precision

    held = tmp_path / "held"
    seen = []
    original = Precision.frozen_weights

    @contextlib.contextmanager
    def watched(self, model):
        with original(self, model):
            seen.append(model.get_parameter("layers.0.mlp.down_proj.weight").dtype)
            yield

    monkeypatch.setattr(Precision, "frozen_weights", watched)
    train(_options(tiny_causal_dir, tiny_corpus, held, precision="bf16", adapter_dtype="float32"))
    assert seen == [torch.bfloat16, torch.bfloat16]  # held in bf16 through each stage's steps
    monkeypatch.setattr(Precision, "frozen_weights", lambda self, model: contextlib.nullcontext())
    cast = tmp_path / "cast"
    train(_options(tiny_causal_dir, tiny_corpus, cast, precision="bf16", adapter_dtype="float32"))
    assert _losses(held) == _losses(cast)
    for folder in (held / "adapters").iterdir():
        a = load_file(folder / "adapter_model.safetensors")
        b = load_file(cast / "adapters" / folder.name / "adapter_model.safetensors")
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)
