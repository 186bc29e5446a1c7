"""``train``: bidirectional attention, then MNTP, SimCSE and/or the supervised contrastive
stage, each with its own LoRA.

The loop runs under ``accelerate`` so one process on a CPU, one GPU or several processes
(DDP) share one code path. Every random draw is seeded from (seed, stage, step, rank) and
the learning rate is a function of the step, which is what makes ``--resume`` after a
kill -9 reach the same weights as an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ragkit.encoder.adapters import Adapter, adapter_from_peft, load_adapter, merge_adapters
from ragkit.encoder.attention import set_bidirectional
from ragkit.encoder.backbone import backbone_layers, load_model, load_tokenizer
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
from ragkit.encoder.inputs import InputBuilder, collate
from ragkit.encoder.packaged import DEFAULT_BACKBONE
from ragkit.encoder.pruning import check_layers, keep_bottom_layers
from ragkit.encoder.resolve import resolve_encoder
from ragkit.errors import RagkitError
from ragkit.hashing import canonical_json_hash
from ragkit.trainer.card import record_stage, write_card
from ragkit.trainer.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from ragkit.trainer.corpus import Corpus, corpus_pairs, load_corpus, sentence_views
from ragkit.trainer.display import TrainDisplay
from ragkit.trainer.losses import MNTPObjective, SimCSEObjective, SupervisedObjective, gather_rows
from ragkit.trainer.masking import MaskingScheme, mask_token_id, mask_tokens
from ragkit.trainer.pairs import PairBatches, PairSet, mine_negatives, read_pairs
from ragkit.trainer.precision import Precision, resolve_precision
from ragkit.trainer.recipe import RECIPES, STAGES, Recipe, learning_rate
from ragkit.trainer.run_folder import append_metrics, plot_loss, prepare_output, trim_metrics

log = logging.getLogger("ragkit")
EXPLODED_LOSS = 1e4


class TrainingDivergedError(RagkitError):
    """The loss or the gradients stopped being finite numbers."""


@dataclass
class TrainOptions:
    """What ``ragkit train`` was asked to do."""

    out: Path
    backbone: str = DEFAULT_BACKBONE
    corpus: str | None = None
    stages: list[str] = field(default_factory=lambda: ["mntp", "simcse"])
    recipe: Recipe = field(default_factory=lambda: RECIPES["quick"])
    pairs: list[str] = field(default_factory=list)
    mine_negatives: bool = True
    layers: int | None = None
    """Keep the bottom N layers before the first stage (None: as the start has them)."""
    use_eval_sections: bool = False
    """Train on a folder's sections that ``ragkit eval FOLDER`` holds out (off: left out)."""
    seed: int = 0
    resume: bool = False
    device: str | None = None
    gradient_checkpointing: bool = False
    adapter_dtype: str = "float16"
    show_progress: bool | None = None
    command: str = ""
    on_step: Callable[[str, int, float], None] | None = None
    """Called after each optimizer step with (stage, step, loss), once its metrics are written."""
    precision: str = "auto"
    """``auto``, ``fp32`` or ``bf16`` (autocast forward passes, fp32 weights and losses)."""
    mixture: str | dict[str, float] = "sqrt"
    """How batches are shared among pair datasets: ``sqrt``, ``size`` or explicit weights."""
    teacher: str | None = None
    """An encoder whose scores filter false negatives and are distilled (supervised stage)."""
    teacher_filter: bool = True
    distill_weight: float = 0.0


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


def _top_layer_modules(model, targets: list[str], top_layers: int) -> list[str]:
    """Full names of the target projections in the top ``top_layers`` blocks.

    Named explicitly rather than through peft's ``layers_to_transform``, whose layer pattern
    expects a prefix before ``layers.`` that a bare decoder does not have.
    """
    found: dict[int, list[str]] = {}
    for name, _ in model.named_modules():
        parts = name.split(".")
        numbers = [int(p) for p in parts if p.isdigit()]
        if parts[-1] in targets and numbers:
            found.setdefault(numbers[0], []).append(name)
    keep = sorted(found)[-top_layers:]
    return [name for layer in keep for name in found[layer]]


