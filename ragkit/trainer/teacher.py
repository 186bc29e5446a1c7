"""A teacher for the supervised stage: its scores filter false negatives and are distilled.

The teacher sees texts, never token ids, so it may use any tokenizer: a ragkit encoder, any
model folder ``Encoder.from_pretrained`` reads, or a sentence-transformers folder (its
``modules.json`` names the transformer folder and ``1_Pooling`` the pooling). Its vectors are
cached on disk per (teacher fingerprint, pair set content hash) and per text, so a resumed
or repeated run encodes nothing twice, and another teacher or pair set never meets them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragkit.errors import InvalidInputError, RagkitError

log = logging.getLogger("ragkit")

FALSE_NEGATIVE_MARGIN = 0.95
"""A negative the teacher scores above this fraction of its positive is dropped (positive-aware
mining, NV-Retriever 2024)."""
TEACHER_TEMPERATURE = 0.05
"""Cosine similarities of the teacher become logits at this temperature for distillation."""

_ST_POOLING = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "first_token",
    "pooling_mode_lasttoken": "last_token",
    "pooling_mode_weightedmean_tokens": "weighted_mean",
}


def _sentence_transformers_layout(folder: Path) -> dict | None:
    """``Encoder.from_pretrained`` keywords for a sentence-transformers folder, or None."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None
    try:
        modules = json.loads(modules_file.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"teacher {folder}: cannot read modules.json ({exc})") from None
    spec: dict = {"name_or_path": str(folder), "pooling": "mean"}
    for module in modules if isinstance(modules, list) else []:
        kind, path = str(module.get("type", "")), folder / str(module.get("path", ""))
        if kind.endswith("Transformer"):
            spec["name_or_path"] = str(path)
        elif kind.endswith("Pooling") and (path / "config.json").is_file():
            pooling = json.loads((path / "config.json").read_text())
            chosen = [mode for key, mode in _ST_POOLING.items() if pooling.get(key)]
            spec["pooling"] = chosen[0] if chosen else "mean"
    return spec


def load_teacher_encoder(spec: str, *, device: str | None = None):
    """Load the teacher, or fail with one clear error naming what is wrong."""
    from ragkit.encoder import Encoder

    folder = Path(spec).expanduser()
    settings = _sentence_transformers_layout(folder) if folder.is_dir() else None
    settings = settings or {"name_or_path": spec}
    try:
        return Encoder.from_pretrained(**settings, device=device)
    except RagkitError as exc:
        raise InvalidInputError(f"--teacher {spec} cannot be loaded: {exc}") from None
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInputError(f"--teacher {spec} cannot be loaded: {exc}") from None


@dataclass
class Teacher:
    """A loaded teacher with its vector cache; ``vectors`` embeds and caches texts."""

    encoder: object
    cache: object
    query_instruction: str

    @property
    def identity(self) -> str:
        return self.encoder.fingerprint

    def vectors(
        self, texts: list[str], *, query: bool, on_progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Unit vectors of ``texts`` (queries with the teacher's own query instruction);
        ``on_progress`` is called with each count of texts done, cached ones included."""
        instruction = self.query_instruction if query else ""
        encode = (
            (lambda t: self.encoder.encode(t, instruction=instruction, warn_truncated=False))
            if query
            else (lambda t: self.encoder.encode(t, instruction="", warn_truncated=False))
        )
        return self.cache.encode(texts, instruction, encode, chunk=64, on_progress=on_progress)


def open_teacher(
    spec: str, pairs_hash: str, *, device: str | None = None, root: Path | None = None, encoder=None
) -> Teacher:
    """Load the teacher (unless ``encoder`` is it, loaded already) and open its cache for
    this pair set."""
    from ragkit.encoder.cache import ragkit_home
    from ragkit.encoder.vector_cache import VectorCache

    encoder = encoder or load_teacher_encoder(spec, device=device)
    key = f"{encoder.fingerprint[:16]}-{pairs_hash[:16]}"
    cache = VectorCache(key, root=(root or ragkit_home()) / "teacher")
    instruction = encoder.config.instructions.get("query", "")
    log.info("teacher %s (fingerprint %s), cache %s", spec, encoder.fingerprint[:12], cache.path)
    return Teacher(encoder, cache, instruction)


def below_margin(score, positive):
    """Whether a candidate's teacher score stays ``FALSE_NEGATIVE_MARGIN`` of the way below its
    positive's: at most 0.95 x a positive score, and under a positive's that is itself below
    zero by 5 % of its size (a plain 0.95 x would let it pass the positive)."""
    return score <= positive - (1 - FALSE_NEGATIVE_MARGIN) * abs(positive)


def teacher_judgement(
    query_vectors: np.ndarray, passage_vectors: np.ndarray, targets: list[int], allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's logits over each query's candidates and the candidates it lets through.

    A candidate other than the query's own positive is a false negative when the teacher
    scores it above ``FALSE_NEGATIVE_MARGIN`` times the positive's score: it is left out of
    the softmax rather than pushed away.
    """
    scores = query_vectors @ passage_vectors.T
    positive = scores[np.arange(len(targets)), targets][:, None]
    keep = allowed & below_margin(scores, positive)
    keep[np.arange(len(targets)), targets] = True
    return scores / TEACHER_TEMPERATURE, keep
