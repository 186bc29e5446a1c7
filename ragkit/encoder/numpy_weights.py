"""safetensors files read into NumPy, for the paths that must not import torch.

safetensors' own NumPy reader has no bfloat16, and a torch-free query must read adapters
stored in bf16 as well as fp16 and fp32. The format is simple enough to read directly: an
8-byte header length, a JSON header, then raw little-endian tensors. float32 tensors are
memory-mapped (read-only views of the page cache, so a 500 MB model costs no copy);
float16 and bfloat16 are widened to float32, exactly as ``tensor.float()`` widens them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_HEADER_LIMIT = 100 * 1024 * 1024


def _header(path: Path) -> tuple[dict, int]:
    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        if not 0 < size <= _HEADER_LIMIT:
            raise ValueError(f"{path} is not a safetensors file (header of {size} bytes)")
        header = json.loads(handle.read(size))
    header.pop("__metadata__", None)
    return header, 8 + size


def _tensor(path: Path, entry: dict, base: int) -> np.ndarray:
    start, end = (int(x) for x in entry["data_offsets"])
    shape = tuple(int(n) for n in entry["shape"])
    kind = entry["dtype"]
    if kind not in ("F32", "F16", "BF16"):
        raise ValueError(f"{path}: tensors of type {kind} are not read without torch")
    if kind == "F32":
        if end == start:
            return np.zeros(shape, dtype=np.float32)
        return np.memmap(path, dtype="<f4", mode="r", offset=base + start, shape=shape)
    raw = np.fromfile(path, dtype="<u2", count=(end - start) // 2, offset=base + start).reshape(shape)
    if kind == "F16":
        return raw.view("<f2").astype(np.float32)
    return (raw.astype(np.uint32) << 16).view(np.float32)


def read_float_tensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of one safetensors file as float32 NumPy arrays.

    Raises ValueError for a damaged file or a tensor type other than F32, F16 and BF16.
    """
    path = Path(path)
    header, base = _header(path)
    try:
        return {key: _tensor(path, entry, base) for key, entry in header.items()}
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: malformed safetensors header ({exc})") from None
