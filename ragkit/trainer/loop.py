"""``train``: bidirectional attention, then MNTP, then SimCSE, each with its own LoRA.

The loop runs under ``accelerate`` so one process on a CPU, one GPU or several processes
(DDP) share one code path. Every random draw is seeded from (seed, stage, step, rank) and
the learning rate is a function of the step, which is what makes ``--resume`` after a
kill -9 reach the same weights as an uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ragkit.encoder.adapters import Adapter, adapter_from_peft, load_adapter, merge_adapters
from ragkit.encoder.attention import set_bidirectional
from ragkit.encoder.backbone import load_model, load_tokenizer, resolve_backbone
from ragkit.encoder.config import CONFIG_NAME, EncoderConfig
from ragkit.encoder.inputs import InputBuilder, collate
from ragkit.encoder.packaged import DEFAULT_BACKBONE
from ragkit.errors import RagkitError
from ragkit.hashing import canonical_json_hash
from ragkit.trainer.card import record_stage, write_card
from ragkit.trainer.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from ragkit.trainer.corpus import load_corpus, sentence_views
from ragkit.trainer.display import TrainDisplay
from ragkit.trainer.losses import MNTPObjective, SimCSEObjective
from ragkit.trainer.masking import MaskingScheme, mask_token_id, mask_tokens
from ragkit.trainer.recipe import RECIPES, STAGES, Recipe, learning_rate
from ragkit.trainer.run_folder import append_metrics, plot_loss, prepare_output, trim_metrics

log = logging.getLogger("ragkit")
EXPLODED_LOSS = 1e4
STEP_DELAY_ENV = "RAGKIT_TRAIN_STEP_DELAY"
"""Seconds to sleep after each step: lets tests kill a run mid-way on a tiny model."""


class TrainingDivergedError(RagkitError):
    """The loss or the gradients stopped being finite numbers."""


@dataclass
class TrainOptions:
    """What ``ragkit train`` was asked to do."""

    out: Path
    backbone: str = DEFAULT_BACKBONE
    corpus: str | None = None
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    recipe: Recipe = field(default_factory=lambda: RECIPES["quick"])
    seed: int = 0
    resume: bool = False
    device: str | None = None
    gradient_checkpointing: bool = False
    adapter_dtype: str = "float16"
    show_progress: bool | None = None
    command: str = ""


@dataclass
class TrainResult:
    out: Path
    stages: dict[str, dict]
    wall_seconds: float
    resumed: bool


def _step_seed(seed: int, stage: str, step: int, rank: int) -> int:
    return (seed * 1_000_003 + STAGES.index(stage) * 10_007 + step) * 64 + rank


class _BatchOrder:
    """Which passages make up the global batch of a step: seeded per-epoch permutations."""

    def __init__(self, size: int, batch_size: int, seed: int):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self._epochs: dict[int, list[int]] = {}

    def _permutation(self, epoch: int) -> list[int]:
        if epoch not in self._epochs:
            import numpy as np

            self._epochs = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.size).tolist()}
        return self._epochs[epoch]

    def rows(self, step: int) -> list[int]:
        flat = range(step * self.batch_size, (step + 1) * self.batch_size)
        return [self._permutation(i // self.size)[i % self.size] for i in flat]


def _set_attention_dropout(model, value: float) -> dict:
    """Set attention dropout on every attention module; returns the old values to restore."""
    old = {}
    for name, module in model.named_modules():
        if isinstance(getattr(module, "attention_dropout", None), float):
            old[name] = module.attention_dropout
            module.attention_dropout = value
    return old


def _add_hidden_dropout(model, p: float) -> list:
    """Dropout on every attention and MLP block's output before it joins the residual stream.

    This is BERT's hidden dropout, which SimCSE's two views depend on; decoder LLMs ship
    without it. Hooks rather than edited modules, so any family with ``self_attn``/``mlp``
    blocks gets it and removing the hooks restores the model exactly.
    """
    from torch.nn import functional as F

    if p <= 0:
        return []

    def hook(module, args, output):
        if not module.training:
            return output
        if isinstance(output, tuple):
            return (F.dropout(output[0], p, True), *output[1:])
        return F.dropout(output, p, True)

    return [
        module.register_forward_hook(hook)
        for name, module in model.named_modules()
        if name.rsplit(".", 1)[-1] in ("self_attn", "mlp")
    ]


def _lora_config(recipe: Recipe, model, *, dropout: float):
    from peft import LoraConfig

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in recipe.lora_targets if t in present]
    if not targets:
        raise RagkitError(
            f"none of the LoRA target modules ({', '.join(recipe.lora_targets)}) exist in this model"
        )
    layers = None
    if recipe.lora_top_layers is not None:
        total = int(getattr(model.config, "num_hidden_layers", 0) or 0)
        if total:
            layers = list(range(max(0, total - recipe.lora_top_layers), total))
    return LoraConfig(
        r=recipe.lora_r,
        lora_alpha=recipe.lora_alpha,
        lora_dropout=dropout,
        target_modules=targets,
        layers_to_transform=layers,
        bias="none",
    )


def _decoder(causal_lm):
    return causal_lm.get_decoder()


def _replace_decoder(causal_lm, decoder) -> None:
    setattr(causal_lm, causal_lm.base_model_prefix, decoder)


def _run_settings(options: TrainOptions, backbone, corpus) -> dict:
    return {
        "backbone": backbone.name,
        "backbone_identity": backbone.identity,
        "corpus": corpus.source,
        "corpus_passages": len(corpus.passages),
        "corpus_hash": canonical_json_hash(corpus.passages),
        "stages": list(options.stages),
        "recipe": options.recipe.to_dict(),
        "seed": options.seed,
    }


def train(options: TrainOptions) -> TrainResult:
    """Train an LLM2Vec encoder into ``options.out``; returns what each stage did."""
    import torch
    from accelerate import Accelerator

    # peft still asks transformers for a deprecated attribute; the warning means nothing to users.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    started = time.perf_counter()
    out = Path(options.out).expanduser()
    backbone = resolve_backbone(options.backbone)
    corpus = load_corpus(options.corpus)
    settings = _run_settings(options, backbone, corpus)
    cpu = options.device == "cpu" or (options.device is None and not torch.cuda.is_available())
    accelerator = Accelerator(cpu=cpu, mixed_precision="no" if cpu else "bf16")
    main = accelerator.is_main_process
    if main:
        prepare_output(out, settings, resume=options.resume)
    accelerator.wait_for_everyone()
    resumed = (out / "adapters").is_dir() or bool(list_checkpoints(out / "checkpoints"))
    log.info("training on %s", corpus.describe())

    tokenizer = load_tokenizer(backbone.folder)
    causal_lm = load_model(backbone.folder, causal_lm=True)
    set_bidirectional(causal_lm, True)
    summary: dict[str, dict] = {}
    adapters: list[Adapter] = []
    with TrainDisplay(options.show_progress if main else False) as display:
        for index, stage in enumerate(options.stages):
            folder = out / "adapters" / f"{index:02d}-{stage}"
            if (folder / "adapter_model.safetensors").is_file():
                adapter = load_adapter(folder)
                summary[stage] = {"steps": options.recipe.stage(stage).steps, "resumed": "complete"}
            else:
                adapter, summary[stage] = _train_stage(
                    stage, causal_lm, tokenizer, corpus.passages, options, accelerator, display, out
                )
                if main:
                    _save_adapter(adapter, folder, options.adapter_dtype)
                    record_stage(out, stage, summary[stage])
                accelerator.wait_for_everyone()
                adapter = load_adapter(folder)
            adapters.append(adapter)
            _replace_decoder(causal_lm, merge_adapters(_decoder(causal_lm), [adapter]))
    if main:
        _finish(out, tokenizer, backbone, [f"{i:02d}-{s}" for i, s in enumerate(options.stages)])
        write_card(out, command=options.command)
    accelerator.wait_for_everyone()
    return TrainResult(out, summary, time.perf_counter() - started, resumed)


def _save_adapter(adapter: Adapter, folder: Path, dtype: str) -> None:
    import torch

    cast = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]
    stored = Adapter(adapter.name, adapter.config, {k: v.to(cast) for k, v in adapter.tensors.items()})
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
    tmp.chmod(0o755)  # mkdtemp makes it private; the encoder folder is meant to be shared
    try:
        stored.save(tmp)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _finish(out: Path, tokenizer, backbone, adapter_names: list[str]) -> None:
    """Write the encoder files (``ragkit.json`` last, so its presence means complete)."""
    tokenizer.save_pretrained(out / "tokenizer")
    config = EncoderConfig(
        backbone=backbone.name, backbone_identity=backbone.identity, adapters=adapter_names
    )
    tmp = out / f".{CONFIG_NAME}.tmp"
    tmp.write_text(config.to_json())
    os.replace(tmp, out / CONFIG_NAME)
    plot_loss(out)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)


def _train_stage(stage, causal_lm, tokenizer, passages, options, accelerator, display, out):
    """Attach a fresh LoRA, train it for the stage's steps, return it as an :class:`Adapter`."""
    import torch
    from peft import get_peft_model

    recipe = options.recipe
    settings = recipe.stage(stage)
    main = accelerator.is_main_process
    rank, world = accelerator.process_index, accelerator.num_processes
    if settings.batch_size < world:
        raise RagkitError(f"--batch-size {settings.batch_size} is smaller than the {world} processes")
    decoder = _decoder(causal_lm)
    old_dropout = _set_attention_dropout(decoder, recipe.simcse_dropout if stage == "simcse" else 0.0)
    hooks = _add_hidden_dropout(decoder, recipe.simcse_hidden_dropout if stage == "simcse" else 0.0)
    # Seeded so a stage started after a resume gets the same initial LoRA as one run would.
    torch.manual_seed(_step_seed(options.seed, stage, 0, 0) + 63)
    peft_decoder = get_peft_model(decoder, _lora_config(recipe, decoder, dropout=recipe.lora_dropout))
    _replace_decoder(causal_lm, peft_decoder.base_model.model)
    if options.gradient_checkpointing:
        peft_decoder.base_model.model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    objective = (
        MNTPObjective(causal_lm)
        if stage == "mntp"
        else SimCSEObjective(peft_decoder.base_model.model, temperature=recipe.temperature)
    )
    objective.train()
    named = [(n, p) for n, p in peft_decoder.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [p for _, p in named], lr=settings.lr, weight_decay=recipe.weight_decay, foreach=False
    )

    start_step, elapsed_before = 0, 0.0
    checkpoints = [c for c in list_checkpoints(out / "checkpoints") if c.name.startswith(f"{stage}-")]
    if options.resume and checkpoints:
        checkpoint = load_checkpoint(checkpoints[-1])
        missing = [n for n, _ in named if n not in checkpoint.weights]
        if missing:
            raise RagkitError(f"checkpoint {checkpoints[-1]} does not match this model (no {missing[0]})")
        with torch.no_grad():
            for name, param in named:
                param.copy_(checkpoint.weights[name])
        optimizer.load_state_dict(checkpoint.optimizer_state)
        start_step, elapsed_before = checkpoint.step, float(checkpoint.extra.get("elapsed", 0.0))
        if main:
            trim_metrics(out, list(options.stages), stage, start_step)
        log.info("resuming %s from step %d", stage, start_step)
    elif main:
        trim_metrics(out, list(options.stages), stage, 0)

    objective, optimizer = accelerator.prepare(objective, optimizer)
    inputs = InputBuilder(tokenizer, settings.max_length)
    if stage == "simcse" and recipe.simcse_views == "sentences":
        passages = sentence_views(passages)
    encoded = inputs.build(passages)
    order = _BatchOrder(len(encoded), settings.batch_size, options.seed + STAGES.index(stage))
    specials = set(getattr(tokenizer, "all_special_ids", [])) | {inputs.pad_id}
    mask_id = mask_token_id(tokenizer)
    vocab = min(len(tokenizer), causal_lm.get_input_embeddings().num_embeddings)
    scheme = MaskingScheme(probability=recipe.mask_probability)
    delay = float(os.environ.get(STEP_DELAY_ENV, "0") or 0)
    device = accelerator.device
    params = [p for _, p in named]

    display.start_stage(stage, settings.steps, start_step)
    stage_started, tokens, loss_value = time.perf_counter(), 0, float("nan")
    for step in range(start_step, settings.steps):
        torch.manual_seed(_step_seed(options.seed, stage, step, rank))
        rows = order.rows(step)[rank::world]
        batch = collate([encoded[i] for i in rows], inputs.pad_id, "right")
        ids, attention = batch["input_ids"], batch["attention_mask"]
        if stage == "mntp":
            generator = torch.Generator().manual_seed(_step_seed(options.seed, stage, step, rank))
            masked, labels = mask_tokens(
                ids,
                attention,
                special_ids=specials,
                mask_id=mask_id,
                vocab_size=vocab,
                scheme=scheme,
                generator=generator,
            )
            loss = objective(masked.to(device), attention.to(device), labels.to(device))
        else:
            loss = objective(ids.to(device), attention.to(device))
        accelerator.backward(loss)
        grad_norm = float(accelerator.clip_grad_norm_(params, recipe.max_grad_norm))
        loss_value = float(accelerator.reduce(loss.detach(), reduction="mean"))
        if not math.isfinite(loss_value) or not math.isfinite(grad_norm) or loss_value > EXPLODED_LOSS:
            kept = list_checkpoints(out / "checkpoints")
            where = f"the last good checkpoint is {kept[-1]}" if kept else "no checkpoint was written yet"
            raise TrainingDivergedError(
                f"{stage} loss became {loss_value:.4g} (gradient norm {grad_norm:.4g}) at step {step + 1}; "
                f"{where}. Lower --lr and rerun with --resume"
            )
        lr = learning_rate(settings, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(attention.sum()) * world
        rate = tokens / max(time.perf_counter() - stage_started, 1e-9)
        done = step + 1
        display.update(done, loss_value, lr, rate)
        if main:
            append_metrics(
                out,
                {
                    "stage": stage,
                    "step": done,
                    "loss": round(loss_value, 6),
                    "lr": lr,
                    "grad_norm": round(grad_norm, 4),
                    "tokens_per_s": round(rate, 1),
                },
            )
        if done % recipe.checkpoint_every == 0 or done == settings.steps:
            accelerator.wait_for_everyone()
            if main:
                elapsed = elapsed_before + time.perf_counter() - stage_started
                save_checkpoint(
                    out / "checkpoints",
                    stage,
                    done,
                    dict(named),
                    optimizer.state_dict(),
                    {"elapsed": elapsed, "loss": loss_value},
                )
            accelerator.wait_for_everyone()
        if delay:
            time.sleep(delay)

    adapter = adapter_from_peft(stage, peft_decoder)
    for handle in hooks:
        handle.remove()
    _set_attention_dropout(decoder, 0.0)
    for name, module in decoder.named_modules():
        if name in old_dropout:
            module.attention_dropout = old_dropout[name]
    merged = peft_decoder.unload()  # drop the LoRA layers; the caller merges the saved adapter
    _replace_decoder(causal_lm, merged)
    accelerator.free_memory()
    stats = {
        "steps": settings.steps,
        "final_loss": loss_value,
        "seconds": round(elapsed_before + time.perf_counter() - stage_started, 1),
        "tokens_per_s": round(tokens / max(time.perf_counter() - stage_started, 1e-9), 1),
        "resumed_from": start_step,
    }
    return adapter, stats
