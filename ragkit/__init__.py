"""ragkit: LLM2Vec encoders and retrieval-augmented generation in one toolkit.

Heavy modules (torch, transformers) load only when first used, so ``ragkit --help`` and
``import ragkit`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragkit.version import __version__

__all__ = ["Encoder", "Hit", "Index", "RagkitError", "__version__", "answer"]

if TYPE_CHECKING:
    from ragkit.answer import answer
    from ragkit.encoder import Encoder
    from ragkit.errors import RagkitError
    from ragkit.search.index import Hit, Index


def __getattr__(name: str):
    if name == "Encoder":
        from ragkit.encoder import Encoder

        return Encoder
    if name in ("Index", "Hit"):
        from ragkit.search import index

        return getattr(index, name)
    if name == "answer":
        import ragkit.answer

        return ragkit.answer
    if name == "RagkitError":
        from ragkit.errors import RagkitError

        return RagkitError
    raise AttributeError(f"module 'ragkit' has no attribute {name!r}")
