"""What each optimizer step trains on: seeded batch orders and the batches of every stage.

Every draw is a function of (seed, stage, step, rank), so a resumed run sees the batches an
uninterrupted one would."""

from __future__ import annotations

from ragkit.encoder.inputs import InputBuilder, collate
from ragkit.errors import RagkitError
from ragkit.trainer.corpus import sentence_views
from ragkit.trainer.masking import MaskingScheme, mask_token_id, mask_tokens
from ragkit.trainer.options import TrainOptions
from ragkit.trainer.pairs import PairBatches, PairSet
from ragkit.trainer.recipe import STAGES


def step_seed(seed: int, stage: str, step: int, rank: int) -> int:
    return (seed * 1_000_003 + STAGES.index(stage) * 10_007 + step) * 64 + rank


class BatchOrder:
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


class UnlabelledSteps:
    """Batches of MNTP (masked) or SimCSE (two dropout views) from plain passages."""

    def __init__(self, stage: str, tokenizer, causal_lm, passages: list[str], options: TrainOptions):
        recipe = options.recipe
        settings = recipe.stage(stage)
        self.stage, self.seed = stage, options.seed
        self.inputs = InputBuilder(tokenizer, settings.max_length)
        if stage == "simcse" and recipe.simcse_views == "sentences":
            passages = sentence_views(passages)
        self.encoded = self.inputs.build(passages)
        self.order = BatchOrder(len(self.encoded), settings.batch_size, options.seed + STAGES.index(stage))
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
        generator = torch.Generator().manual_seed(step_seed(self.seed, self.stage, step, rank))
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


class PairSteps:
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
