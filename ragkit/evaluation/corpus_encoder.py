"""The encoder that embeds an evaluation's corpus, loaded as ``ragkit index`` loads it.

``ragkit index`` embeds documents on the fastest verified engine and, with ``--dtype auto`` on a
CPU with native bf16, in bf16 where a retrieval check passes; queries stay float32. Evaluating
the same way measures what an index built where the evaluation runs would return. In float32
every engine agrees with the torch model to rounding (checked when the engine is built) under
its fingerprint, so they share its vector cache; vectors in another precision are cached apart,
per engine, device and precision (:func:`ragkit.encoder.vector_cache.vector_cache_name`), so
they never mix with float32 ones or with another engine's.
"""

from __future__ import annotations

from pathlib import Path

from ragkit.encoder import document_precision
from ragkit.encoder.document_precision import DTYPES, document_dtype
from ragkit.encoder.vector_cache import vector_cache_name
from ragkit.errors import InvalidInputError, RagkitError


def check_corpus_dtype(dtype: str | None, encoder, *, ray: bool = False) -> None:
    """Refuse what a corpus encoder cannot be, before anything loads."""
    if dtype is None:
        return
    if ray:
        raise InvalidInputError(
            "Ray workers embed the corpus as they load the encoder; drop the dtype or Ray"
        )
    if dtype not in DTYPES:
        raise InvalidInputError(f"document dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if not isinstance(encoder, str | Path):
        raise InvalidInputError("a document dtype needs the encoder as a name or folder, not a loaded one")


def default_corpus_dtype(device: str | None) -> str | None:
    """float32 on the fast engine where the evaluation runs on a CPU; elsewhere (CUDA) the
    encoder under test embeds its corpus in its own precision."""
    from ragkit.encoder.encoder import resolve_device

    return "float32" if resolve_device(device).type == "cpu" else None


class CorpusEncoder:
    """The corpus side of the encoder under test: loaded when a document is first missing from
    its cache, released with :meth:`release`. The same model as the encoder under test (same
    engine, same precision) is not loaded twice."""

    def __init__(self, name: str | Path, dtype: str, *, max_length: int | None, like):
        self.name, self.dtype, self.max_length, self.like = str(name), dtype, max_length, like
        self._encoder = None
        self._record: dict | None = None

    @property
    def encoder(self):
        if self._encoder is None:
            loaded = document_precision.load_document_encoder(
                self.name, device="cpu", dtype=self.dtype, max_length=self.max_length
            )
            if loaded.fingerprint != self.like.fingerprint:
                raise RagkitError(
                    f"the document encoder loaded as {loaded.fingerprint}, not {self.like.fingerprint}: "
                    "it is another model, so its vectors cannot be compared with the queries'"
                )
            self._record = corpus_record(loaded)
            self._encoder = self.like if _same_model(loaded, self.like) else loaded
        return self._encoder

    def cache_name(self) -> str:
        """Float32 vectors share the fingerprint's cache (known without loading anything)."""
        if self.dtype == "float32":
            return self.like.fingerprint
        return vector_cache_name(self.encoder)

    def record(self) -> dict:
        """What embedded the corpus, for the results (nothing loaded: every vector was cached)."""
        if self._record is not None:
            return self._record
        return {"document_dtype": self.dtype, "document_dtype_reason": "every vector was cached"}

    def release(self) -> None:
        self._encoder = None


def _same_model(loaded, like) -> bool:
    described, reference = loaded.describe(), like.describe()
    return described["backend"] == reference["backend"] and document_dtype(loaded) == document_dtype(like)


def corpus_record(encoder) -> dict:
    """What embedded the corpus: precision, why, and the engine."""
    choice = encoder.precision_choice
    return {
        "document_dtype": document_dtype(encoder),
        "document_dtype_reason": choice.reason if choice is not None else None,
        "document_backend": encoder.describe()["backend"],
    }
