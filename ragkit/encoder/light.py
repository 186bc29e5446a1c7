"""Query-time loading without transformers: for a terminal's cold start.

Importing transformers' model stack costs seconds, most of ``ragkit ask``'s cold start,
while the query itself takes a tenth of one (BENCHMARKS.md). For the one architecture family the default
encoder uses (Llama: SmolLM2), this module runs the same computation from plain torch ops:
the merged safetensors weights, the ``tokenizers`` backend of the saved tokenizer, and a
bidirectional forward pass.

It is never trusted on its own: when the merged-weights cache is built (with transformers
loaded anyway) the light forward is compared with transformers' on a probe batch, padded on
both sides, and the cache records the verdict. The light path is used only when that
verdict is present, the device is a CPU in fp32 and the attention is bidirectional; anything
else (another family, rope scaling, biases, GPU) loads through transformers as before.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn
from torch.nn import functional as F

from ragkit.encoder.llama_layout import rope_theta, supports

VERIFY_TOLERANCE = 1e-4
"""Largest absolute difference from transformers' hidden states accepted at verification."""


class _RMSNorm(nn.Module):
    def __init__(self, weight: torch.Tensor, eps: float):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.eps = eps

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        variance = hidden.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (hidden * torch.rsqrt(variance + self.eps)).to(hidden.dtype)


def _linear(weight: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
    layer.weight = nn.Parameter(weight, requires_grad=False)
    return layer


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class _Layer(nn.Module):
    def __init__(self, weights: dict, prefix: str, config: dict):
        super().__init__()
        eps = float(config.get("rms_norm_eps", 1e-6))
        self.heads = int(config["num_attention_heads"])
        self.kv_heads = int(config.get("num_key_value_heads") or self.heads)
        self.head_dim = int(config.get("head_dim") or config["hidden_size"] // self.heads)
        self.input_layernorm = _RMSNorm(weights[f"{prefix}input_layernorm.weight"], eps)
        self.post_attention_layernorm = _RMSNorm(weights[f"{prefix}post_attention_layernorm.weight"], eps)
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            setattr(self, name, _linear(weights[f"{prefix}self_attn.{name}.weight"]))
        for name in ("gate_proj", "up_proj", "down_proj"):
            setattr(self, name, _linear(weights[f"{prefix}mlp.{name}.weight"]))

    def forward(self, hidden, cos, sin, mask):
        batch, length, _ = hidden.shape
        x = self.input_layernorm(hidden)
        q = self.q_proj(x).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=False)
        hidden = hidden + self.o_proj(attended.transpose(1, 2).reshape(batch, length, -1))
        x = self.post_attention_layernorm(hidden)
        return hidden + self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LightLlama(nn.Module):
    """A bidirectional Llama encoder body with transformers' call signature for encoding."""

    backend = "light"

    def __init__(self, weights: dict, config: dict):
        super().__init__()
        self.config = SimpleNamespace(**{**config, "is_causal": False})
        self.embed_tokens = nn.Embedding.from_pretrained(weights["embed_tokens.weight"], freeze=True)
        self.layers = nn.ModuleList(
            _Layer(weights, f"layers.{i}.", config) for i in range(int(config["num_hidden_layers"]))
        )
        self.norm = _RMSNorm(weights["norm.weight"], float(config.get("rms_norm_eps", 1e-6)))
        head_dim = self.layers[0].head_dim
        exponent = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
        self.register_buffer("inv_freq", 1.0 / (rope_theta(config) ** exponent), persistent=False)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def rotary(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The rotary embedding's cosines and sines for these positions."""
        freqs = position_ids[:, :, None].float() * self.inv_freq[None, None, :]
        angles = torch.cat((freqs, freqs), dim=-1)
        return angles.cos()[:, None].to(dtype), angles.sin()[:, None].to(dtype)

    def forward(self, input_ids, attention_mask=None, position_ids=None, **_ignored):
        batch, length = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if position_ids is None:
            position_ids = torch.arange(length, device=input_ids.device).expand(batch, length)
        hidden = self.embed_tokens(input_ids)
        cos, sin = self.rotary(position_ids, hidden.dtype)
        # Every token sees every real token: a padding-only mask, as transformers builds it
        # for is_causal=False. None when nothing is padded, so SDPA takes its fast path.
        mask = None if bool(attention_mask.all()) else attention_mask[:, None, None, :].bool()
        for layer in self.layers:
            hidden = layer(hidden, cos, sin, mask)
        return SimpleNamespace(last_hidden_state=self.norm(hidden))


def load_light_model(folder: Path) -> LightLlama:
    """The model in a merged-weights folder, built from its safetensors without transformers."""
    from safetensors.torch import load_file

    config = json.loads((folder / "config.json").read_text())
    if not supports(config):
        raise ValueError(f"{folder} is not a plain Llama model")
    weights: dict = {}
    for path in sorted(folder.glob("*.safetensors")):
        weights.update(load_file(str(path)))
    weights = {k.removeprefix("model."): v.float() for k, v in weights.items()}
    return LightLlama(weights, config).eval()


def verify_against(reference, folder: Path) -> float:
    """Largest difference between the light model and ``reference`` (transformers) on a probe.

    Rows padded on the right and on the left check the mask and the position ids, so a
    mismatch anywhere shows up here rather than in someone's search results.
    """
    light = load_light_model(folder)
    generator = torch.Generator().manual_seed(0)
    vocab = light.embed_tokens.num_embeddings
    ids = torch.randint(3, vocab, (3, 11), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    mask[2, :4] = 0
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.inference_mode():
        ours = light(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state
        theirs = reference(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False
        ).last_hidden_state
    real = mask.bool()
    difference = (ours[real] - theirs[real].float()).abs().max().item()
    return difference if math.isfinite(difference) else float("inf")
