"""Training precision: fp32, or bf16 autocast with fp32 master weights.

bf16 pays only where the hardware multiplies bf16 natively: CUDA GPUs, and CPUs with AMX or
AVX512-BF16. Elsewhere torch emulates it and a step gets slower, so ``auto`` asks the CPU
what it has rather than guessing from its name. Only the transformer's forward runs under
autocast; pooling, the similarity matrix and every loss are computed in fp32 by the
objectives, and the LoRA weights and optimizer state never leave fp32.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from ragkit.errors import InvalidInputError
from ragkit.hardware import cpu_bf16_features

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class Precision:
    """The resolved precision of a run and the device type its autocast applies to."""

    name: str
    """``fp32`` or ``bf16``: what the run's settings, card and metrics record."""
    device_type: str = "cpu"
    reason: str = ""

    def autocast(self):
        """The context a forward pass runs in: bf16 autocast, or nothing at all for fp32."""
        if self.name != "bf16":
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self.device_type, dtype=torch.bfloat16)


def resolve_precision(requested: str, device_type: str, features: list[str] | None = None) -> Precision:
    """``auto`` → bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere; explicit choices stand."""
    if requested not in PRECISIONS:
        raise InvalidInputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if device_type == "cuda":
        name = "fp32" if requested == "fp32" else "bf16"
        return Precision(name, "cuda", "CUDA" if requested == "auto" else "asked for")
    if requested != "auto":
        return Precision(requested, device_type, "asked for")
    features = cpu_bf16_features() if features is None else features
    if features:
        return Precision("bf16", device_type, f"the CPU has {' and '.join(features)}")
    return Precision("fp32", device_type, "the CPU has no native bf16 arithmetic")
