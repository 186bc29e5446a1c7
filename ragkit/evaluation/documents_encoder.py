"""The encoder that embeds an evaluation's corpus, loaded as ``ragkit index`` loads it.

``ragkit index`` embeds documents on the fastest verified engine and, with ``--dtype auto`` on a
CPU with native bf16, in bf16 where a retrieval check passes; queries stay float32. Evaluating
the same way measures what an index built on this machine would return. In float32 every
engine gives the torch model's vectors under its fingerprint, so they share its vector cache;
vectors in another precision are cached apart, so the two never mix under one fingerprint.
"""

from __future__ import annotations

from ragkit.encoder.document_precision import DTYPES, document_dtype
from ragkit.errors import InvalidInputError, RagkitError


def load_documents_encoder(encoder, dtype: str, *, max_length: int | None, device: str | None, like):
    """The corpus encoder for ``encoder`` (a name or folder) in ``dtype`` (``auto``, ``float32``,
    ``bfloat16``, ``float16``); ``like`` is the loaded encoder under test it must match."""
    from ragkit.encoder.document_precision import load_document_encoder

    if dtype not in DTYPES:
        raise InvalidInputError(f"document dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if not isinstance(encoder, str):
        raise InvalidInputError("a document dtype needs the encoder as a name or folder, not a loaded one")
    documents = load_document_encoder(encoder, device=device, dtype=dtype, max_length=max_length)
    if documents.fingerprint != like.fingerprint:
        raise RagkitError(
            f"the document encoder loaded as {documents.fingerprint}, not {like.fingerprint}: "
            "it is another model, so its vectors cannot be compared with the queries'"
        )
    if documents.describe()["backend"] == like.describe()["backend"] and document_dtype(documents) == (
        document_dtype(like)
    ):
        like.precision_choice = documents.precision_choice  # the same model twice: keep one
        return like
    return documents


def documents_cache_name(documents) -> str:
    """The vector cache of a corpus encoder: its fingerprint's own in float32, apart otherwise."""
    dtype = document_dtype(documents)
    return documents.fingerprint if dtype == "float32" else f"{documents.fingerprint}-documents-{dtype}"


def document_precision(documents) -> dict:
    """What embedded the corpus, for the results: precision, why, and the engine."""
    choice = documents.precision_choice
    return {
        "document_dtype": document_dtype(documents),
        "document_dtype_reason": choice.reason if choice is not None else None,
        "document_backend": documents.describe()["backend"],
    }
