"""The three training objectives (MNTP, SimCSE, supervised), as modules whose ``forward``
returns the loss.

Wrapping each objective in an ``nn.Module`` is what lets ``accelerate`` (DDP) see one forward
call per step, so gradient synchronisation works the same on one process or many. Only the
transformer runs inside ``autocast`` (bf16 training); pooling, scores and losses are fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ragkit.encoder.pooling import pool
from ragkit.trainer.masking import IGNORE_INDEX


def shifted_targets(hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair each masked token *i* with the hidden state at *i-1* (the causal LM's shift)."""
    source = hidden[:, :-1]
    target = labels[:, 1:]
    selected = target != IGNORE_INDEX
    return source[selected], target[selected]


class MNTPObjective(nn.Module):
    """Masked next-token prediction with the model's own LM head.

    Logits are computed only at masked positions: with Gemma's 262k vocabulary, full logits
    for every position would cost more than the whole transformer.
    """

    def __init__(
        self,
        causal_lm: nn.Module,
        *,
        autocast: Callable = contextlib.nullcontext,
        decoder: nn.Module | None = None,
    ):
        """``decoder``: what runs the transformer (the causal LM's own decoder, or a compiled
        wrapper of it); the LM head always comes from ``causal_lm``."""
        super().__init__()
        self.causal_lm = causal_lm
        self.autocast = autocast
        self.decoder = decoder

    def forward(self, input_ids, attention_mask, labels) -> torch.Tensor:
        base = (
            self.causal_lm.get_base_model() if hasattr(self.causal_lm, "get_base_model") else self.causal_lm
        )
        decoder = self.decoder if self.decoder is not None else base.get_decoder()
        with self.autocast():
            hidden = decoder(
                input_ids=input_ids, attention_mask=attention_mask, use_cache=False
            ).last_hidden_state
            source, target = shifted_targets(hidden, labels)
            logits = base.get_output_embeddings()(source)
        softcap = getattr(base.config, "final_logit_softcapping", None)
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return F.cross_entropy(logits.float(), target)


