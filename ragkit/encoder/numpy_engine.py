"""Queries without torch or transformers: NumPy over the merged, verified weights.

A cold ``ragkit ask`` spends most of its time and memory importing torch, for a forward
pass over a dozen tokens (BENCHMARKS.md). For a saved encoder whose merged weights are
cached (:mod:`ragkit.encoder.merged`), this engine runs that pass in NumPy over the
memory-mapped safetensors file, tokenizes with the ``tokenizers`` library and computes the
fingerprint from the files themselves, so a search process never imports torch.

Like the light engine it is never trusted on its own. The light forward is verified against
transformers when the merged cache is built; the first time the light engine runs, this
forward is compared with it on probes (see :func:`verify_against_light`)
and the verdict is written beside the cache as ``numpy-forward.json``. Only a passing
verdict, a plain Llama body and a bidirectional saved encoder let it load; anything else
returns None and the caller loads the usual way.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from ragkit.encoder.llama_layout import rope_theta, supports

log = logging.getLogger("ragkit")

VERDICT_NAME = "numpy-forward.json"
ENGINE_VERSION = 1
"""Part of every verdict with NumPy's version: a verdict of another engine or NumPy is none."""
RELATIVE_TOLERANCE = 1e-4
"""Largest difference from the light forward's hidden states accepted, relative to their
largest absolute value."""
MIN_POOLED_COSINE = 1 - 1e-6
"""Smallest cosine accepted between the two forwards' mean-pooled probe vectors."""
_PROBE_LENGTHS = (11, 7, 3, 160)


