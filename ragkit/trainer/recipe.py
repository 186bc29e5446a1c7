"""Hyperparameters: the paper's recipe for GPUs and a CPU-sized one that still shows the effect.

Every command-line flag overrides the recipe it starts from, so a recipe is a named set of
defaults, never a constraint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from ragkit.errors import InvalidInputError

STAGES = ("mntp", "simcse", "supervised")
DEFAULT_QUERY_INSTRUCTION = "Given a question, retrieve passages that answer it: "
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class StageRecipe:
    """One stage's optimisation settings."""

    steps: int
    batch_size: int
    max_length: int
    lr: float
    warmup_steps: int = 0
    query_max_length: int | None = None
    """Supervised stage only: tokens per query (instruction included); passages get ``max_length``."""
    lora_top_layers: int | None = None
    """LoRA on this stage's top N layers only, unless the recipe sets it for every stage."""


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a training run besides the data and the seed."""

    name: str
    mntp: StageRecipe
    simcse: StageRecipe
    supervised: StageRecipe
    mask_probability: float = 0.2
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    lora_top_layers: int | None = None
    """Put LoRA on the top N layers only (None: all). Gradients then stop at the lowest
    adapted layer, which makes a CPU step much cheaper."""
    simcse_dropout: float = 0.3
    simcse_hidden_dropout: float = 0.0
    """Dropout on each attention and MLP block's output (BERT's hidden dropout). Llama-style
    models have attention dropout only, which leaves two SimCSE views too alike to learn from."""
    simcse_views: str = "sentences"
    """``sentences``: SimCSE trains on single sentences cut from the passages, as SimCSE and
    LLM2Vec do (Wikipedia sentences); ``passages``: on each passage's first ``max_length``
    tokens."""
    temperature: float = 0.05
    supervised_temperature: float = 0.05
    """LLM2Vec uses 0.02 (scale 50) with batches of 512; small batches train better at 0.05."""
    query_instruction: str = DEFAULT_QUERY_INSTRUCTION
    """Put before every training query that has no instruction of its own; stored in the
    encoder's config, so search uses the instruction the encoder was trained with."""
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    checkpoint_every: int = 50

    def stage(self, name: str) -> StageRecipe:
        return getattr(self, name)

    def top_layers(self, name: str) -> int | None:
        return self.lora_top_layers if self.lora_top_layers is not None else self.stage(name).lora_top_layers

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(
        self,
        *,
        steps: int | None = None,
        batch_size: int | None = None,
        max_length: int | None = None,
        lr: float | None = None,
        checkpoint_every: int | None = None,
        lora_top_layers: int | None = None,
        lora_dropout: float | None = None,
    ) -> Recipe:
        """Apply command-line values to every stage; checks them so typos fail before loading."""
        for flag, value in (("steps", steps), ("batch-size", batch_size), ("max-length", max_length)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InvalidInputError(f"--{flag} must be a positive integer, got {value!r}")
        if batch_size is not None and batch_size < 2:
            raise InvalidInputError("--batch-size must be at least 2 (SimCSE needs in-batch negatives)")
        if lr is not None and not (0 < lr < 1):
            raise InvalidInputError(f"--lr must be between 0 and 1, got {lr!r}")
        if checkpoint_every is not None and checkpoint_every < 1:
            raise InvalidInputError("--checkpoint-every must be a positive integer")
        if lora_top_layers is not None and lora_top_layers < 1:
            raise InvalidInputError("--lora-layers must be a positive integer")
        if lora_dropout is not None and not (0 <= lora_dropout < 1):
            raise InvalidInputError(f"--lora-dropout must be at least 0 and below 1, got {lora_dropout!r}")
        changes = {
            k: v
            for k, v in {"steps": steps, "batch_size": batch_size, "max_length": max_length, "lr": lr}.items()
        }
        changes = {k: v for k, v in changes.items() if v is not None}
        recipe = replace(self, **{name: replace(self.stage(name), **changes) for name in STAGES})
        if checkpoint_every is not None:
            recipe = replace(recipe, checkpoint_every=checkpoint_every)
        if lora_top_layers is not None:
            recipe = replace(recipe, lora_top_layers=lora_top_layers)
        if lora_dropout is not None:
            recipe = replace(recipe, lora_dropout=lora_dropout)
        return recipe


RECIPES: dict[str, Recipe] = {
    # LLM2Vec's published settings (arXiv 2404.05961, appendix): MNTP 1000 steps, batch 32,
    # 512 tokens, lr 5e-5; SimCSE 1000 steps, batch 128, 128 tokens, lr 3e-5.
    "paper": Recipe(
        name="paper",
        mntp=StageRecipe(steps=1000, batch_size=32, max_length=512, lr=5e-5, warmup_steps=0),
        simcse=StageRecipe(steps=1000, batch_size=128, max_length=128, lr=3e-5, warmup_steps=0),
        # llm2vec train_configs/supervised: batch 64 per GPU x 8, 512 tokens, 300 warm-up steps.
        supervised=StageRecipe(steps=1000, batch_size=512, max_length=512, lr=2e-4, warmup_steps=300),
        supervised_temperature=0.02,
        simcse_hidden_dropout=0.0,
        checkpoint_every=100,
    ),
    # Sized for a small CPU (SmolLM2-135M, BENCHMARKS.md): far fewer steps at a higher
    # learning rate; SimCSE on the first 32 tokens of each passage with 32 in-batch
    # negatives. MNTP gets 150 steps: bi + MNTP scores 0.338 on STS-B after 150 against 0.214
    # after 70 (EVAL.md). Sentence views with hidden dropout 0.1 score lower on STS-B
    # (EVAL.md), so they are not the default.
    "quick": Recipe(
        name="quick",
        mntp=StageRecipe(steps=150, batch_size=8, max_length=128, lr=2e-4, warmup_steps=5),
        simcse=StageRecipe(steps=90, batch_size=32, max_length=32, lr=2e-4, warmup_steps=5),
        # Short queries and passages, LoRA on the top 10 of 30 layers (gradients stop there):
        # a step of 16 pairs with one hard negative each costs seconds rather than a minute.
        supervised=StageRecipe(
            steps=200,
            batch_size=16,
            max_length=112,
            lr=2e-4,
            warmup_steps=10,
            query_max_length=48,
            lora_top_layers=10,
        ),
        simcse_views="passages",
        checkpoint_every=10,
    ),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise InvalidInputError(f"unknown recipe '{name}'; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


def parse_stages(spec: str) -> list[str]:
    """``"mntp,simcse"`` → ordered, validated stage names."""
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    if not names:
        raise InvalidInputError("--stages is empty; use e.g. mntp,simcse or mntp,supervised")
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise InvalidInputError(f"unknown stage '{unknown[0]}'; choose from {', '.join(STAGES)}")
    if len(set(names)) != len(names):
        raise InvalidInputError("--stages names a stage twice")
    return sorted(names, key=STAGES.index)


def learning_rate(stage: StageRecipe, step: int) -> float:
    """Linear warm-up then linear decay to zero, as a function of the step (no state to save)."""
    if stage.warmup_steps and step < stage.warmup_steps:
        return stage.lr * (step + 1) / stage.warmup_steps
    remaining = max(stage.steps - step, 0)
    return stage.lr * remaining / max(stage.steps - stage.warmup_steps, 1)
