"""An encoder for search processes that never imports torch (:mod:`ragkit.encoder.numpy_engine`).

It has the part of :class:`ragkit.encoder.Encoder` that searching and answering use
(``fingerprint``, ``dimension``, ``config``, ``encode``, ``encode_queries``,
``encode_documents``, ``describe``) with the same knobs, and gives the same vectors. Texts run
one at a time without padding: right for a query or an answer's few sentences, not for bulk
document embedding, which the indexer does with the full encoder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ragkit.encoder.config import EncoderConfig, fingerprint, tokenizer_hash
from ragkit.encoder.inputs import InputBuilder, count_truncated, validate_texts
from ragkit.encoder.numpy_engine import NumpyLlama, load_numpy_model, read_verdict
from ragkit.encoder.pooling import validate_pooling
from ragkit.encoder.roles import QueryDocumentRoles
from ragkit.errors import InvalidInputError

log = logging.getLogger("ragkit")


def _pool(hidden: np.ndarray, mode: str) -> np.ndarray:
    """The pooled tokens of one unpadded sequence, as :func:`ragkit.encoder.pooling.pool`."""
    if mode == "mean":
        return hidden.mean(0)
    if mode == "weighted_mean":
        weights = np.arange(1, len(hidden) + 1, dtype=np.float32)
        return (hidden * weights[:, None]).sum(0) / weights.sum()
    return hidden[-1] if mode == "last_token" else hidden[0]


class NumpyEncoder(QueryDocumentRoles):
    """A saved encoder's queries (and a few documents) embedded in NumPy."""

    def __init__(
        self, model: NumpyLlama, tokenizer, config: EncoderConfig, *, adapter_hashes: list[str], name: str
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.name = name
        self.adapter_names = list(config.adapters)
        self._inputs = InputBuilder(tokenizer, config.max_length)
        self.fingerprint = fingerprint(
            config, tokenizer_hash=tokenizer_hash(tokenizer), adapter_hashes=adapter_hashes
        )
        self.precision_choice = None
        self.last_truncated = 0
        self.load_seconds = 0.0

    @property
    def dimension(self) -> int:
        return int(self.model.config["hidden_size"])

    @property
    def max_length(self) -> int:
        return self.config.max_length

    def encode(
        self,
        texts: Iterable[str] | str,
        *,
        normalize: bool = True,
        instruction: str = "",
        warn_truncated: bool = True,
        max_length: int | None = None,
        batch_size: int | None = None,
        show_progress: bool | None = None,
        max_tokens_per_batch: int | None = None,
    ) -> np.ndarray:
        """Embed texts as :meth:`ragkit.encoder.Encoder.encode` does (batching knobs accepted
        for the same call signature; each text runs on its own)."""
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        single = isinstance(texts, str)
        items = validate_texts([texts] if single else texts)
        mode = validate_pooling(self.config.pooling)
        encoded = self._inputs.build(items, instruction or "", max_length)
        limit = min(self.config.max_length, max_length or self.config.max_length)
        self.last_truncated = count_truncated(encoded, limit, warn=warn_truncated)
        out = np.empty((len(items), self.dimension), dtype=np.float32)
        for row, item in enumerate(encoded):
            vector = _pool(self.model.forward(item.ids)[item.pool_start :], mode)
            out[row] = vector / max(float(np.linalg.norm(vector)), 1e-12) if normalize else vector
        return out[0] if single else out

    def describe(self) -> dict:
        return {
            "backbone": self.config.backbone,
            "architecture": self.model.config.get("model_type", "?"),
            "parameters": self.model.parameter_count,
            "backend": self.model.backend,
            "dimension": self.dimension,
            "layers": self.model.layers,
            "pooling": self.config.pooling,
            "max_length": self.config.max_length,
            "document_max_length": self.config.document_max_length,
            "bidirectional": self.config.bidirectional,
            "instructions": self.config.instructions,
            "fusion": self.config.fusion,
            "adapters": self.adapter_names,
            "device": "cpu",
            "dtype": "float32",
            "fingerprint": self.fingerprint,
            "load_seconds": round(self.load_seconds, 2),
        }


def load_numpy_encoder(name_or_path: str) -> NumpyEncoder | None:
    """The NumPy encoder for a saved encoder whose merged weights are cached and verified, or
    None (any other encoder, no cache yet, a failed check): then load :class:`Encoder`."""
    started = time.perf_counter()
    try:
        found = _verified_parts(name_or_path)
        if found is None:
            return None
        config, hashes, folder, tokenizer = found
        encoder = NumpyEncoder(
            load_numpy_model(folder), tokenizer, config, adapter_hashes=hashes, name=name_or_path
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.info("the NumPy engine does not apply to %s (%s)", name_or_path, exc)
        return None
    encoder.load_seconds = time.perf_counter() - started
    return encoder


def _saved_parts(name_or_path: str) -> tuple[Path, EncoderConfig, object, list[str]] | None:
    """A bidirectional saved encoder on a local backbone: its folder, config, backbone and
    adapter hashes, all read without torch; None for anything else (the full loader explains)."""
    from ragkit.encoder.adapters import adapter_file_hash
    from ragkit.encoder.backbone import resolve_backbone
    from ragkit.encoder.folder import adapter_folder, read_config
    from ragkit.encoder.packaged import PACKAGED_MODELS
    from ragkit.encoder.resolve import saved_encoder_folder
    from ragkit.errors import RagkitError

    try:
        saved = saved_encoder_folder(name_or_path)
        if saved is None:
            return None
        config = read_config(saved)
        local = config.backbone in PACKAGED_MODELS or Path(config.backbone).expanduser().is_dir()
        if not (config.bidirectional and config.adapters and local):
            return None  # a Hub backbone would be resolved through transformers' download path
        backbone = resolve_backbone(config.backbone)
        if backbone.identity != config.backbone_identity:
            return None
        hashes = [adapter_file_hash(adapter_folder(saved, name)) for name in config.adapters]
    except RagkitError:
        return None
    return saved, config, backbone, hashes


def _verified_parts(name_or_path: str) -> tuple[EncoderConfig, list[str], Path, object] | None:
    """The saved encoder's config, adapter hashes, merged folder and tokenizer, if verified."""
    from ragkit.encoder.cache import merged_folder
    from ragkit.encoder.converted import read_manifest
    from ragkit.encoder.folder import tokenizer_folder
    from ragkit.encoder.light_tokenizer import light_tokenizer_if_possible

    parts = _saved_parts(name_or_path)
    if parts is None:
        return None
    saved, config, backbone, hashes = parts
    folder = merged_folder(backbone.name, backbone.identity, hashes, config.layers)
    manifest = read_manifest(folder)
    if manifest is None or not manifest.get("light", {}).get("verified"):
        return None
    if not (read_verdict(folder) or {}).get("verified"):
        return None
    tokenizer = light_tokenizer_if_possible(tokenizer_folder(saved))
    return None if tokenizer is None else (config, hashes, folder, tokenizer)
