"""A stage's set-up around the decoder: a fresh seeded LoRA, the stage's dropout and objective,
the optimizer, and undoing all of it once the stage is trained."""

from __future__ import annotations

from dataclasses import dataclass

from ragkit.encoder.adapters import Adapter, adapter_from_peft
from ragkit.errors import RagkitError
from ragkit.trainer.batches import step_seed
from ragkit.trainer.compiled import compiled, forget_compiled
from ragkit.trainer.losses import MNTPObjective, SimCSEObjective, SupervisedObjective, gather_rows
from ragkit.trainer.options import TrainOptions
from ragkit.trainer.precision import Precision
from ragkit.trainer.recipe import Recipe


def set_attention_dropout(model, value: float) -> dict:
    """Set attention dropout on every attention module; returns the old values to restore."""
    old = {}
    for name, module in model.named_modules():
        if isinstance(getattr(module, "attention_dropout", None), float):
            old[name] = module.attention_dropout
            module.attention_dropout = value
    return old


def add_hidden_dropout(model, p: float) -> list:
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


def lora_config(recipe: Recipe, model, *, dropout: float, top_layers: int | None = None):
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


def decoder_of(causal_lm):
    return causal_lm.get_decoder()


def replace_decoder(causal_lm, decoder) -> None:
    setattr(causal_lm, causal_lm.base_model_prefix, decoder)


@dataclass
class StageRun:
    """A stage's LoRA-wrapped model, objective and optimizer, and how it must be undone."""

    peft_decoder: object
    objective: object
    optimizer: object
    params: list
    named: list
    old_dropout: dict
    hooks: list
    compiled: bool = False


def attach_lora(stage: str, causal_lm, options: TrainOptions, precision: Precision) -> StageRun:
    """Fresh seeded LoRA on the decoder, the stage's dropout, objective and optimizer."""
    import torch
    from peft import get_peft_model

    recipe = options.recipe
    decoder = decoder_of(causal_lm)
    old_dropout = set_attention_dropout(decoder, recipe.simcse_dropout if stage == "simcse" else 0.0)
    hooks = add_hidden_dropout(decoder, recipe.simcse_hidden_dropout if stage == "simcse" else 0.0)
    # Seeded so a stage started after a resume gets the same initial LoRA as one run would.
    torch.manual_seed(step_seed(options.seed, stage, 0, 0) + 63)
    config = lora_config(recipe, decoder, dropout=recipe.lora_dropout, top_layers=recipe.top_layers(stage))
    peft_decoder = get_peft_model(decoder, config)
    replace_decoder(causal_lm, peft_decoder.base_model.model)
    if options.gradient_checkpointing:
        peft_decoder.base_model.model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    model, autocast = peft_decoder.base_model.model, precision.autocast
    if options.compile:
        model = compiled(model)
    if stage == "mntp":
        objective = MNTPObjective(causal_lm, autocast=autocast, decoder=model if options.compile else None)
    elif stage == "simcse":
        objective = SimCSEObjective(model, temperature=recipe.temperature, autocast=autocast)
    else:
        objective = SupervisedObjective(
            model,
            temperature=recipe.supervised_temperature,
            autocast=autocast,
            distill_weight=options.distill_weight,
            correlation_weight=options.correlation_weight,
            gather=gather_rows,
            chunk_size=options.chunk_size,
        )
    objective.train()
    named = [(n, p) for n, p in peft_decoder.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [p for _, p in named], lr=recipe.stage(stage).lr, weight_decay=recipe.weight_decay, foreach=False
    )
    params = [p for _, p in named]
    return StageRun(peft_decoder, objective, optimizer, params, named, old_dropout, hooks, options.compile)


def detach_lora(run: StageRun, stage: str, causal_lm) -> Adapter:
    """Read the trained LoRA out, remove hooks and dropout, leave the plain decoder in place."""
    adapter = adapter_from_peft(stage, run.peft_decoder)
    if run.compiled:
        forget_compiled()
    for handle in run.hooks:
        handle.remove()
    merged = run.peft_decoder.unload()  # drop the LoRA layers; the caller merges the saved adapter
    set_attention_dropout(merged, 0.0)
    for name, module in merged.named_modules():
        if name in run.old_dropout:
            module.attention_dropout = run.old_dropout[name]
    replace_decoder(causal_lm, merged)
    return adapter
