"""``train``: bidirectional attention, then MNTP, SimCSE and/or the supervised contrastive
stage, each with its own LoRA.

The loop runs under ``accelerate`` so one process on a CPU, one GPU or several processes
(DDP) share one code path. Every random draw is seeded from (seed, stage, step, rank) and
the learning rate is a function of the step, which is what makes ``--resume`` after a
kill -9 reach the same weights as an uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path

from ragkit.encoder.adapters import load_adapter, merge_adapters
from ragkit.encoder.attention import set_bidirectional
from ragkit.encoder.backbone import load_model, load_tokenizer
from ragkit.encoder.config import EncoderConfig
from ragkit.encoder.folder import (
    adapter_folder,
    adapter_name,
    has_adapter,
    has_adapters,
    write_adapter,
    write_config,
    write_tokenizer,
)
from ragkit.encoder.pruning import keep_bottom_layers
from ragkit.errors import RagkitError
from ragkit.trainer.batches import PairSteps, UnlabelledSteps, step_seed
from ragkit.trainer.card import record_stage, write_card
from ragkit.trainer.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from ragkit.trainer.compiled import check_can_compile
from ragkit.trainer.display import TrainDisplay
from ragkit.trainer.lora import StageRun, attach_lora, decoder_of, detach_lora, replace_decoder
from ragkit.trainer.options import TrainOptions, TrainResult
from ragkit.trainer.precision import resolve_precision
from ragkit.trainer.recipe import learning_rate
from ragkit.trainer.run_folder import append_metrics, plot_loss, prepare_output, trim_metrics
from ragkit.trainer.start import load_data, resolve_start, run_settings

log = logging.getLogger("ragkit")
EXPLODED_LOSS = 1e4


class TrainingDivergedError(RagkitError):
    """The loss or the gradients stopped being finite numbers."""


def train(options: TrainOptions) -> TrainResult:
    """Train an LLM2Vec encoder into ``options.out``; returns what each stage did."""
    import torch
    from accelerate import Accelerator

    started = time.perf_counter()
    out = Path(options.out).expanduser()
    cpu = options.device == "cpu" or (options.device is None and not torch.cuda.is_available())
    if options.compile:
        check_can_compile("cpu" if cpu else "cuda")
    data = load_data(options)
    start = resolve_start(options.backbone)
    precision = resolve_precision(options.precision, "cpu" if cpu else "cuda")
    log.info("training in %s (%s)", precision.name, precision.reason)
    settings = run_settings(options, start, data, precision)
    # Autocast is applied by the objectives around the transformer only, on every device.
    accelerator = Accelerator(cpu=cpu, mixed_precision="no")
    main = accelerator.is_main_process
    if main:
        prepare_output(out, settings, resume=options.resume)
    accelerator.wait_for_everyone()
    resumed = has_adapters(out) or bool(list_checkpoints(out / "checkpoints"))
    if data.corpus is not None:
        log.info("training on %s", data.corpus.describe())

    tokenizer = load_tokenizer(start.backbone.folder)
    causal_lm = load_model(start.backbone.folder, causal_lm=True)
    set_bidirectional(causal_lm, True)
    if start.adapters:
        replace_decoder(causal_lm, merge_adapters(decoder_of(causal_lm), start.adapters))
    keep_bottom_layers(causal_lm, settings["layers"])
    names = [a.name for a in start.adapters]
    if main:
        for adapter in start.adapters:
            if not has_adapter(out, adapter.name):
                write_adapter(out, adapter.name, adapter, dtype=options.adapter_dtype)
    summary: dict[str, dict] = {}
    with TrainDisplay(options.show_progress if main else False) as display:
        for stage in options.stages:
            names.append(adapter_name(len(names), stage))
            if has_adapter(out, names[-1]):
                summary[stage] = {"steps": options.recipe.stage(stage).steps, "resumed": "complete"}
            else:
                adapter, summary[stage] = _train_stage(
                    stage, causal_lm, tokenizer, data, options, accelerator, display, out, precision
                )
                if main:
                    write_adapter(out, names[-1], adapter, dtype=options.adapter_dtype)
                    record_stage(out, stage, summary[stage])
                accelerator.wait_for_everyone()
            stored = load_adapter(adapter_folder(out, names[-1]))
            replace_decoder(causal_lm, merge_adapters(decoder_of(causal_lm), [stored]))
    if main:
        instructions = start.instructions
        if "supervised" in options.stages:
            instructions = {**instructions, "query": options.recipe.query_instruction}
        _finish(out, tokenizer, start.backbone, names, instructions, settings["layers"])
        write_card(out, command=options.command)
    accelerator.wait_for_everyone()
    return TrainResult(out, summary, time.perf_counter() - started, resumed)


def _finish(
    out: Path, tokenizer, backbone, adapter_names: list[str], instructions: dict[str, str], layers: int | None
) -> None:
    """Write the encoder files (``ragkit.json`` last, so its presence means complete)."""
    write_tokenizer(out, tokenizer)
    config = EncoderConfig(
        backbone=backbone.name,
        backbone_identity=backbone.identity,
        adapters=adapter_names,
        instructions=instructions,
        layers=layers,
    )
    write_config(out, config)
    plot_loss(out)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)


def _restore(
    stage: str, run: StageRun, options: TrainOptions, out: Path, main: bool
) -> tuple[int, float, float]:
    """Load the stage's last checkpoint into the LoRA and optimizer; returns (step, elapsed,
    the loss at that step), so a stage resumed at its last step still reports its loss."""
    import torch

    checkpoints = [c for c in list_checkpoints(out / "checkpoints") if c.name.startswith(f"{stage}-")]
    if not (options.resume and checkpoints):
        if main:
            trim_metrics(out, list(options.stages), stage, 0)
        return 0, 0.0, float("nan")
    checkpoint = load_checkpoint(checkpoints[-1])
    missing = [n for n, _ in run.named if n not in checkpoint.weights]
    if missing:
        raise RagkitError(f"checkpoint {checkpoints[-1]} does not match this model (no {missing[0]})")
    with torch.no_grad():
        for name, param in run.named:
            param.copy_(checkpoint.weights[name])
    run.optimizer.load_state_dict(checkpoint.optimizer_state)
    step = checkpoint.step
    if main:
        trim_metrics(out, list(options.stages), stage, step)
    log.info("resuming %s from step %d", stage, step)
    return step, float(checkpoint.extra.get("elapsed", 0.0)), float(checkpoint.extra.get("loss", "nan"))


def _diverged(stage: str, loss: float, grad_norm: float, step: int, out: Path) -> TrainingDivergedError:
    kept = list_checkpoints(out / "checkpoints")
    where = f"the last good checkpoint is {kept[-1]}" if kept else "no checkpoint was written yet"
    return TrainingDivergedError(
        f"{stage} loss became {loss:.4g} (gradient norm {grad_norm:.4g}) at step {step + 1}; "
        f"{where}. Lower --lr and rerun with --resume"
    )


def _train_stage(stage, causal_lm, tokenizer, data, options, accelerator, display, out, precision):
    """Attach a fresh LoRA, train it for the stage's steps, return it as an :class:`Adapter`."""
    import torch

    recipe = options.recipe
    settings = recipe.stage(stage)
    main = accelerator.is_main_process
    rank, world = accelerator.process_index, accelerator.num_processes
    if settings.batch_size < world:
        raise RagkitError(f"--batch-size {settings.batch_size} is smaller than the {world} processes")
    run = attach_lora(stage, causal_lm, options, precision)
    start_step, elapsed_before, loss_value = _restore(stage, run, options, out, main)
    objective, optimizer = accelerator.prepare(run.objective, run.optimizer)
    steps = (
        PairSteps(tokenizer, data.pairs, options, world, data.teacher)
        if stage == "supervised"
        else UnlabelledSteps(stage, tokenizer, causal_lm, data.corpus.passages, options)
    )
    device = accelerator.device

    display.start_stage(stage, settings.steps, start_step)
    stage_started, tokens = time.perf_counter(), 0
    for step in range(start_step, settings.steps):
        torch.manual_seed(step_seed(options.seed, stage, step, rank))
        loss, step_tokens = steps.loss(objective, step, rank, world, device)
        accelerator.backward(loss)
        grad_norm = float(accelerator.clip_grad_norm_(run.params, recipe.max_grad_norm))
        loss_value = float(accelerator.reduce(loss.detach(), reduction="mean"))
        if not math.isfinite(loss_value) or not math.isfinite(grad_norm) or loss_value > EXPLODED_LOSS:
            raise _diverged(stage, loss_value, grad_norm, step, out)
        lr = _optimizer_step(optimizer, settings, step)
        tokens += step_tokens * world
        rate = tokens / max(time.perf_counter() - stage_started, 1e-9)
        done = step + 1
        display.update(done, loss_value, lr, rate)
        if main:
            seconds = time.perf_counter() - stage_started
            row = _metrics_row(stage, done, loss_value, lr, grad_norm, rate, precision.name, seconds)
            append_metrics(out, row)
        if done % recipe.checkpoint_every == 0 or done == settings.steps:
            elapsed = elapsed_before + time.perf_counter() - stage_started
            _checkpoint(accelerator, out, stage, done, run, optimizer, elapsed, loss_value)
        if options.on_step is not None:
            options.on_step(stage, done, loss_value)

    adapter = detach_lora(run, stage, causal_lm)
    accelerator.free_memory()
    stats = {
        "steps": settings.steps,
        "final_loss": loss_value,
        "seconds": round(elapsed_before + time.perf_counter() - stage_started, 1),
        "tokens_per_s": round(tokens / max(time.perf_counter() - stage_started, 1e-9), 1),
        "resumed_from": start_step,
        "precision": precision.name,
    }
    if getattr(steps, "teacher", None) is not None:
        stats["false_negatives_dropped"] = steps.filtered
    return adapter, stats


def _optimizer_step(optimizer, settings, step: int) -> float:
    """Set the step's learning rate, apply the gradients, clear them; returns the rate."""
    lr = learning_rate(settings, step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return lr


def _metrics_row(
    stage: str,
    step: int,
    loss: float,
    lr: float,
    grad_norm: float,
    rate: float,
    precision: str,
    seconds: float,
) -> dict:
    """``tokens_per_s`` is the rate since the stage started (or resumed), ``seconds`` ago."""
    return {
        "precision": precision,
        "stage": stage,
        "step": step,
        "loss": round(loss, 6),
        "lr": lr,
        "grad_norm": round(grad_norm, 4),
        "tokens_per_s": round(rate, 1),
        "seconds": round(seconds, 2),
    }


def _checkpoint(accelerator, out, stage, step, run, optimizer, elapsed, loss) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_checkpoint(
            out / "checkpoints",
            stage,
            step,
            dict(run.named),
            optimizer.state_dict(),
            {"elapsed": elapsed, "loss": loss},
        )
    accelerator.wait_for_everyone()
