"""Content hashes used for cache verification and encoder fingerprints."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

_SAMPLE_BYTES = 1 << 20


def sha256_file(path: Path) -> str:
    """Full SHA-256 of a file, streamed so multi-GB weights do not sit in memory."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def sampled_file_hash(path: Path) -> str:
    """Hash of a file's size, first and last MiB.

    Used for user-supplied backbone folders, where hashing 15 GB of weights on every load
    would cost minutes; any re-download, conversion or fine-tune changes these bytes.
    """
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(_SAMPLE_BYTES))
        if size > _SAMPLE_BYTES:
            handle.seek(max(size - _SAMPLE_BYTES, _SAMPLE_BYTES))
            digest.update(handle.read(_SAMPLE_BYTES))
    return digest.hexdigest()


def canonical_json_hash(value: Any) -> str:
    """SHA-256 of JSON with sorted keys: equal settings give equal hashes across runs."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
