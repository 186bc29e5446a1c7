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
from pathlib import Path

from ragkit.errors import InvalidInputError

PRECISIONS = ("auto", "fp32", "bf16")
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_bf16_features(cpuinfo: Path = Path("/proc/cpuinfo"), *, ask_torch: bool = True) -> list[str]:
    """The CPU's native bf16 instruction sets (AMX, AVX512-BF16): what torch's own CPU probe
    reports (``ask_torch``), and the flags the kernel lists in ``cpuinfo``."""
    found: set[str] = set()
    try:
        if not ask_torch:
            raise ImportError
        import torch

        cpu = torch._C._cpu
        if getattr(cpu, "_is_amx_tile_supported", lambda: False)():
            found.add("amx_bf16")
        if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
            found.add("avx512_bf16")
    except (ImportError, AttributeError, RuntimeError):
        pass
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                found |= set(line.split(":", 1)[1].split()) & set(NATIVE_BF16_FLAGS)
                break
    except OSError:
        pass
    return [flag for flag in NATIVE_BF16_FLAGS if flag in found]


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
