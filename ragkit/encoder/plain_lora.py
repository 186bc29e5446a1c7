"""Whether an adapter is a plain LoRA: its weight change is ``(alpha / r) * B @ A`` and nothing else.

Averaging runs and cutting a rank both rewrite A, B, ``r`` and ``lora_alpha`` and keep the
change's scale through ``alpha / r``. Variants that scale by rank in their own way, add
magnitude vectors, biases or saved modules, or rewrite the base weights at load (PiSSA-style
initialisations) would come out silently wrong, so both refuse them here.
"""

from __future__ import annotations

from ragkit.encoder.adapters import Adapter
from ragkit.errors import EncoderFormatError

LORA_A = "lora_A.weight"
LORA_B = "lora_B.weight"

# LoRA variants whose weights are not a plain B @ A at scale alpha / r: any of them set refuses.
_VARIANTS = (
    "use_rslora",
    "use_dora",
    "use_qalora",
    "use_bdlora",
    "rank_pattern",
    "alpha_pattern",
    "target_parameters",
    "layer_replication",
    "modules_to_save",
    "trainable_token_indices",
    "alora_invocation_tokens",
    "lora_bias",
)
# Initialisations that leave the base weights alone (others, e.g. PiSSA, rewrite them by rank).
_PLAIN_INIT = (True, False, "gaussian", None)


def require_plain_lora(adapter: Adapter, action: str) -> list[str]:
    """The adapter's module prefixes (each holding one A and one B); refuses anything else."""
    config = adapter.config
    variant = next((key for key in _VARIANTS if config.get(key)), None)
    if variant or config.get("init_lora_weights", True) not in _PLAIN_INIT:
        setting = variant or f"init_lora_weights={config['init_lora_weights']!r}"
        raise EncoderFormatError(f"adapter '{adapter.name}' sets {setting}: only plain LoRAs can be {action}")
    if config.get("bias", "none") != "none":
        raise EncoderFormatError(f"adapter '{adapter.name}' trains biases: only plain LoRAs can be {action}")
    unknown = [k for k in adapter.tensors if not k.endswith((LORA_A, LORA_B))]
    if unknown:
        raise EncoderFormatError(
            f"adapter '{adapter.name}' holds weights that are not LoRA A/B: {unknown[0]}"
        )
    downs = {k[: -len(LORA_A)] for k in adapter.tensors if k.endswith(LORA_A)}
    ups = {k[: -len(LORA_B)] for k in adapter.tensors if k.endswith(LORA_B)}
    if downs != ups:
        lone = sorted(downs ^ ups)[0]
        raise EncoderFormatError(f"adapter '{adapter.name}' lacks the A or B half of {lone.rstrip('.')}")
    if not downs:
        raise EncoderFormatError(f"adapter '{adapter.name}' holds no LoRA weights")
    return sorted(downs)
