"""What ``ragkit train`` is asked to do, and what it reports back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ragkit.encoder.packaged import DEFAULT_BACKBONE
from ragkit.trainer.recipe import RECIPES, Recipe


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
    negatives_from: str = "bm25"
    """Who mines hard negatives: ``bm25`` (every row) or ``teacher`` (the rows the run draws)."""
    layers: int | None = None
    """Keep the bottom N layers before the first stage (None: as the start has them)."""
    use_eval_sections: bool = False
    """Train on a folder's sections that ``ragkit eval FOLDER`` holds out (off: left out)."""
    seed: int = 0
    resume: bool = False
    device: str | None = None
    gradient_checkpointing: bool = False
    chunk_size: int | None = None
    """Supervised stage: texts embedded at a time, recomputed in the backward pass (None: all)."""
    compile: bool = False
    """Compile the transformer's forward (fused kernels; minutes of compiling in the first step)."""
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
    """Weight of the per-query KL term towards the teacher's softmax."""
    correlation_weight: float = 0.0
    """Weight of the term 1 - Pearson correlation with the teacher's scores over a whole batch."""


@dataclass
class TrainResult:
    out: Path
    stages: dict[str, dict]
    wall_seconds: float
    resumed: bool
