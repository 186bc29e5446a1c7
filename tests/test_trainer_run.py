"""``ragkit train`` end to end on a tiny model: outputs, resume after kill -9, DDP, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import slow_train_command
from ragkit.cli.app import main
from ragkit.encoder.adapters import load_adapter
from ragkit.encoder.encoder import Encoder
from ragkit.trainer.loop import TrainOptions, train
from ragkit.trainer.recipe import RECIPES

REPO = Path(__file__).resolve().parent.parent
SMALL = ["--steps", "6", "--batch-size", "4", "--max-length", "24", "--checkpoint-every", "2"]


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    """Run the console entry point in-process; returns (exit code, stderr)."""
    argv = sys.argv
    sys.argv = ["ragkit", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = argv
    return code, capsys.readouterr().err


def _train_args(backbone: Path, corpus: Path, out: Path) -> list[str]:
    return ["train", "--backbone", str(backbone), "--corpus", str(corpus), "--out", str(out), *SMALL]


def _options(backbone: Path, corpus: Path, out: Path, **kw) -> TrainOptions:
    recipe = RECIPES["quick"].with_overrides(steps=6, batch_size=4, max_length=24, checkpoint_every=2)
    return TrainOptions(
        out=out, backbone=str(backbone), corpus=str(corpus), recipe=recipe, show_progress=False, **kw
    )


def _adapter_tensors(out: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for folder in sorted((out / "adapters").iterdir()):
        tensors.update(
            {f"{folder.name}/{k}": v for k, v in load_file(folder / "adapter_model.safetensors").items()}
        )
    return tensors


def test_train_writes_a_loadable_encoder_with_card_curve_and_metrics(
    tiny_causal_dir, tiny_corpus, tmp_path, capsys
):
    out = tmp_path / "enc"
    code, err = run_cli(
        _train_args(tiny_causal_dir, tiny_corpus, out),
        capsys,
    )
    assert code == 0, err
    assert "trained encoder" in err
    assert sorted(p.name for p in (out / "adapters").iterdir()) == ["00-mntp", "01-simcse"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in rows] == [("mntp", i) for i in range(1, 7)] + [
        ("simcse", i) for i in range(1, 7)
    ]
    assert all(r["loss"] > 0 and r["tokens_per_s"] > 0 for r in rows)
    assert (out / "loss.png").stat().st_size > 5000
    card = (out / "README.md").read_text()
    assert "ragkit train --backbone" in card and "| mntp | 6 | 4 | 24 |" in card
    assert not (out / "checkpoints").exists()
    assert json.loads((out / "training.json").read_text())["model_layers"] == 2  # the whole tiny model
    encoder = Encoder.from_pretrained(str(out))
    assert encoder.describe()["adapters"] == ["00-mntp", "01-simcse"]
    base = Encoder.from_pretrained(str(tiny_causal_dir))
    assert encoder.fingerprint != base.fingerprint
    trained, untrained = encoder.encode(["the cat sat on the mat"]), base.encode(["the cat sat on the mat"])
    assert float(trained[0] @ untrained[0]) < 0.999999  # the adapters changed the vectors


def test_adapter_save_load_round_trip(tiny_causal_dir, tiny_corpus, tmp_path):
    out = tmp_path / "enc"
    train(_options(tiny_causal_dir, tiny_corpus, out, stages=["mntp"], adapter_dtype="float32"))
    adapter = load_adapter(out / "adapters" / "00-mntp")
    adapter.save(tmp_path / "copy")
    again = load_adapter(tmp_path / "copy")
    assert adapter.config == again.config
    assert adapter.tensors.keys() == again.tensors.keys() and len(adapter.tensors) == 2 * 7 * 2
    assert all(torch.equal(adapter.tensors[k], again.tensors[k]) for k in adapter.tensors)
    assert adapter.content_hash() == again.content_hash()
    assert any(bool(v.abs().sum()) for k, v in adapter.tensors.items() if "lora_B" in k)  # trained, not zeros


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_kill_9_then_resume_gives_the_same_weights_as_one_run(
    precision, tiny_causal_dir, tiny_corpus, tmp_path, capsys
):
    whole = tmp_path / "whole"
    train(_options(tiny_causal_dir, tiny_corpus, whole, precision=precision))
    reference = _adapter_tensors(whole)

    out = tmp_path / "killed"
    command = slow_train_command(
        0.4,
        overrides={"steps": 6, "batch_size": 4, "max_length": 24, "checkpoint_every": 2},
        out=out,
        backbone=str(tiny_causal_dir),
        corpus=str(tiny_corpus),
        stages="mntp,simcse",
        precision=precision,
    )
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = out / "checkpoints" / "simcse-000002"
    deadline = time.monotonic() + 120
    while not target.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.kill()  # SIGKILL: no cleanup handlers run
    process.wait()
    assert target.exists(), "the run never reached its SimCSE checkpoint"
    assert not (out / "ragkit.json").exists()

    refused, err = run_cli(
        [*_train_args(tiny_causal_dir, tiny_corpus, out), "--precision", precision],
        capsys,
    )
    assert refused == 1 and "--resume" in err
    code, err = run_cli(
        [*_train_args(tiny_causal_dir, tiny_corpus, out), "--precision", precision, "--resume"],
        capsys,
    )
    assert code == 0, err
    resumed = _adapter_tensors(out)
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 12  # no step logged twice after the resume


def test_two_process_accelerate_launch_on_cpu(tiny_causal_dir, tiny_corpus, tmp_path):
    out = tmp_path / "ddp"
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate, "accelerate is a dependency of peft and must be installed"
    command = [
        accelerate,
        "launch",
        "--cpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "ragkit",
        "train",
        "--backbone",
        str(tiny_causal_dir),
        "--corpus",
        str(tiny_corpus),
        "--out",
        str(out),
        *SMALL,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 12  # one process logs, and it logs each step once
    encoder = Encoder.from_pretrained(str(out))
    assert encoder.encode(["the cat sat"]).shape == (1, 32)


@pytest.mark.parametrize(
    ("corpus_kind", "message"),
    [
        ("empty", "no usable text"),
        ("whitespace", "no usable text"),
        ("binary", "binary"),
        ("missing", "does not exist"),
    ],
)
def test_bad_corpus_is_one_clear_line(corpus_kind, message, tiny_causal_dir, tmp_path, capsys):
    if corpus_kind == "empty":
        corpus = tmp_path / "empty.txt"
        corpus.write_text("")
    elif corpus_kind == "whitespace":
        corpus = tmp_path / "docs"
        corpus.mkdir()
        (corpus / "a.md").write_text("   \n\n\t\n")
        (corpus / "b.txt").write_text("\n")
    elif corpus_kind == "binary":
        corpus = tmp_path / "docs"
        corpus.mkdir()
        (corpus / "a.md").write_bytes(b"\x00\x01\x02binary" * 100)
    else:
        corpus = tmp_path / "nowhere"
    out = tmp_path / "enc"
    code, err = run_cli(
        ["train", "--backbone", str(tiny_causal_dir), "--corpus", str(corpus), "--out", str(out), *SMALL],
        capsys,
    )
    assert code == 1
    assert err.startswith("error:") and message in err and "Traceback" not in err
    assert not out.exists()


def test_unknown_backbone_and_bad_flags(tiny_corpus, tmp_path, capsys):
    code, err = run_cli(
        ["train", "--backbone", "no-such-model", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "x")],
        capsys,
    )
    assert code == 1 and "unknown backbone 'no-such-model'" in err
    code, err = run_cli(["train", "--recipe", "huge", "--out", str(tmp_path / "x")], capsys)
    assert code == 1 and "unknown recipe 'huge'" in err
    code, err = run_cli(["train", "--stages", "mntp,dpo", "--out", str(tmp_path / "x")], capsys)
    assert code == 1 and "unknown stage 'dpo'" in err
    code, err = run_cli(["train", "--batch-size", "1", "--out", str(tmp_path / "x")], capsys)
    assert code == 1 and "at least 2" in err


def test_refuses_an_output_folder_that_holds_something_else(tiny_causal_dir, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    code, err = run_cli(
        _train_args(tiny_causal_dir, tiny_corpus, out),
        capsys,
    )
    assert code == 1 and "refusing to overwrite" in err
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    assert (out / "thesis.tex").read_text() == "years of work"


def test_corrupt_checkpoint_is_a_clear_error_and_is_kept(tiny_causal_dir, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "enc"
    options = _options(tiny_causal_dir, tiny_corpus, out, stages=["mntp"])
    from ragkit.trainer import loop

    original = loop._finish
    loop._finish = lambda *a, **k: None  # stop before the checkpoints are cleaned up
    try:
        train(options)
    finally:
        loop._finish = original
    shutil.rmtree(out / "adapters")  # as if killed before the stage's adapter was saved
    checkpoint = sorted((out / "checkpoints").iterdir())[-1]
    (checkpoint / "trainable.safetensors").write_bytes(b"not a safetensors file")
    args = [
        "train",
        "--backbone",
        str(tiny_causal_dir),
        "--corpus",
        str(tiny_corpus),
        "--out",
        str(out),
        "--stages",
        "mntp",
        *SMALL,
        "--resume",
    ]
    code, err = run_cli(args, capsys)
    assert code == 1 and "is damaged" in err and checkpoint.name in err
    assert (checkpoint / "trainable.safetensors").read_bytes() == b"not a safetensors file"


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(
    tiny_causal_dir, tiny_corpus, tmp_path, monkeypatch
):
    from ragkit.trainer import losses
    from ragkit.trainer.loop import TrainingDivergedError

    calls = {"n": 0}
    original = losses.MNTPObjective.forward

    def poisoned(self, *args):
        calls["n"] += 1
        loss = original(self, *args)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(losses.MNTPObjective, "forward", poisoned)
    out = tmp_path / "enc"
    with pytest.raises(TrainingDivergedError, match="step 5") as caught:
        train(_options(tiny_causal_dir, tiny_corpus, out))
    assert "mntp-000004" in str(caught.value)
    kept = load_file(out / "checkpoints" / "mntp-000004" / "trainable.safetensors")
    assert all(torch.isfinite(v).all() for v in kept.values())


def test_resume_at_a_stage_s_last_checkpoint_keeps_its_loss(
    tiny_causal_dir, tiny_corpus, tmp_path, monkeypatch
):
    import ragkit.trainer.loop as loop

    out = tmp_path / "enc"
    save = loop.write_adapter

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # killed after the last checkpoint, before the adapter is saved

    monkeypatch.setattr(loop, "write_adapter", crash)
    with pytest.raises(KeyboardInterrupt):
        train(_options(tiny_causal_dir, tiny_corpus, out, stages=["mntp"]))
    assert (out / "checkpoints" / "mntp-000006").is_dir()
    monkeypatch.setattr(loop, "write_adapter", save)
    result = train(_options(tiny_causal_dir, tiny_corpus, out, stages=["mntp"], resume=True))
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert result.stages["mntp"]["resumed_from"] == 6
    assert result.stages["mntp"]["final_loss"] == pytest.approx(last["loss"])
    assert "nan" not in (out / "README.md").read_text().lower()
