"""The model card (``README.md``) of a trained encoder: what it is and how to make it again."""

from __future__ import annotations

import json
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


def record_evaluation(out: Path, name: str, result: dict) -> None:
    evaluation = _read(out / EVALUATION_FILE)
    evaluation[name] = result
    (out / EVALUATION_FILE).write_text(json.dumps(evaluation, indent=2) + "\n")


def write_card(out: Path, *, command: str = "") -> Path:
    run = _read(out / RUN_FILE)
    stages = _read(out / STAGES_FILE)
    evaluation = _read(out / EVALUATION_FILE)
    recipe = run.get("recipe", {})
    stage_names = " + ".join(s.upper() for s in run.get("stages", []))
    seconds = sum(float(s.get("seconds", 0)) for s in stages.values())
    lines = [
        f"# ragkit encoder: {run.get('backbone', '?')} + {stage_names}",
        "",
        "An LLM2Vec text encoder trained with `ragkit train`: bidirectional attention, then "
        "masked next-token prediction (MNTP), then unsupervised SimCSE, each stage a LoRA "
        "merged into the backbone before the next. Load it with "
        '`ragkit.Encoder.from_pretrained("<this folder>")` or `--encoder <this folder>`.',
        "",
        "## Training",
        "",
        f"- Backbone: `{run.get('backbone', '?')}` (identity `{str(run.get('backbone_identity', ''))[:16]}`)",
        f"- Data: {run.get('corpus', '?')}, {run.get('corpus_passages', 0):,} passages",
        f"- Recipe: `{recipe.get('name', '?')}`, seed {run.get('seed', 0)}; LoRA r={recipe.get('lora_r')}, "
        f"alpha={recipe.get('lora_alpha')}, dropout {recipe.get('lora_dropout')}, on "
        f"{', '.join(recipe.get('lora_targets', []))} of "
        + (
            "all layers"
            if recipe.get("lora_top_layers") is None
            else f"the top {recipe['lora_top_layers']} layers"
        ),
        f"- MNTP masking {recipe.get('mask_probability')} (80/10/10); SimCSE attention dropout "
        f"{recipe.get('simcse_dropout')}, temperature {recipe.get('temperature')}",
        f"- Wall time: {seconds / 60:.1f} min of training",
    ]
    if command:
        lines += ["", "Reproduce with:", "", "```bash", command, "```"]
    lines += [
        "",
        "| stage | steps | batch | max tokens | lr | final loss | tokens/s | minutes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in run.get("stages", []):
        settings, stats = recipe.get(name, {}), stages.get(name, {})
        loss = "" if stats.get("final_loss") is None else f"{stats['final_loss']:.4f}"
        lines.append(
            f"| {name} | {settings.get('steps')} | {settings.get('batch_size')} | "
            f"{settings.get('max_length')} | {settings.get('lr')} | {loss} | "
            f"{stats.get('tokens_per_s', '')} | {float(stats.get('seconds', 0)) / 60:.1f} |"
        )
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
    path = out / "README.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path
