"""A LoRA cut to a lower rank: the best approximation of each module's weight change.

A soup of n runs stacks their ranks, so its adapter grows n-fold although the runs' weight
changes overlap. For each adapted module the product ``B @ A`` is factored through thin QR
decompositions and a small SVD (never forming the full matrix), and the top singular
directions are kept: by Eckart-Young no other LoRA of that rank is closer in Frobenius norm.
``lora_alpha`` is scaled with the rank so ``alpha / r``, and hence the merged change, keeps its
scale.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from ragkit.encoder.adapters import Adapter
from ragkit.encoder.plain_lora import LORA_A, LORA_B, require_plain_lora
from ragkit.errors import EncoderFormatError


@dataclass(frozen=True)
class RankCut:
    """A cut adapter and, per module, the share of its weight change's energy it keeps."""

    adapter: Adapter
    kept_energy: dict[str, float]


def cut_rank(adapter: Adapter, rank: int) -> RankCut:
    """``adapter`` at rank ``rank`` (at most its own), each module's change truncated by SVD."""
    old_rank = int(adapter.config["r"])
    if not 1 <= rank <= old_rank:
        raise EncoderFormatError(f"rank must be between 1 and the adapter's rank {old_rank}, not {rank}")
    modules = require_plain_lora(adapter, "cut")
    tensors: dict = {}
    kept: dict[str, float] = {}
    for module in modules:
        down, up = adapter.tensors[module + LORA_A], adapter.tensors[module + LORA_B]
        if rank > min(down.shape[1], up.shape[0]):
            raise EncoderFormatError(
                f"rank {rank} exceeds the size of {module.rstrip('.')} ({up.shape[0]} x {down.shape[1]})"
            )
        down, up, share = _truncate(down, up, rank)
        tensors[module + LORA_A], tensors[module + LORA_B] = down, up
        kept[module.rstrip(".")] = share
    config = dict(adapter.config)
    config["r"] = rank
    config["lora_alpha"] = _alpha(adapter.config["lora_alpha"], rank, old_rank)
    return RankCut(Adapter(adapter.name, config, tensors), kept)


def _truncate(down, up, rank: int) -> tuple:
    """Factors ``up @ down`` = Q_b (R_b R_a^T) Q_a^T and keeps the core's top ``rank`` directions."""
    import torch

    dtype = down.dtype
    q_up, r_up = torch.linalg.qr(up.double())
    q_down, r_down = torch.linalg.qr(down.double().T)
    left, values, right_t = torch.linalg.svd(r_up @ r_down.T, full_matrices=False)
    total = float((values**2).sum())
    share = float((values[:rank] ** 2).sum()) / total if total > 0 else 1.0
    root = values[:rank].sqrt()
    new_up = (q_up @ left[:, :rank]) * root
    new_down = root[:, None] * (right_t[:rank] @ q_down.T)
    return new_down.to(dtype).contiguous(), new_up.to(dtype).contiguous(), share


def _alpha(alpha, rank: int, old_rank: int):
    """The alpha that keeps ``alpha / r``; an integer where the ratio allows one."""
    value = alpha * rank / old_rank
    return int(value) if float(value).is_integer() else value


def energy_summary(cut: RankCut) -> dict[str, float]:
    """The least and the median share of weight-change energy the cut keeps over its modules."""
    shares = list(cut.kept_energy.values())
    return {"kept_energy_min": min(shares), "kept_energy_median": statistics.median(shares)}
