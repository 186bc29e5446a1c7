"""LangChain adapters: a retriever over a ragkit index, ragkit encoders as embeddings, and
grounded answers as a runnable.

    from ragkit.integrations.langchain import RagkitRetriever, RagkitEmbeddings, answer_runnable

    retriever = RagkitRetriever.from_index(".ragkit", k=4)
    docs = retriever.invoke("how do I install it?")       # list[Document]
    result = answer_runnable(".ragkit").invoke("how do I install it?")   # ragkit.answer.Answer

Both are plain ``langchain_core`` objects, so they compose with LCEL (``retriever | ...``),
``batch``, ``ainvoke`` and LangChain's vector stores.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import ConfigDict, PrivateAttr


class RagkitRetriever(BaseRetriever):
    """Top-k chunks of a ragkit index as LangChain ``Document``s with their sources."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index_dir: str
    k: int = 4
    filter: str | dict | None = None
    hybrid: bool = True
    _index: Any = PrivateAttr(default=None)

    @classmethod
    def from_index(
        cls, index_dir: str | Path, k: int = 4, filter: str | dict | None = None, hybrid: bool = True
    ) -> RagkitRetriever:
        """Open the index now, so a missing or foreign index fails here, not at the first query."""
        from ragkit.search.index import Index

        retriever = cls(index_dir=str(index_dir), k=k, filter=filter, hybrid=hybrid)
        retriever._index = Index.open(index_dir)
        return retriever

    @property
    def index(self):
        if self._index is None:
            from ragkit.search.index import Index

            self._index = Index.open(self.index_dir)
        return self._index

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        hits = self.index.search(query, k=self.k, filter=self.filter, hybrid=self.hybrid)
        return [
            Document(
                page_content=hit.text,
                metadata={k: v for k, v in hit.to_dict().items() if k != "text"},
                id=str(hit.chunk_id),
            )
            for hit in hits
        ]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        # Encoding is CPU/GPU-bound torch work: run it off the event loop.
        return await asyncio.to_thread(
            self._get_relevant_documents, query, run_manager=run_manager.get_sync()
        )


class RagkitEmbeddings(Embeddings):
    """A ragkit encoder as LangChain embeddings: queries get the query instruction, documents none."""

    def __init__(self, encoder: Any = "default", *, batch_size: int = 32, device: str | None = None):
        self._spec, self._encoder = (encoder, None) if isinstance(encoder, str) else (None, encoder)
        self.batch_size, self.device = batch_size, device

    @property
    def encoder(self):
        if self._encoder is None:
            from ragkit.encoder import Encoder

            # Light when it can (no transformers import: an agent starts seconds sooner); the
            # vectors and fingerprint are the same either way.
            self._encoder = Encoder.from_pretrained(self._spec, device=self.device, backend="auto")
        return self._encoder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text; an empty text (LangChain loaders make them) gets zeros, which
        match nothing, instead of failing the whole batch."""
        import numpy as np

        texts = list(texts)
        if not texts:
            return []
        kept = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
        out = np.zeros((len(texts), self.encoder.dimension), dtype=np.float32)
        if kept:
            out[kept] = self.encoder.encode_documents(
                [texts[i] for i in kept], batch_size=self.batch_size, show_progress=False
            )
        return out.tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encoder.encode_queries([text], show_progress=False)[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)


def answer_runnable(
    index_dir: str | Path, *, k: int = 4, mode: str = "extract", generator: Any = None
) -> Runnable:
    """``ragkit.answer`` as a LangChain runnable: a question in, an :class:`~ragkit.answer.Answer`
    out (the same object the CLI shows), composable with LCEL, ``batch`` and ``ainvoke``."""
    from ragkit.answer import MODES, answer
    from ragkit.errors import InvalidInputError
    from ragkit.search.index import Index

    if mode not in MODES:
        raise InvalidInputError(f"unknown answer mode {mode!r}: use extract or generate")
    index = Index.open(index_dir)
    return RunnableLambda(
        lambda question: answer(index, question, k=k, mode=mode, generator=generator), name="ragkit_answer"
    )
