"""What ragkit's own Llama forwards (the light one in torch, the NumPy one) compute exactly.

Both are written for one layout, plain Llama as SmolLM2 uses it; a config with anything
more (biases, rope scaling, tensor-parallel slicing, another activation) loads through
transformers instead. Kept apart from both so that the NumPy path can ask without torch.
"""

from __future__ import annotations


def supports(config: dict) -> bool:
    """Whether the hand-written forwards compute exactly this model: plain Llama, nothing extra."""
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else None
    return (
        config.get("model_type") == "llama"
        and not config.get("attention_bias", False)
        and not config.get("mlp_bias", False)
        and config.get("hidden_act", "silu") == "silu"
        and int(config.get("pretraining_tp", 1) or 1) == 1
        and rope_type == "default"
    )


def rope_theta(config: dict) -> float:
    """The rotary base, where transformers 5 (``rope_parameters``) or 4 (top level) keeps it."""
    rope = config.get("rope_parameters") or {}
    return float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
