"""Which engine runs an encoder's transformer, decided in one place under one word.

- ``torch``: transformers on torch. Any device, dtype and attention implementation.
- ``light``: ragkit's own torch modules (:mod:`ragkit.encoder.light`), no transformers import.
- ``openvino``: the OpenVINO engine (:mod:`ragkit.encoder.openvino_engine`), fp32 or bf16.
- ``auto``: the fastest for bulk encoding of those that applies, in that order of
  preference: openvino, light, torch.
- ``lean``: the least memory of those that applies: light, openvino, torch. For a process
  that embeds a few queries (``ragkit ask``, a search), light is as fast as openvino, whose
  CPU plugin holds its own repacked copy of the weights beside the mapped file (about
  1.4 GB at peak for SmolLM2-135M, against 0.8 GB; BENCHMARKS.md).

The fast engines apply to a saved encoder with adapters, bidirectional, on a CPU, with the
default attention, and only once its merged weights are cached and verified against
transformers; then every engine gives the same vectors and the same fingerprint. Where one
does not apply the encoder runs on torch, so a choice never fails, only falls back.
"""

from __future__ import annotations

import logging

from ragkit.encoder.backbone import load_tokenizer
from ragkit.encoder.config import EncoderConfig
from ragkit.encoder.light_tokenizer import light_tokenizer_if_possible
from ragkit.encoder.merged import load_engine_merged, load_light_merged, load_merged
from ragkit.encoder.resolve import ResolvedEncoder
from ragkit.errors import InvalidInputError

log = logging.getLogger("ragkit")

BACKENDS = ("auto", "lean", "torch", "light", "openvino")
_PREFERENCE = {
    "auto": ("openvino", "light"),
    "lean": ("light", "openvino"),
    "openvino": ("openvino", "light"),
    "light": ("light",),
}


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise InvalidInputError(f"unknown backend {backend!r}: use {', '.join(BACKENDS)}")


def fast_engines(
    backend: str, resolved: ResolvedEncoder, config: EncoderConfig, *, cpu: bool, dtype, attn_implementation
) -> tuple[str, ...]:
    """The engines other than torch worth trying for this load, best first (may be none)."""
    if backend == "torch" or attn_implementation is not None:
        return ()
    if not (resolved.adapters and config.bidirectional and cpu):
        return ()
    fp32 = dtype in (None, "float32")
    bf16 = dtype == "bfloat16"  # the OpenVINO engine's opt-in only
    return tuple(e for e in _PREFERENCE[backend] if fp32 or (bf16 and e == "openvino"))


def load_backend(
    backend: str,
    resolved: ResolvedEncoder,
    config: EncoderConfig,
    *,
    cpu: bool,
    dtype: str | None,
    attn_implementation: str | None,
):
    """The merged (and pruned) model for ``backend`` and its tokenizer.

    Decided before reading anything, so a GPU or causal load never reads the tokenizer twice.
    """
    engines = fast_engines(
        backend, resolved, config, cpu=cpu, dtype=dtype, attn_implementation=attn_implementation
    )
    tokenizer = light_tokenizer_if_possible(resolved.tokenizer_folder) if engines else None
    for engine in engines if tokenizer is not None else ():
        if engine == "openvino":
            precision = "bf16" if dtype == "bfloat16" else "f32"
            model = load_engine_merged(resolved.backbone, resolved.adapters, config.layers, precision)
        else:
            model = load_light_merged(resolved.backbone, resolved.adapters, config.layers)
        if model is not None:
            _say_fallback(backend, engine)
            return model, tokenizer
    _say_fallback(backend, "torch")
    model = load_merged(
        resolved.backbone, resolved.adapters, layers=config.layers, attn_implementation=attn_implementation
    )
    return model, load_tokenizer(resolved.tokenizer_folder)


def _say_fallback(asked: str, used: str) -> None:
    if asked in ("openvino", "light") and used != asked:
        log.warning("the %s backend does not apply to this encoder here; encoding with %s", asked, used)
