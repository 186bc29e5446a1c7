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


_ITEM_SIZE = {"F32": 4, "F16": 2, "BF16": 2}


def _header(path: Path) -> tuple[dict, int]:
    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        if not 0 < size <= _HEADER_LIMIT:
            raise ValueError(f"{path} is not a safetensors file (header of {size} bytes)")
        header = json.loads(handle.read(size))
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    return header, 8 + size


def _span(path: Path, entry: object, base: int) -> tuple[str, tuple[int, ...], int, int]:
    """The entry's type, shape and byte range, checked against each other and the file."""
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: a tensor entry is not a JSON object")
    kind = entry.get("dtype")
    if kind not in _ITEM_SIZE:
        raise ValueError(f"{path}: tensors of type {kind} are not read without torch")
    shape = tuple(int(n) for n in entry["shape"])
    start, end = (int(x) for x in entry["data_offsets"])
    expected = int(np.prod(shape, dtype=np.int64)) * _ITEM_SIZE[kind]
    if not 0 <= start <= end or end - start != expected or base + end > path.stat().st_size:
        raise ValueError(f"{path}: a tensor's offsets do not match its shape or the file")
    return kind, shape, start, end


def _tensor(path: Path, entry: object, base: int) -> np.ndarray:
    kind, shape, start, end = _span(path, entry, base)
    if end == start:
        return np.zeros(shape, dtype=np.float32)
    if kind == "F32":
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
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: malformed safetensors header ({exc})") from None
