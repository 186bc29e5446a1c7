"""``ragkit train``: MNTP, SimCSE and the supervised stage with LoRA, into a ragkit encoder folder."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from ragkit.cli.console import err, safe
from ragkit.cli.options import DeviceOption

BackboneOption = Annotated[
    str,
    typer.Option(
        help="What to train: a decoder (smollm2-135m, gemma3-270m, a Hugging Face id org/name, a "
        "local model folder), or a saved ragkit encoder ('default' or a folder) whose adapters "
        "stay underneath the new stages."
    ),
]
CorpusOption = Annotated[
    str | None,
    typer.Option(
        help="Training text: a folder of documents (.md .txt .rst .html), a .txt file (one "
        "passage per line) or a .jsonl file with a 'text' field (and optional 'title'). Default: "
        "the packaged English Wikipedia summaries. Without --pairs, the supervised stage "
        "trains on its titles and headings as queries for their text."
    ),
]
StagesOption = Annotated[
    str,
    typer.Option(
        help="Stages to run, in order, from mntp, simcse and supervised (e.g. mntp,supervised; "
        "supervised alone on top of --backbone default)."
    ),
]
PairsOption = Annotated[
    list[str] | None,
    typer.Option(
        help="Supervised stage data, repeatable: JSON lines (plain or .gz) with 'query', "
        "'positive', optional 'negative' (string or list), 'instruction' ('' for none), "
        "'group'. Each file is one dataset; every batch comes from one dataset."
    ),
]
MineNegativesOption = Annotated[
    bool,
    typer.Option(
        help="Give pairs without a negative a hard one: another passage of the same 'group', "
        "else the best BM25 match among the dataset's passages that is not the positive "
        "(or the teacher's choice, with --negatives-from teacher)."
    ),
]
NegativesFromOption = Annotated[
    str,
    typer.Option(
        help="Who mines the hard negatives: bm25 (the best BM25 match, every row, cached) or "
        "teacher (needs --teacher: for each row the run will draw, the teacher's nearest passage "
        "among 8,192 of its dataset's that is not an answer and scores below 95% of the positive).",
    ),
]
RecipeOption = Annotated[
    str,
    typer.Option(help="'quick' (about 35 min on a 2-core CPU) or 'paper' (LLM2Vec's settings, for GPUs)."),
]
StepsOption = Annotated[int | None, typer.Option(help="Optimizer steps per stage (overrides the recipe).")]
BatchSizeOption = Annotated[int | None, typer.Option(help="Passages per step, over all processes.")]
MaxLengthOption = Annotated[int | None, typer.Option(help="Tokens per passage during training.")]
LrOption = Annotated[float | None, typer.Option(help="Peak learning rate (linear warm-up and decay).")]
LoraLayersOption = Annotated[
    int | None, typer.Option(help="Put LoRA on the top N layers only (cheaper); default: the recipe's.")
]
LayersOption = Annotated[
    int | None,
    typer.Option(
        help="Prune: keep the backbone's bottom N layers and drop the rest before training "
        "(SmolLM2-135M has 30). Fewer layers encode proportionally faster; a supervised stage "
        "after the cut recovers part of the quality (EVAL.md). Default: all layers (or the "
        "--backbone encoder's)."
    ),
]
UseEvalSectionsOption = Annotated[
    bool,
    typer.Option(
        "--use-eval-sections",
        help="With a folder --corpus, also train on the sections that `ragkit eval FOLDER` "
        "tests on (left out by default, so that evaluation stays honest).",
    ),
]
CheckpointEveryOption = Annotated[int | None, typer.Option(help="Write a checkpoint every N steps.")]
SeedOption = Annotated[int, typer.Option(help="Seed for data order, masking and dropout.")]
OutOption = Annotated[Path, typer.Option("--out", "-o", help="Output folder: the trained encoder.")]
ResumeOption = Annotated[
    bool, typer.Option("--resume", help="Continue an interrupted run in --out from its last checkpoint.")
]
GradientCheckpointingOption = Annotated[
    bool,
    typer.Option("--gradient-checkpointing", help="Trade compute for memory (long sequences on GPUs)."),
]
ChunkSizeOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Supervised stage: embed N texts at a time without keeping their activations and "
        "recompute them when the loss's gradient arrives (GradCache-style), so memory follows N "
        "rather than --batch-size. The loss still sees the whole batch; costs one more forward pass.",
    ),
]
PrecisionOption = Annotated[
    str,
    typer.Option(
        help="auto, fp32 or bf16. bf16 runs forward passes under autocast (weights, optimizer "
        "and losses stay fp32): 1.4-2.9x faster on CPUs with AMX or AVX512-BF16, and on GPUs. auto: "
        "bf16 where the hardware has native bf16, fp32 elsewhere. A --resume keeps the precision.",
    ),
]
MixtureOption = Annotated[
    str,
    typer.Option(
        help="How batches are shared among --pairs datasets: sqrt (by the square root of each "
        "dataset's size), size (proportional), or weights such as squad=3,qed=1,medquad=1.",
    ),
]
TeacherOption = Annotated[
    str | None,
    typer.Option(
        help="Supervised stage: an encoder ('default', a ragkit encoder folder, a model folder or "
        "a sentence-transformers folder such as all-MiniLM-L6-v2) whose scores drop false "
        "negatives and, with --distill-weight, are distilled. Its vectors are cached on disk.",
    ),
]
TeacherFilterOption = Annotated[
    bool,
    typer.Option(
        help="With --teacher: leave out of the softmax a negative the teacher scores above 95% "
        "of the query's positive (a likely unlabelled answer)."
    ),
]
DistillWeightOption = Annotated[
    float,
    typer.Option(
        min=0.0,
        help="With --teacher: weight of a KL term between the teacher's and the student's "
        "softmax over each query's candidates, added to InfoNCE (0: no distillation).",
    ),
]
CorrelationWeightOption = Annotated[
    float,
    typer.Option(
        min=0.0,
        help="With --teacher: weight of a term 1 - Pearson correlation between the teacher's and "
        "the student's scores over every query-candidate pair of a batch, added to InfoNCE. It "
        "makes scores comparable across queries (what STS measures), which the per-query KL "
        "term cannot (0: off).",
    ),
]
CompileOption = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="Compile the transformer's forward with torch.compile: fused kernels, about 1.5x "
        "faster steps in bf16 on a 2-core CPU with AMX. Each stage's first step spends minutes "
        "compiling (on the CPU it needs g++ or $CXX), so it pays on runs of more than a few dozen steps.",
    ),
]
LoraDropoutOption = Annotated[
    float | None,
    typer.Option(
        help="Dropout on each LoRA's input (the recipe's 0.05 by default). 0 skips the dropout "
        "masks and the copy of every adapted layer's input: about 1.3x faster CPU steps.",
    ),
]
AdapterDtypeOption = Annotated[
    str, typer.Option(help="How LoRA weights are stored: float16, bfloat16 or float32.")
]


def train_command(
    backbone: BackboneOption = "smollm2-135m",
    corpus: CorpusOption = None,
    stages: StagesOption = "mntp,simcse",
    pairs: PairsOption = None,
    mine_negatives: MineNegativesOption = True,
    negatives_from: NegativesFromOption = "bm25",
    recipe: RecipeOption = "quick",
    steps: StepsOption = None,
    batch_size: BatchSizeOption = None,
    max_length: MaxLengthOption = None,
    lr: LrOption = None,
    lora_layers: LoraLayersOption = None,
    lora_dropout: LoraDropoutOption = None,
    layers: LayersOption = None,
    use_eval_sections: UseEvalSectionsOption = False,
    checkpoint_every: CheckpointEveryOption = None,
    seed: SeedOption = 0,
    out: OutOption = Path("ragkit-encoder"),
    resume: ResumeOption = False,
    gradient_checkpointing: GradientCheckpointingOption = False,
    chunk_size: ChunkSizeOption = None,
    compile_: CompileOption = False,
    adapter_dtype: AdapterDtypeOption = "float16",
    device: DeviceOption = None,
    precision: PrecisionOption = "auto",
    mixture: MixtureOption = "sqrt",
    teacher: TeacherOption = None,
    teacher_filter: TeacherFilterOption = True,
    distill_weight: DistillWeightOption = 0.0,
    correlation_weight: CorrelationWeightOption = 0.0,
) -> None:
    """Train an LLM2Vec encoder: bidirectional attention, MNTP, then SimCSE and/or supervised.

    The supervised stage is LLM2Vec's contrastive training on query-passage pairs (--pairs),
    with in-batch and hard negatives and the query instruction stored in the encoder. Each
    stage trains a LoRA (r=16 on attention and MLP projections) that is merged before the
    next. The output folder is a ragkit encoder: use it with `--encoder OUT` in `ragkit eval`,
    `index` and `ask`. Checkpoints are written as it goes; `--resume` continues after a crash.
    Runs unchanged under `accelerate launch --num_processes N -m ragkit train ...` (DDP).

    Examples: `ragkit train --recipe quick --out my-encoder`;
    `ragkit train --backbone default --stages supervised --pairs pairs.jsonl.gz --out tuned`
    """
    from ragkit.trainer.loop import TrainOptions, train
    from ragkit.trainer.pairs import parse_mixture
    from ragkit.trainer.recipe import get_recipe, parse_stages

    _check_flags(precision, adapter_dtype, teacher, distill_weight, correlation_weight)
    sizes = {"steps": steps, "batch_size": batch_size, "max_length": max_length, "lr": lr}
    lora = {"lora_top_layers": lora_layers, "lora_dropout": lora_dropout}
    chosen = get_recipe(recipe).with_overrides(**sizes, **lora, checkpoint_every=checkpoint_every)
    options = TrainOptions(
        out=out,
        backbone=backbone,
        corpus=corpus,
        stages=parse_stages(stages),
        pairs=list(pairs or []),
        mine_negatives=mine_negatives,
        negatives_from=negatives_from,
        layers=layers,
        use_eval_sections=use_eval_sections,
        recipe=chosen,
        seed=seed,
        resume=resume,
        device=device,
        gradient_checkpointing=gradient_checkpointing,
        chunk_size=chunk_size,
        compile=compile_,
        adapter_dtype=adapter_dtype,
        precision=precision,
        mixture=parse_mixture(mixture),
        teacher=teacher,
        teacher_filter=teacher_filter,
        distill_weight=distill_weight,
        correlation_weight=correlation_weight,
        command="ragkit train " + shlex.join(a for a in sys.argv[2:] if a != "--resume"),
    )
    result = train(options)
    _summary(result)


def _check_flags(
    precision: str, adapter_dtype: str, teacher: str | None, distill_weight: float, correlation_weight: float
) -> None:
    """Refuse flag values and combinations before anything loads."""
    from ragkit.errors import InvalidInputError
    from ragkit.trainer.precision import PRECISIONS

    if precision not in PRECISIONS:
        raise InvalidInputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if distill_weight and not teacher:
        raise InvalidInputError("--distill-weight needs a --teacher")
    if correlation_weight and not teacher:
        raise InvalidInputError("--correlation-weight needs a --teacher")
    if adapter_dtype not in ("float16", "bfloat16", "float32"):
        raise InvalidInputError("--adapter-dtype must be float16, bfloat16 or float32")


def _summary(result) -> None:
    from rich.table import Table

    table = Table(title=f"trained encoder → {safe(result.out)}", title_justify="left")
    for column in ("stage", "steps", "final loss", "tokens/s", "minutes"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    for stage, stats in result.stages.items():
        loss = stats.get("final_loss")
        table.add_row(
            stage,
            str(stats.get("steps", "")),
            "" if loss is None else f"{loss:.4f}",
            str(stats.get("tokens_per_s", "")),
            f"{float(stats.get('seconds', 0)) / 60:.1f}" if "seconds" in stats else "(done earlier)",
        )
    err.print(table)
    err.print(
        f"use it with: [bold]--encoder {safe(result.out)}[/]  (model card: {safe(result.out / 'README.md')})"
    )
