"""Compiling the transformer's forward for training (``ragkit train --compile``).

A LoRA step on a CPU spends most of its time outside the matrix products: autocast's dtype
copies, LoRA's scaling and dropout, RMSNorm, rotary embeddings and SiLU gating, each one
pass over memory. ``torch.compile`` fuses those element-wise passes into generated kernels,
which is where bf16 training on the CPU gets most of what it can gain. Compiling happens in
each stage's first step (minutes for a real model) and covers every batch shape
(``dynamic=True``), so it pays on runs of more than a few dozen steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragkit.errors import InvalidInputError

if TYPE_CHECKING:
    import torch


def cpp_compiler() -> str | None:
    """The C++ compiler torch's CPU code generation will use, found the way it finds one
    (``$CXX``, else ``g++`` on Linux), or None where it would find none."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        return get_cpp_compiler()
    except Exception:  # torch raises its own InvalidCxxCompiler, or the API moved
        return None


def check_can_compile(device_type: str) -> None:
    """Refuse ``--compile`` before anything loads where no CPU kernels could be generated."""
    if device_type == "cpu" and cpp_compiler() is None:
        raise InvalidInputError(
            "--compile on the CPU needs the C++ compiler torch generates its kernels with "
            "(g++ on PATH, or $CXX naming another); install one or train without --compile"
        )


def compiled(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with its forward compiled for any batch shape; parameters are shared."""
    import torch

    return torch.compile(module, dynamic=True)


def forget_compiled() -> None:
    """Drop every compiled graph, so the next stage's changed model compiles afresh rather
    than piling guards onto the last stage's graphs."""
    import torch

    torch._dynamo.reset()
