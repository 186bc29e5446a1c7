"""The two training objectives, as modules whose ``forward`` returns the loss.

Wrapping each objective in an ``nn.Module`` is what lets ``accelerate`` (DDP) see one forward
call per step, so gradient synchronisation works the same on one process or many.
"""

from __future__ import annotations

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

    def __init__(self, causal_lm: nn.Module):
        super().__init__()
        self.causal_lm = causal_lm

    def forward(self, input_ids, attention_mask, labels) -> torch.Tensor:
        base = (
            self.causal_lm.get_base_model() if hasattr(self.causal_lm, "get_base_model") else self.causal_lm
        )
        hidden = base.get_decoder()(
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
    first = F.normalize(first.float(), dim=-1)
    second = F.normalize(second.float(), dim=-1)
    scores = first @ second.T / temperature
    return F.cross_entropy(scores, torch.arange(len(first), device=scores.device))


class SimCSEObjective(nn.Module):
    """Unsupervised SimCSE: the same batch twice through dropout; the views are positives."""

    def __init__(self, encoder_model: nn.Module, *, pooling: str = "mean", temperature: float = 0.05):
        super().__init__()
        self.encoder_model = encoder_model
        self.pooling = pooling
        self.temperature = temperature

    def embed(self, input_ids, attention_mask) -> torch.Tensor:
        hidden = self.encoder_model(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state
        return pool(hidden, attention_mask, self.pooling)

    def forward(self, input_ids, attention_mask) -> torch.Tensor:
        first = self.embed(input_ids, attention_mask)
        second = self.embed(input_ids, attention_mask)
        return info_nce(first, second, self.temperature)


class SupervisedObjective(nn.Module):
    """LLM2Vec's supervised stage: InfoNCE over in-batch and hard negatives.

    Query *i* must pick passage *i* among every positive and every hard negative of the batch.
    Pooling runs over each row's pool mask, so a query's instruction is attended to but never
    pooled, whichever side the batch is padded on.
    """

    def __init__(self, encoder_model: nn.Module, *, pooling: str = "mean", temperature: float = 0.05):
        super().__init__()
        self.encoder_model = encoder_model
        self.pooling = pooling
        self.temperature = temperature

    def embed(self, input_ids, attention_mask, pool_mask, position_ids=None) -> torch.Tensor:
        hidden = self.encoder_model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        return pool(hidden, pool_mask, self.pooling)

    def forward(self, queries: dict, passages: dict) -> torch.Tensor:
        """``passages`` holds the batch's positives first (row *i* answers query *i*), then negatives."""
        first = self.embed(**queries)
        second = self.embed(**passages)
        return info_nce(first, second, self.temperature)
