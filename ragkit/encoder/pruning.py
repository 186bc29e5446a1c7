"""Keep the bottom layers of a decoder and drop the rest.

LLM-based text encoders are overparameterized: "Large Language Models Are Overparameterized
Text Encoders" (Thennal et al., 2024) drops the top layers of LLM2Vec models before the
contrastive stage and loses little. Every dropped layer is compute saved on every index and
every query, so a pruned encoder that measures as well is simply a faster one. The final
norm stays and is applied to the last kept layer's output.

Pruning commutes with merging LoRA adapters (a merge changes one layer's weights and nothing
else), so an encoder records its layer count once and applies it after its adapters merge.
"""

from __future__ import annotations

from ragkit.errors import InvalidInputError


def _layer_stack(model):
    """The decoder module that owns ``layers`` (a bare decoder, or the one in a causal LM)."""
    if hasattr(model, "layers"):
        return model
    get_decoder = getattr(model, "get_decoder", None)
    decoder = get_decoder() if callable(get_decoder) else None
    if decoder is None or not hasattr(decoder, "layers"):
        raise InvalidInputError(f"cannot prune {type(model).__name__}: it has no stack of layers")
    return decoder


def layer_count(model) -> int:
    return len(_layer_stack(model).layers)


def check_layers(layers: int | None, available: int) -> None:
    """Refuse a layer count that is not a whole number between 1 and what the model has."""
    if layers is None:
        return
    if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= available:
        raise InvalidInputError(f"layers must be a whole number from 1 to {available}, got {layers!r}")


def keep_bottom_layers(model, layers: int | None):
    """Truncate ``model`` in place to its bottom ``layers`` blocks (None: keep all); returns it."""
    if layers is None:
        return model
    stack = _layer_stack(model)
    check_layers(layers, len(stack.layers))
    if layers is None or layers == len(stack.layers):
        return model
    stack.layers = stack.layers[:layers]
    for config in (getattr(model, "config", None), getattr(stack, "config", None)):
        if config is None:
            continue
        config.num_hidden_layers = layers
        if isinstance(getattr(config, "layer_types", None), list):
            config.layer_types = config.layer_types[:layers]
    return model