def _lora_config(recipe: Recipe, model, *, dropout: float, top_layers: int | None = None):
    from peft import LoraConfig

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in recipe.lora_targets if t in present]
    if not targets:
        raise RagkitError(
            f"none of the LoRA target modules ({', '.join(recipe.lora_targets)}) exist in this model"
        )
    if top_layers is not None:
        targets = _top_layer_modules(model, targets, top_layers) or targets
    return LoraConfig(
        r=recipe.lora_r,
        lora_alpha=recipe.lora_alpha,
        lora_dropout=dropout,
        target_modules=targets,
        bias="none",
    )


def _decoder(causal_lm):
    return causal_lm.get_decoder()


def _replace_decoder(causal_lm, decoder) -> None:
    setattr(causal_lm, causal_lm.base_model_prefix, decoder)


@dataclass
class _Start:
    """What training starts from: a backbone, plus the adapters of an encoder trained before."""

    backbone: object
    adapters: list[Adapter]
    instructions: dict[str, str]
    encoder: str | None = None
    """The saved encoder the adapters come from (None: a bare backbone)."""
    history: dict = field(default_factory=dict)
    """Its own training record (stages, recipe), for the model card."""
    layers: int | None = None
    """The saved encoder's own pruning (None: every layer of the backbone)."""


def _resolve_start(spec: str) -> _Start:
    """A backbone name, or a saved encoder (``default`` too) whose adapters stay underneath."""
    resolved = resolve_encoder(spec)
    saved, config = resolved.saved, resolved.config
    if saved is None:
        return _Start(resolved.backbone, [], {})
    history = {}
    for name, key in (("stages.json", "stages"), ("training.json", "training")):
        try:
            history[key] = json.loads((saved / name).read_text())
        except (OSError, ValueError):
            history[key] = {}
    return _Start(
        resolved.backbone, resolved.adapters, dict(config.instructions), spec, history, config.layers
    )


def _layers(options: TrainOptions, start: _Start) -> int | None:
    """The layer count of the trained encoder: pruning only ever removes layers."""
    available = start.layers or backbone_layers(start.backbone)
    check_layers(options.layers, available)
    return options.layers if options.layers is not None else start.layers


@dataclass
class _Data:
    """The passages of the unsupervised stages and the pairs of the supervised one."""

    corpus: Corpus | None
    pairs: PairSet | None
    teacher: object = None

    def pairs_hash(self) -> str:
        return canonical_json_hash([list(map(str, vars(p).values())) for p in self.pairs.pairs])

    def for_stage(self, stage: str):
        return self.pairs if stage == "supervised" else self.corpus.passages


def _load_data(options: TrainOptions) -> _Data:
    """Read and check all training data before any model loads, so bad input fails fast."""
    unsupervised = any(s != "supervised" for s in options.stages)
    needed = unsupervised or not options.pairs
    corpus = load_corpus(options.corpus, leave_out_eval=not options.use_eval_sections) if needed else None
    pairs = None
    if "supervised" in options.stages:
        pairs = read_pairs(options.pairs) if options.pairs else corpus_pairs(corpus)
        if options.mine_negatives:
            pairs = mine_negatives(pairs)
        log.info("supervised stage on %s", pairs.describe())
    data = _Data(corpus, pairs)
    if options.teacher and pairs is not None:
        from ragkit.trainer.teacher import open_teacher

        data.teacher = open_teacher(options.teacher, data.pairs_hash(), device=options.device)
    return data


def _run_settings(options: TrainOptions, start: _Start, data: _Data, precision: Precision) -> dict:
    settings = {
        "backbone": start.backbone.name,
        "backbone_identity": start.backbone.identity,
        "base_adapters": [a.content_hash() for a in start.adapters],
        "base": {
            "encoder": start.encoder,
            "adapters": [a.name for a in start.adapters],
            "stages": start.history.get("stages", {}),
            "recipe": start.history.get("training", {}).get("recipe", {}),
        }
        if start.adapters
        else None,
        "stages": list(options.stages),
        "layers": _layers(options, start),
        "recipe": options.recipe.to_dict(),
        "seed": options.seed,
        "precision": precision.name,
    }
    if data.corpus is not None:
        settings |= {
            "corpus": data.corpus.source,
            "corpus_passages": len(data.corpus.passages),
            "corpus_hash": canonical_json_hash(data.corpus.passages),
        }
    if data.pairs is not None:
        settings |= {
            "pairs": data.pairs.sources or ["(pairs from the corpus)"],
            "pairs_rows": len(data.pairs.pairs),
            "pairs_hash": data.pairs_hash(),
            "mixture": options.mixture,
            "teacher": data.teacher.identity if data.teacher is not None else None,
            "teacher_source": options.teacher,
            "teacher_filter": bool(data.teacher is not None and options.teacher_filter),
            "distill_weight": options.distill_weight if data.teacher is not None else 0.0,
        }
    return settings


