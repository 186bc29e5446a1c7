"""The uniform average of several LoRAs trained from one encoder, written as one LoRA.

Runs that start from the same encoder and differ in seed, negatives or loss move its weights
in a shared direction plus run-specific noise; the mean of their weight changes keeps the
first and shrinks the second (model soups, Wortsman et al. 2022). Stacking the runs' ranks
gives that mean exactly, with no truncation, and the result stays an ordinary peft LoRA:
``A = [A_1; ...; A_n]``, ``B = [B_1 ... B_n] / n``, with rank and alpha both multiplied by
``n`` so the scale ``alpha / r`` is unchanged.
"""

from __future__ import annotations

from ragkit.encoder.adapters import Adapter
from ragkit.encoder.plain_lora import LORA_A, require_plain_lora
from ragkit.errors import EncoderFormatError

# Settings that change how a LoRA's weights map to a weight change: all runs must share them.
_SHARED = ("r", "lora_alpha", "target_modules", "layers_to_transform", "layers_pattern")


def average_adapters(adapters: list[Adapter], name: str) -> Adapter:
    """One adapter whose merged weight change is the mean of ``adapters``' weight changes."""
    import torch

    if len(adapters) < 2:
        raise EncoderFormatError("averaging needs at least two adapters")
    first = adapters[0]
    _check_compatible(adapters)
    count = len(adapters)
    tensors = {}
    for key in first.tensors:
        parts = [adapter.tensors[key].float() for adapter in adapters]
        # A's rows are ranks; B's columns are, and B carries the 1/n.
        stacked = torch.cat(parts, dim=0) if key.endswith(LORA_A) else torch.cat(parts, dim=1) / count
        tensors[key] = stacked.to(first.tensors[key].dtype)
    config = dict(first.config)
    config["r"] = first.config["r"] * count
    config["lora_alpha"] = first.config["lora_alpha"] * count
    return Adapter(name, config, tensors)


def _check_compatible(adapters: list[Adapter]) -> None:
    """Refuse adapters whose mean is not a plain rank-stacked LoRA."""
    first = adapters[0]
    for adapter in adapters:
        config = adapter.config
        require_plain_lora(adapter, "averaged")
        if set(adapter.tensors) != set(first.tensors):
            raise EncoderFormatError(f"adapters '{first.name}' and '{adapter.name}' adapt different weights")
        for setting in _SHARED:
            if _normal(config.get(setting)) != _normal(first.config.get(setting)):
                raise EncoderFormatError(
                    f"adapters '{first.name}' and '{adapter.name}' differ in {setting}: "
                    f"{first.config.get(setting)!r} against {config.get(setting)!r}"
                )


def _normal(value):
    return sorted(value) if isinstance(value, list | set | tuple) else value