def info_nce(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCSE's loss: row *i* of ``first`` must pick row *i* of ``second`` among the batch."""
    scores = similarity(first, second, temperature)
    return F.cross_entropy(scores, torch.arange(len(first), device=scores.device))


def similarity(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cosine similarities divided by the temperature, in float32."""
    first = F.normalize(first.float(), dim=-1)
    second = F.normalize(second.float(), dim=-1)
    return first @ second.T / temperature


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every process's rows, keeping gradients to each (identity on one process).

    Every process must contribute the same number of rows (callers pad to a common count).
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    return _GatherRows.apply(tensor)


class _GatherRows(torch.autograd.Function):
    """All-gather whose backward sums every process's gradient for each process's own rows.

    Built from ``all_gather`` and ``all_reduce`` alone, which every backend (gloo, NCCL) has.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rank, ctx.rows = dist.get_rank(), len(tensor)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        total = grad.contiguous().clone()
        dist.all_reduce(total)
        start = ctx.rank * ctx.rows
        return total[start : start + ctx.rows]


def distillation_kl(student: torch.Tensor, teacher: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """KL(teacher ‖ student) between softmaxes over each query's allowed candidates, averaged
    over queries. ``student`` and ``teacher`` are logits ``[queries, candidates]``;
    ``allowed`` is True where a candidate takes part (its positive, in-batch passages, hard
    negatives), False for padding and false negatives."""
    floor = torch.finfo(torch.float32).min
    student = student.float().masked_fill(~allowed, floor)
    teacher = teacher.float().masked_fill(~allowed, floor)
    log_student = F.log_softmax(student, dim=-1)
    log_teacher = F.log_softmax(teacher, dim=-1)
    terms = torch.where(allowed, log_teacher.exp() * (log_teacher - log_student), 0.0)
    return terms.sum(-1).mean()


def correlation_distillation(
    student: torch.Tensor, teacher: torch.Tensor, allowed: torch.Tensor
) -> torch.Tensor:
    """1 - Pearson correlation between the student's and the teacher's scores over every allowed
    query-candidate pair of the batch, all queries pooled.

    The KL term cannot see how one query's scores compare with another's (a softmax ignores a
    shift of its row); similarity tasks (STS) compare scores across unrelated pairs, so this
    term asks the student's scores to rise and fall with the teacher's over the whole matrix.
    It ignores any affine map between the two scales, so the teacher's temperature and cosine
    range do not matter. Zero when fewer than two pairs take part or either side is constant.
    """
    student = student.float()[allowed]
    teacher = teacher.float()[allowed]
    if student.numel() < 2:
        return student.sum() * 0.0
    student = student - student.mean()
    teacher = teacher - teacher.mean()
    denominator = student.norm() * teacher.norm()
    if float(denominator.detach()) == 0.0:
        return student.sum() * 0.0
    return 1.0 - (student * teacher).sum() / denominator


class SimCSEObjective(nn.Module):
    """Unsupervised SimCSE: the same batch twice through dropout; the views are positives."""

    def __init__(
        self,
        encoder_model: nn.Module,
        *,
        pooling: str = "mean",
        temperature: float = 0.05,
        autocast: Callable = contextlib.nullcontext,
    ):
        super().__init__()
        self.encoder_model = encoder_model
        self.pooling = pooling
        self.temperature = temperature
        self.autocast = autocast

    def embed(self, input_ids, attention_mask) -> torch.Tensor:
        with self.autocast():
            hidden = self.encoder_model(
                input_ids=input_ids, attention_mask=attention_mask, use_cache=False
            ).last_hidden_state
        return pool(hidden, attention_mask, self.pooling)

    def forward(self, input_ids, attention_mask) -> torch.Tensor:
        first = self.embed(input_ids, attention_mask)
        second = self.embed(input_ids, attention_mask)
        return info_nce(first, second, self.temperature)


class SupervisedObjective(nn.Module):
    """LLM2Vec's supervised stage: InfoNCE over in-batch and hard negatives, plus optional
    distillation terms towards a teacher's scores over the same candidates (a KL term per
    query; a correlation term over the whole score matrix).

    Query *i* must pick its positive among every positive and every hard negative of the
    (global) batch. Pooling runs over each row's pool mask, so a query's instruction is
    attended to but never pooled, whichever side the batch is padded on. ``gather`` joins the
    passages of every process (identity on one), so each query meets all of them.

    ``chunk_size`` bounds memory by texts rather than by the batch (GradCache's idea): each
    chunk is embedded without keeping its activations and recomputed, with the same dropout
    draws, when the loss's gradient reaches its vectors. The loss still sees the whole batch,
    so the gradient is its exact gradient (without dropout, the unchunked step's); the price is
    a second forward pass.
    """

    def __init__(
        self,
        encoder_model: nn.Module,
        *,
        pooling: str = "mean",
        temperature: float = 0.05,
        autocast: Callable = contextlib.nullcontext,
        distill_weight: float = 0.0,
        correlation_weight: float = 0.0,
        gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
        chunk_size: int | None = None,
    ):
        super().__init__()
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.encoder_model = encoder_model
        self.pooling = pooling
        self.temperature = temperature
        self.autocast = autocast
        self.distill_weight = distill_weight
        self.correlation_weight = correlation_weight
        self.gather = gather
        self.chunk_size = chunk_size

    def embed(self, input_ids, attention_mask, pool_mask, position_ids=None) -> torch.Tensor:
        size = self.chunk_size
        if size is None or len(input_ids) <= size or not torch.is_grad_enabled():
            return self._embed(input_ids, attention_mask, pool_mask, position_ids)
        from torch.utils.checkpoint import checkpoint

        parts = []
        for start in range(0, len(input_ids), size):
            rows = slice(start, start + size)
            positions = None if position_ids is None else position_ids[rows]
            parts.append(
                checkpoint(
                    self._embed,
                    input_ids[rows],
                    attention_mask[rows],
                    pool_mask[rows],
                    positions,
                    use_reentrant=False,
                )
            )
        return torch.cat(parts)

    def _embed(self, input_ids, attention_mask, pool_mask, position_ids=None) -> torch.Tensor:
        with self.autocast():
            hidden = self.encoder_model(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
            ).last_hidden_state
        return pool(hidden, pool_mask, self.pooling)

    def forward(
        self,
        queries: dict,
        passages: dict,
        targets: torch.Tensor | None = None,
        allowed: torch.Tensor | None = None,
        teacher: torch.Tensor | None = None,
        pad_to: int | None = None,
    ) -> torch.Tensor:
        """``targets[i]``: the column of query *i*'s positive among the (gathered) passages
        (default: row *i*, positives first); ``allowed``: ``[queries, passages]``, False for
        candidates left out of the softmax; ``teacher``: the teacher's logits, same shape;
        ``pad_to``: rows each process contributes (zeros after its own passages)."""
        first = self.embed(**queries)
        second = self.embed(**passages)
        if pad_to is not None and pad_to > len(second):
            second = F.pad(second, (0, 0, 0, pad_to - len(second)))
        if self.gather is not None:
            second = self.gather(second)
        scores = similarity(first, second, self.temperature)
        if targets is None:
            targets = torch.arange(len(first), device=scores.device)
        mask = allowed if allowed is not None else torch.ones_like(scores, dtype=torch.bool)
        loss = F.cross_entropy(scores.masked_fill(~mask, torch.finfo(scores.dtype).min), targets)
        if teacher is not None and self.distill_weight > 0:
            loss = loss + self.distill_weight * distillation_kl(scores, teacher, mask)
        if teacher is not None and self.correlation_weight > 0:
            loss = loss + self.correlation_weight * correlation_distillation(scores, teacher, mask)
        return loss
