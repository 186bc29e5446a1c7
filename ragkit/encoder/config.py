"""The JSON description of a saved encoder, and its fingerprint.

A saved encoder is a folder: ``ragkit.json`` (this config), ``tokenizer/`` and
``adapters/<n>/`` (LoRA weights as safetensors). The backbone itself is referenced by name
and content identity, not copied, so a saved encoder is megabytes, not gigabytes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ragkit.encoder.pooling import validate_pooling
from ragkit.errors import EncoderFormatError
from ragkit.fusion_settings import check_fusion_settings
from ragkit.hashing import canonical_json_hash

CONFIG_NAME = "ragkit.json"
FORMAT_NAME = "ragkit-encoder"
FORMAT_VERSION = 1


@dataclass
class EncoderConfig:
    """Everything, besides weights, that decides what vector a text gets."""

    backbone: str
    backbone_identity: str
    bidirectional: bool = True
    pooling: str = "mean"
    max_length: int = 512
    instructions: dict[str, str] = field(default_factory=dict)
    adapters: list[str] = field(default_factory=list)
    layers: int | None = None
    """Keep the backbone's bottom N layers only (None: all); see :mod:`ragkit.encoder.pruning`."""
    document_max_length: int | None = None
    """Documents are cut to this many tokens when shorter than ``max_length`` (LLM2Vec's
    ``doc_max_length``); None: ``max_length`` for every text."""

    fusion: dict | None = None
    """How hybrid search should fuse this encoder's ranking with BM25
    (:mod:`ragkit.fusion_settings`), chosen on dev sets for this encoder; None: the search's
    default. Not part of the fingerprint (it changes no vector), so it is dropped from a
    variant whose fingerprint differs: it was chosen for this one."""

    def __post_init__(self) -> None:
        validate_pooling(self.pooling)
        if self.fusion is not None:
            self.fusion = check_fusion_settings(self.fusion, "fusion", EncoderFormatError)
        if not isinstance(self.max_length, int) or self.max_length < 1:
            raise EncoderFormatError(f"max_length must be a positive integer, got {self.max_length!r}")
        for name in ("layers", "document_max_length"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise EncoderFormatError(f"{name} must be a positive integer, got {value!r}")

    def to_json(self) -> str:
        body = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **asdict(self)}
        return json.dumps(body, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def load(cls, folder: Path) -> EncoderConfig:
        path = folder / CONFIG_NAME
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise EncoderFormatError(f"cannot read {path}: {exc}") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT_NAME:
            raise EncoderFormatError(f"{path} is not a ragkit encoder config")
        if raw.get("format_version") != FORMAT_VERSION:
            raise EncoderFormatError(
                f"{path} has format version {raw.get('format_version')}; this ragkit reads "
                f"version {FORMAT_VERSION}"
            )
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in raw.items() if k in known})
        except TypeError as exc:
            raise EncoderFormatError(f"{path} is incomplete: {exc}") from None


def fingerprint(config: EncoderConfig, *, tokenizer_hash: str, adapter_hashes: list[str]) -> str:
    """Stable hash of everything that changes the vectors.

    Device and dtype are left out on purpose: bf16 on a GPU and fp32 on a CPU give vectors
    of the same encoder that agree to rounding, and an index must accept both.
    """
    described = {
        "format_version": FORMAT_VERSION,
        "backbone": config.backbone_identity,
        "bidirectional": config.bidirectional,
        "pooling": config.pooling,
        "max_length": config.max_length,
        "instructions": config.instructions,
        "tokenizer": tokenizer_hash,
        "adapters": adapter_hashes,
    }
    # Absent when unset, so older fingerprints stay valid.
    if config.layers is not None:
        described["layers"] = config.layers
    if config.document_max_length is not None:
        described["document_max_length"] = config.document_max_length
    return canonical_json_hash(described)[:16]


def tokenizer_hash(tokenizer) -> str:
    """Hash of the tokenizer's full definition (vocabulary, merges, normalizer)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return canonical_json_hash(backend.to_str())
    return canonical_json_hash(sorted(tokenizer.get_vocab().items()))
