"""The model card (``README.md``) of a trained encoder: what it is and how to make it again."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ragkit.trainer.run_folder import RUN_FILE

STAGES_FILE = "stages.json"
EVALUATION_FILE = "evaluation.json"


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def record_stage(out: Path, stage: str, stats: dict) -> None:
    """Keep each finished stage's numbers on disk, so a resumed run's card still has them."""
    stages = _read(out / STAGES_FILE)
    stages[stage] = stats
    (out / STAGES_FILE).write_text(json.dumps(stages, indent=2) + "\n")


def _stage_rows(stages: dict, recipe: dict) -> list[dict]:
    return [{"stage": name, "settings": recipe.get(name, {}), "stats": s} for name, s in stages.items()]


def stage_history(stages: dict, training: dict) -> list[dict]:
    """Every stage a saved encoder went through, oldest first: its base's, then its own.

    Each run records this for the encoder it starts from, so a stack of runs keeps one row
    per stage however deep it goes. A record written before ``history`` existed gives what
    it kept: the stages of its base's last run.
    """
    return [*_base_history(training), *_stage_rows(stages, training.get("recipe", {}))]


def _base_history(run: dict) -> list[dict]:
    """The stages under a run, from its training record."""
    base = run.get("base") or {}
    return base.get("history") or _stage_rows(base.get("stages", {}), base.get("recipe", {}))


_STAGE_WORDS = {
    "mntp": "masked next-token prediction (MNTP)",
    "simcse": "unsupervised SimCSE",
    "supervised": "supervised contrastive training on query-passage pairs",
}


def _data_lines(run: dict) -> list[str]:
    lines = []
    if run.get("corpus"):
        lines.append(f"- Text: {run['corpus']}, {run.get('corpus_passages', 0):,} passages")
    if run.get("pairs"):
        lines.append(f"- Pairs: {run.get('pairs_rows', 0):,} rows from {', '.join(run['pairs'])}")
    if run.get("base"):
        base = run["base"]
        lines.append(
            f"- Trained on top of the encoder `{base.get('encoder')}` (its adapters "
            f"{', '.join(base.get('adapters', []))} are kept underneath)"
        )
    return lines


def _stage_row(name: str, settings: dict, stats: dict, note: str = "") -> str:
    loss = "" if stats.get("final_loss") is None else f"{stats['final_loss']:.4f}"
    return (
        f"| {name}{note} | {settings.get('steps', stats.get('steps'))} | {settings.get('batch_size', '')} | "
        f"{settings.get('max_length', '')} | {settings.get('lr', '')} | {loss} | "
        f"{stats.get('tokens_per_s', '')} | {float(stats.get('seconds', 0)) / 60:.1f} |"
    )


def _mixture_words(mixture) -> str:
    if mixture == "sqrt":
        return "batches shared by the square root of each dataset's size"
    if mixture == "size":
        return "batches shared in proportion to each dataset's size"
    return "weights " + ", ".join(f"{name} {weight:g}" for name, weight in mixture.items())


def _lora_layer_words(top: int | None, total: int | None) -> str:
    """Say "all 30 layers" when a top-N setting reaches the bottom of the model."""
    if top is None or (total is not None and top >= total):
        return f"all {total} layers" if total else "all layers"
    return f"the top {top} layers"


def _stage_setting_lines(run: dict, names: list[str]) -> list[str]:
    """The lines that only some runs have: masking, supervised settings, teacher, mixture."""
    recipe = run.get("recipe", {})
    lines: list[str] = []
    if "mntp" in names or "simcse" in names:
        lines.append(
            f"- MNTP masking {recipe.get('mask_probability')} (80/10/10); SimCSE attention dropout "
            f"{recipe.get('simcse_dropout')}, temperature {recipe.get('temperature')}"
        )
    if "supervised" in run.get("stages", []):
        sup = recipe.get("supervised", {})
        layers = recipe.get("lora_top_layers") or sup.get("lora_top_layers")
        lines.append(
            f"- Supervised: temperature {recipe.get('supervised_temperature')}, queries "
            f"{sup.get('query_max_length')} tokens after the instruction "
            f"`{recipe.get('query_instruction', '')}`, one hard negative per query, LoRA on "
            + _lora_layer_words(layers, run.get("model_layers"))
        )
    if run.get("teacher"):
        uses = (
            ["false negatives above 95 % of the positive's score dropped"]
            if run.get("teacher_filter")
            else []
        )
        if run.get("negatives_from") == "teacher":
            uses.insert(0, "hard negatives mined by it (its nearest non-answer below 95 % of the positive)")
        if run.get("distill_weight"):
            uses.append(f"its softmax distilled with weight {run['distill_weight']}")
        if run.get("correlation_weight"):
            uses.append(
                f"its scores' correlation over each batch distilled with weight {run['correlation_weight']}"
            )
        lines.append(
            f"- Teacher: `{run.get('teacher_source')}` (fingerprint `{str(run['teacher'])[:12]}`): "
            + ("; ".join(uses) or "loaded, unused")
        )
    if run.get("mixture") and run.get("pairs"):
        lines.append(f"- Dataset mixture: {_mixture_words(run['mixture'])}, one dataset per batch")
    return lines


def _results_lines(out: Path, run: dict, stages: dict, evaluation: dict) -> list[str]:
    """The per-stage table, the loss curve and the evaluation sections."""
    recipe = run.get("recipe", {})
    lines: list[str] = []
    lines += [
        "",
        "| stage | steps | batch | max tokens | lr | final loss | tokens/s | minutes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in _base_history(run):
        lines.append(_stage_row(row["stage"], row["settings"], row["stats"], " (base)"))
    for name in run.get("stages", []):
        lines.append(_stage_row(name, recipe.get(name, {}), stages.get(name, {})))
    if (out / "loss.png").is_file():
        lines += ["", "![training loss](loss.png)"]
    if evaluation:
        lines += ["", "## Evaluation", ""]
        for name, result in evaluation.items():
            lines += [
                f"### {name}",
                "",
                result.get("markdown", "```json\n" + json.dumps(result, indent=2) + "\n```"),
                "",
            ]
    return lines


def write_card(out: Path, *, command: str = "") -> Path:
    run = _read(out / RUN_FILE)
    stages = _read(out / STAGES_FILE)
    evaluation = _read(out / EVALUATION_FILE)
    recipe = run.get("recipe", {})
    base = run.get("base") or {}
    history = _base_history(run)
    # The base's adapter names carry every stage under the new one, in order ("00-mntp", ...).
    below = [re.sub(r"^\d{2}-", "", a) for a in base.get("adapters", [])] or [r["stage"] for r in history]
    names = [*below, *run.get("stages", [])]
    seconds = sum(float(s.get("seconds", 0)) for s in [*stages.values(), *(r["stats"] for r in history)])
    described = ", then ".join(_STAGE_WORDS.get(n, n) for n in names)
    lines = [
        f"# ragkit encoder: {run.get('backbone', '?')} + {' + '.join(n.upper() for n in names)}",
        "",
        f"An LLM2Vec text encoder trained with `ragkit train`: bidirectional attention, then {described}, "
        "each stage a LoRA merged into the backbone before the next. Load it with "
        '`ragkit.Encoder.from_pretrained("<this folder>")` or `--encoder <this folder>`.',
        "",
        "## Training",
        "",
        f"- Backbone: `{run.get('backbone', '?')}` (identity `{str(run.get('backbone_identity', ''))[:16]}`)"
        + ("" if run.get("layers") is None else f", pruned to its bottom {run['layers']} layers"),
        *_data_lines(run),
        f"- Recipe: `{recipe.get('name', '?')}`, seed {run.get('seed', 0)}; LoRA r={recipe.get('lora_r')}, "
        f"alpha={recipe.get('lora_alpha')}, dropout {recipe.get('lora_dropout')}, on "
        f"{', '.join(recipe.get('lora_targets', []))}; precision {run.get('precision', 'fp32')}"
        + (
            " (bf16 autocast forward passes, fp32 weights and losses)"
            if run.get("precision") == "bf16"
            else ""
        )
        + ("; forward compiled with torch.compile" if run.get("compile") else ""),
    ]
    lines += _stage_setting_lines(run, names)
    lines.append(f"- Wall time: {seconds / 60:.1f} min of training on this run's machine")
    if command:
        lines += ["", "Reproduce with:", "", "```bash", command, "```"]
    lines += _results_lines(out, run, stages, evaluation)
    path = out / "README.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path