def train(options: TrainOptions) -> TrainResult:
    """Train an LLM2Vec encoder into ``options.out``; returns what each stage did."""
    import torch
    from accelerate import Accelerator

    started = time.perf_counter()
    out = Path(options.out).expanduser()
    data = _load_data(options)
    start = _resolve_start(options.backbone)
    cpu = options.device == "cpu" or (options.device is None and not torch.cuda.is_available())
    precision = resolve_precision(options.precision, "cpu" if cpu else "cuda")
    log.info("training in %s (%s)", precision.name, precision.reason)
    settings = _run_settings(options, start, data, precision)
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
        _replace_decoder(causal_lm, merge_adapters(_decoder(causal_lm), start.adapters))
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
            _replace_decoder(causal_lm, merge_adapters(_decoder(causal_lm), [stored]))
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


@dataclass
class _StageRun:
    """A stage's LoRA-wrapped model, objective and optimizer, and how it must be undone."""

    peft_decoder: object
    objective: object
    optimizer: object
    params: list
    named: list
    old_dropout: dict
    hooks: list


def _attach_lora(stage: str, causal_lm, options: TrainOptions, precision: Precision) -> _StageRun:
    """Fresh seeded LoRA on the decoder, the stage's dropout, objective and optimizer."""
    import torch
    from peft import get_peft_model

    recipe = options.recipe
    decoder = _decoder(causal_lm)
    old_dropout = _set_attention_dropout(decoder, recipe.simcse_dropout if stage == "simcse" else 0.0)
    hooks = _add_hidden_dropout(decoder, recipe.simcse_hidden_dropout if stage == "simcse" else 0.0)
    # Seeded so a stage started after a resume gets the same initial LoRA as one run would.
    torch.manual_seed(_step_seed(options.seed, stage, 0, 0) + 63)
    config = _lora_config(recipe, decoder, dropout=recipe.lora_dropout, top_layers=recipe.top_layers(stage))
    peft_decoder = get_peft_model(decoder, config)
    _replace_decoder(causal_lm, peft_decoder.base_model.model)
    if options.gradient_checkpointing:
        peft_decoder.base_model.model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    model, autocast = peft_decoder.base_model.model, precision.autocast
    if stage == "mntp":
        objective = MNTPObjective(causal_lm, autocast=autocast)
    elif stage == "simcse":
        objective = SimCSEObjective(model, temperature=recipe.temperature, autocast=autocast)
    else:
        objective = SupervisedObjective(
            model,
            temperature=recipe.supervised_temperature,
            autocast=autocast,
            distill_weight=options.distill_weight,
            gather=gather_rows,
        )
    objective.train()
    named = [(n, p) for n, p in peft_decoder.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [p for _, p in named], lr=recipe.stage(stage).lr, weight_decay=recipe.weight_decay, foreach=False
    )
    return _StageRun(peft_decoder, objective, optimizer, [p for _, p in named], named, old_dropout, hooks)


def _detach_lora(run: _StageRun, stage: str, causal_lm) -> Adapter:
    """Read the trained LoRA out, remove hooks and dropout, leave the plain decoder in place."""
    adapter = adapter_from_peft(stage, run.peft_decoder)
    for handle in run.hooks:
        handle.remove()
    merged = run.peft_decoder.unload()  # drop the LoRA layers; the caller merges the saved adapter
    _set_attention_dropout(merged, 0.0)
    for name, module in merged.named_modules():
        if name in run.old_dropout:
            module.attention_dropout = run.old_dropout[name]
    _replace_decoder(causal_lm, merged)
    return adapter