class NumpyLlama:
    """A bidirectional Llama body over float32 arrays, one unpadded sequence at a time."""

    backend = "numpy"

    def __init__(self, weights: dict[str, np.ndarray], config: dict):
        self.config = config
        self.weights = weights
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.kv_heads = int(config.get("num_key_value_heads") or self.heads)
        self.head_dim = int(config.get("head_dim") or config["hidden_size"] // self.heads)
        self.eps = float(config.get("rms_norm_eps", 1e-6))
        theta = rope_theta(config)
        exponent = np.arange(0, self.head_dim, 2, dtype=np.float32) / self.head_dim
        self.inv_freq = (1.0 / theta**exponent).astype(np.float32)
        self.parameter_count = int(sum(w.size for w in weights.values()))

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        scale = 1.0 / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps)
        return self.weights[name] * (x * scale)

    def _rotary(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        angles = np.arange(length, dtype=np.float32)[:, None] * self.inv_freq[None]
        angles = np.concatenate([angles, angles], -1)
        return np.cos(angles)[None], np.sin(angles)[None]

    @staticmethod
    def _rotate_half(x: np.ndarray) -> np.ndarray:
        half = x.shape[-1] // 2
        return np.concatenate([-x[..., half:], x[..., :half]], -1)

    def _project(self, x: np.ndarray, name: str, heads: int) -> np.ndarray:
        out = x @ self.weights[name].T
        return out.reshape(len(x), heads, self.head_dim).transpose(1, 0, 2)

    def _attention(self, x: np.ndarray, prefix: str, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        q = self._project(x, prefix + "self_attn.q_proj.weight", self.heads)
        k = self._project(x, prefix + "self_attn.k_proj.weight", self.kv_heads)
        v = self._project(x, prefix + "self_attn.v_proj.weight", self.kv_heads)
        q = q * cos + self._rotate_half(q) * sin
        k = k * cos + self._rotate_half(k) * sin
        if self.kv_heads != self.heads:
            k = np.repeat(k, self.heads // self.kv_heads, axis=0)
            v = np.repeat(v, self.heads // self.kv_heads, axis=0)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(self.head_dim)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attended = (scores / scores.sum(-1, keepdims=True)) @ v
        return (
            attended.transpose(1, 0, 2).reshape(len(x), -1)
            @ self.weights[prefix + "self_attn.o_proj.weight"].T
        )

    def _mlp(self, x: np.ndarray, prefix: str) -> np.ndarray:
        gate = x @ self.weights[prefix + "mlp.gate_proj.weight"].T
        up = x @ self.weights[prefix + "mlp.up_proj.weight"].T
        with np.errstate(over="ignore"):  # exp(-gate) overflows to inf for gate < -88: silu 0
            silu = gate / (1.0 + np.exp(-gate))
        return (silu * up) @ self.weights[prefix + "mlp.down_proj.weight"].T

    def forward(self, ids: list[int]) -> np.ndarray:
        """Final hidden states ``[len(ids), hidden]`` of one sequence, every token seeing all."""
        hidden = np.asarray(self.weights["embed_tokens.weight"][np.asarray(ids)], dtype=np.float32)
        cos, sin = self._rotary(len(ids))
        for i in range(self.layers):
            prefix = f"layers.{i}."
            hidden = hidden + self._attention(
                self._norm(hidden, prefix + "input_layernorm.weight"), prefix, cos, sin
            )
            hidden = hidden + self._mlp(
                self._norm(hidden, prefix + "post_attention_layernorm.weight"), prefix
            )
        return self._norm(hidden, "norm.weight")


def load_numpy_model(folder: Path) -> NumpyLlama:
    """The model in a merged-weights folder, its float32 weights memory-mapped."""
    from ragkit.encoder.numpy_weights import read_float_tensors

    config = json.loads((folder / "config.json").read_text())
    if not supports(config):
        raise ValueError(f"{folder} is not a plain Llama model")
    weights: dict[str, np.ndarray] = {}
    for path in sorted(folder.glob("*.safetensors")):
        weights.update(read_float_tensors(path))
    return NumpyLlama({k.removeprefix("model."): v for k, v in weights.items()}, config)


def _compare(model: NumpyLlama, light, ids: list[int]) -> tuple[float, float]:
    """(largest difference relative to the largest state, cosine of the mean-pooled vectors)."""
    import torch

    with torch.inference_mode():
        theirs = light(input_ids=torch.tensor([ids])).last_hidden_state[0].float().numpy()
    ours = model.forward(ids)
    relative = float(np.abs(ours - theirs).max()) / max(float(np.abs(theirs).max()), 1e-6)
    a, b = ours.mean(0), theirs.mean(0)
    cosine = float(a @ b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12)
    return relative, cosine


def verify_against_light(light, folder: Path) -> dict | None:
    """Compare this forward with the light model's on seeded probes (torch is loaded then);
    None when no comparison could be made (the folder could not be read).

    The bound on states is relative to the largest one: NumPy's BLAS sums in another order
    than torch's, which over 30 layers moves values of about 50 by about 1e-3; the pooled
    vectors, what a search sees, must agree to a cosine of 1 - 1e-6. One probe is long, so
    rotary positions well past a short query's are checked too.
    """
    try:
        model = load_numpy_model(folder)
    except (OSError, ValueError, KeyError) as exc:
        log.info("the NumPy engine cannot read %s (%s)", folder, exc)
        return None
    rng = np.random.default_rng(0)
    vocab = int(model.weights["embed_tokens.weight"].shape[0])
    compared = [_compare(model, light, rng.integers(3, vocab, size=n).tolist()) for n in _PROBE_LENGTHS]
    relative = max(r for r, _ in compared)
    cosine = min(c for _, c in compared)
    if not (math.isfinite(relative) and math.isfinite(cosine)):
        relative, cosine = float("inf"), 0.0
    return {
        "verified": relative <= RELATIVE_TOLERANCE and cosine >= MIN_POOLED_COSINE,
        "max_relative_difference": relative,
        "min_pooled_cosine": cosine,
        **_versions(),
    }


def _versions() -> dict:
    return {"engine_version": ENGINE_VERSION, "numpy": np.__version__}


def read_verdict(folder: Path) -> dict | None:
    """The recorded verdict, if it was made by this engine with this NumPy; else None."""
    try:
        verdict = json.loads((folder / VERDICT_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(verdict, dict) or any(verdict.get(k) != v for k, v in _versions().items()):
        return None
    return verdict


def record_verdict(folder: Path, light) -> dict | None:
    """Verify once per merged cache and remember it. Never fails the light load it rides on:
    a check that raises is logged and left unrecorded, so the next load tries again."""
    from ragkit.atomic import write_text

    verdict = read_verdict(folder)
    if verdict is not None:
        return verdict
    try:
        verdict = verify_against_light(light, folder)
    except Exception as exc:  # an optional speed-up must never break the load it rides on
        log.info("the NumPy engine check failed for %s (%s)", folder, exc)
        return None
    if verdict is None:
        return None
    try:
        write_text(folder / VERDICT_NAME, json.dumps(verdict))
    except OSError as exc:
        log.info("could not record the NumPy verdict in %s (%s)", folder, exc)
    return verdict
