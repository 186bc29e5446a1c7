"""Errors that carry a message a user can act on.

The CLI prints a :class:`RagkitError` as one line and exits non-zero; anything else is a bug
and keeps its traceback. Keeping the two apart is what lets ``ragkit`` be friendly without
hiding real failures.
"""

from __future__ import annotations


class RagkitError(Exception):
    """Base class for every error whose message is meant for the user."""


class InvalidInputError(RagkitError, ValueError):
    """The caller passed texts or options that cannot be encoded."""


class ModelNotFoundError(RagkitError):
    """A backbone name, path or hub id could not be resolved to weights."""


class NotBidirectionalError(RagkitError):
    """An architecture ignored the request for bidirectional attention."""


class CacheError(RagkitError):
    """The converted-model cache could not be written or read back."""


class EncoderFormatError(RagkitError):
    """A saved encoder folder is incomplete, unsafe or from another version."""
