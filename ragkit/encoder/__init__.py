"""The LLM2Vec encoder: decoder-only LLMs as bidirectional text encoders."""

from ragkit.encoder.encoder import Encoder

__all__ = ["Encoder"]