def _restore(
    stage: str, run: _StageRun, options: TrainOptions, out: Path, main: bool
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


class _UnlabelledSteps:
    """Batches of MNTP (masked) or SimCSE (two dropout views) from plain passages."""

    def __init__(self, stage: str, tokenizer, causal_lm, passages: list[str], options: TrainOptions):
        recipe = options.recipe
        settings = recipe.stage(stage)
        self.stage, self.seed = stage, options.seed
        self.inputs = InputBuilder(tokenizer, settings.max_length)
        if stage == "simcse" and recipe.simcse_views == "sentences":
            passages = sentence_views(passages)
        self.encoded = self.inputs.build(passages)
        self.order = _BatchOrder(len(self.encoded), settings.batch_size, options.seed + STAGES.index(stage))
        self.specials = set(getattr(tokenizer, "all_special_ids", [])) | {self.inputs.pad_id}
        self.mask_id = mask_token_id(tokenizer)
        self.vocab = min(len(tokenizer), causal_lm.get_input_embeddings().num_embeddings)
        self.scheme = MaskingScheme(probability=recipe.mask_probability)

    def loss(self, objective, step: int, rank: int, world: int, device):
        import torch

        rows = self.order.rows(step)[rank::world]
        batch = collate([self.encoded[i] for i in rows], self.inputs.pad_id, "right")
        ids, attention = batch["input_ids"], batch["attention_mask"]
        tokens = int(attention.sum())
        if self.stage == "simcse":
            return objective(ids.to(device), attention.to(device)), tokens
        generator = torch.Generator().manual_seed(_step_seed(self.seed, self.stage, step, rank))
        masked, labels = mask_tokens(
            ids,
            attention,
            special_ids=self.specials,
            mask_id=self.mask_id,
            vocab_size=self.vocab,
            scheme=self.scheme,
            generator=generator,
        )
        return objective(masked.to(device), attention.to(device), labels.to(device)), tokens


class _PairSteps:
    """Batches of the supervised stage: queries with their instruction, positives, then negatives.

    The global batch is laid out once for every process: process *r*'s passages fill columns
    ``r * width`` to ``r * width + width`` of the gathered passage matrix (positives first,
    then hard negatives, then padding), so each query knows its positive's column and which
    candidates are padding or false negatives, whichever process encoded them.
    """

    def __init__(self, tokenizer, pair_set: PairSet, options: TrainOptions, world: int = 1, teacher=None):
        recipe = options.recipe
        settings = recipe.supervised
        self.pairs = pair_set.pairs
        self.passages = InputBuilder(tokenizer, settings.max_length)
        self.queries = InputBuilder(tokenizer, settings.query_max_length or settings.max_length)
        self.instruction = recipe.query_instruction
        self.order = PairBatches(
            pair_set, settings.batch_size, options.seed + STAGES.index("supervised"), options.mixture
        )
        self.teacher = teacher
        self.teacher_filter = options.teacher_filter
        self.filtered = 0
        smallest = min(len(rows) for rows in pair_set.datasets.values())
        if min(smallest, settings.batch_size) < world:
            raise RagkitError(
                f"a dataset of {smallest} pairs cannot fill a batch on each of {world} processes; "
                "add rows or use fewer processes"
            )

    def _collate(self, items, device) -> dict:
        batch = collate(items, self.passages.pad_id, "right")
        return {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "position_ids", "pool_mask")}

    def layout(self, step: int, rank: int, world: int) -> dict:
        """This process's rows and passages, and the global columns with their texts."""
        per_rank = [[self.pairs[i] for i in self.order.rows(step)[r::world]] for r in range(world)]
        blocks = [
            [p.positive for p in rows] + [p.negatives[0] for p in rows if p.negatives] for rows in per_rank
        ]
        width = max(len(b) for b in blocks)
        columns: list[str | None] = [t for b in blocks for t in b + [None] * (width - len(b))]
        rows = per_rank[rank]
        targets = [rank * width + i for i in range(len(rows))]
        answers: dict[str, set[str]] = {}
        for p in (p for group in per_rank for p in group):
            answers.setdefault(p.query, set()).add(p.positive)
        allowed = [
            [
                text is not None and (c == target or text not in answers[p.query])
                for c, text in enumerate(columns)
            ]
            for p, target in zip(rows, targets, strict=True)
        ]
        return {
            "rows": rows,
            "texts": blocks[rank],
            "width": width,
            "columns": columns,
            "targets": targets,
            "allowed": allowed,
        }

    def batch(self, step: int, rank: int, world: int) -> tuple[list, list]:
        """Encoded queries and passages of this process (positives first, then negatives)."""
        plan = self.layout(step, rank, world)
        return self._encode_queries(plan["rows"]), self.passages.build(plan["texts"])

    def _encode_queries(self, rows: list) -> list:
        queries = []
        for pair in rows:
            instruction = self.instruction if pair.instruction is None else pair.instruction
            queries += self.queries.build([pair.query], instruction)
        return queries

    def _teacher_view(self, plan: dict):
        """The teacher's logits and the candidates it keeps, or (None, the plain mask)."""
        import numpy as np

        allowed = np.array(plan["allowed"], dtype=bool)
        if self.teacher is None:
            return None, allowed
        from ragkit.trainer.teacher import teacher_judgement

        present = [c for c, t in enumerate(plan["columns"]) if t is not None]
        queries = self.teacher.vectors([p.query for p in plan["rows"]], query=True)
        passages = np.zeros((len(plan["columns"]), queries.shape[1]), dtype=np.float32)
        passages[present] = self.teacher.vectors([plan["columns"][c] for c in present], query=False)
        logits, keep = teacher_judgement(queries, passages, plan["targets"], allowed)
        if self.teacher_filter:
            self.filtered += int((allowed & ~keep).sum())
            allowed = keep
        return logits, allowed

    def loss(self, objective, step: int, rank: int, world: int, device):
        import torch

        plan = self.layout(step, rank, world)
        queries, passages = self._encode_queries(plan["rows"]), self.passages.build(plan["texts"])
        teacher, allowed = self._teacher_view(plan)
        tokens = sum(len(e.ids) for e in queries) + sum(len(e.ids) for e in passages)
        extra = {
            "targets": torch.tensor(plan["targets"], device=device),
            "allowed": torch.from_numpy(allowed).to(device),
            "teacher": None if teacher is None else torch.from_numpy(teacher).float().to(device),
            "pad_to": plan["width"],
        }
        return objective(self._collate(queries, device), self._collate(passages, device), **extra), tokens


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
    run = _attach_lora(stage, causal_lm, options, precision)
    start_step, elapsed_before, loss_value = _restore(stage, run, options, out, main)
    objective, optimizer = accelerator.prepare(run.objective, run.optimizer)
    steps = (
        _PairSteps(tokenizer, data.pairs, options, world, data.teacher)
        if stage == "supervised"
        else _UnlabelledSteps(stage, tokenizer, causal_lm, data.corpus.passages, options)
    )
    device = accelerator.device

    display.start_stage(stage, settings.steps, start_step)
    stage_started, tokens = time.perf_counter(), 0
    for step in range(start_step, settings.steps):
        torch.manual_seed(_step_seed(options.seed, stage, step, rank))
        loss, step_tokens = steps.loss(objective, step, rank, world, device)
        accelerator.backward(loss)
        grad_norm = float(accelerator.clip_grad_norm_(run.params, recipe.max_grad_norm))
        loss_value = float(accelerator.reduce(loss.detach(), reduction="mean"))
        if not math.isfinite(loss_value) or not math.isfinite(grad_norm) or loss_value > EXPLODED_LOSS:
            raise _diverged(stage, loss_value, grad_norm, step, out)
        lr = learning_rate(settings, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += step_tokens * world
        rate = tokens / max(time.perf_counter() - stage_started, 1e-9)
        done = step + 1
        display.update(done, loss_value, lr, rate)
        if main:
            append_metrics(out, _metrics_row(stage, done, loss_value, lr, grad_norm, rate, precision.name))
        if done % recipe.checkpoint_every == 0 or done == settings.steps:
            elapsed = elapsed_before + time.perf_counter() - stage_started
            _checkpoint(accelerator, out, stage, done, run, optimizer, elapsed, loss_value)
        if options.on_step is not None:
            options.on_step(stage, done, loss_value)

    adapter = _detach_lora(run, stage, causal_lm)
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


def _metrics_row(
    stage: str, step: int, loss: float, lr: float, grad_norm: float, rate: float, precision: str
) -> dict:
    return {
        "precision": precision,
        "stage": stage,
        "step": step,
        "loss": round(loss, 6),
        "lr": lr,
        "grad_norm": round(grad_norm, 4),
        "tokens_per_s": round(rate, 1),
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
