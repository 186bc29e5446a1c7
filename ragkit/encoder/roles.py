"""Queries and documents, the two roles every encoder's texts play, on top of ``encode``.

Shared by :class:`ragkit.encoder.Encoder` and the torch-free
:class:`ragkit.encoder.numpy_encoder.NumpyEncoder`, so both apply an encoder's instruction
and document length the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class QueryDocumentRoles:
    """``encode_queries`` and ``encode_documents`` for a class with ``encode`` and ``config``."""

    def encode_queries(
        self, texts: Iterable[str] | str, *, instruction: str | None = None, **kwargs
    ) -> np.ndarray:
        """Embed queries with the encoder's query instruction (or the one given)."""
        if instruction is None:
            instruction = self.config.instructions.get("query", "")
        return self.encode(texts, instruction=instruction, **kwargs)

    def encode_documents(self, texts: Iterable[str] | str, **kwargs) -> np.ndarray:
        """Embed documents: no instruction, as in the paper, cut at ``document_max_length``."""
        kwargs.setdefault("max_length", self.config.document_max_length)
        return self.encode(texts, instruction="", **kwargs)
