"""Pooling token states into one vector, over a mask that excludes instruction tokens.

The mask marks the tokens that *count*: real text, not padding and not the instruction
prefix. Every mode is defined on that mask alone, so the result does not depend on which
side the batch was padded on or how long the instruction was.
"""

from __future__ import annotations

POOLING_MODES = ("mean", "weighted_mean", "last_token", "first_token")


def validate_pooling(mode: str) -> str:
    from ragkit.errors import InvalidInputError

    if mode not in POOLING_MODES:
        raise InvalidInputError(f"unknown pooling '{mode}'; choose one of {', '.join(POOLING_MODES)}")
    return mode


def pool(hidden, mask, mode: str):
    """Pool ``hidden`` [batch, seq, dim] over ``mask`` [batch, seq] (1 = counts) in float32.

    - ``mean``: average of counted tokens (the paper's best).
    - ``weighted_mean``: weights 1..n over counted tokens, so later tokens, which have seen
      more context in a causal model, count more.
    - ``last_token`` / ``first_token``: the last / first counted token.
    """
    import torch

    hidden = hidden.float()
    mask = mask.to(hidden.dtype)
    if mode == "mean":
        return (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    if mode == "weighted_mean":
        weights = mask.cumsum(1) * mask
        return (hidden * weights.unsqueeze(-1)).sum(1) / weights.sum(1, keepdim=True).clamp(min=1)
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    if mode == "last_token":
        index = torch.where(mask > 0, positions, -1).amax(1)
    elif mode == "first_token":
        index = torch.where(mask > 0, positions, mask.shape[1]).amin(1)
    else:
        validate_pooling(mode)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]
