"""What the CPU can do natively, asked of the CPU rather than guessed from its name.

bf16 arithmetic pays only where the hardware has it (AMX, AVX512-BF16); elsewhere it is
emulated and slower than fp32. Training (``--precision auto``) and the document engine
(``dtype="auto"``) both choose by this.
"""

from __future__ import annotations

from pathlib import Path

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
