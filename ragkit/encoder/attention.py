"""Bidirectional attention through transformers' shared mask machinery, and proof of it.

Setting ``config.is_causal = False`` makes transformers' mask builders return a padding-only
(bidirectional) mask for every architecture that uses them, with no per-family subclass.
Because some families ignore that flag, the encoder does not trust it: :func:`probe` measures
whether changing the *last* token moves the *first* token's hidden state, with and without
padding on either side, and :func:`check_attention` refuses a model that disagrees.
"""

from __future__ import annotations

from dataclasses import dataclass

from ragkit.errors import NotBidirectionalError

_PROBE_LENGTH = 8
_PROBE_PAD = 3
_CAUSAL_TOL = 1e-5  # relative change allowed in causal mode (float noise only)
_BIDIRECTIONAL_MIN = 1e-4  # relative change required in bidirectional mode


def set_bidirectional(model, enabled: bool) -> None:
    """Switch a loaded model between bidirectional and causal attention in place."""
    for config in {id(c): c for c in _configs(model)}.values():
        config.is_causal = not enabled
    # Attention modules read their own flag when no mask is materialised (no padding);
    # keep them in step with the config so SDPA never takes its causal fast path.
    for module in model.modules():
        if hasattr(module, "is_causal") and isinstance(module.is_causal, bool):
            module.is_causal = not enabled


def _configs(model):
    config = model.config
    yield config
    text = getattr(config, "text_config", None)
    if text is not None:
        yield text


@dataclass(frozen=True)
class ProbeResult:
    """How much the first token moved when only the last token changed, per padding layout."""

    unpadded: float
    right_padded: float
    left_padded: float

    @property
    def smallest(self) -> float:
        return min(self.unpadded, self.right_padded, self.left_padded)

    @property
    def largest(self) -> float:
        return max(self.unpadded, self.right_padded, self.left_padded)

    def is_bidirectional(self) -> bool:
        return self.smallest > _BIDIRECTIONAL_MIN

    def is_causal(self) -> bool:
        return self.largest < _CAUSAL_TOL


def probe(model, *, vocab_size: int, pad_id: int, device=None) -> ProbeResult:
    """Measure the first token's relative change when the last token is replaced."""
    import torch

    device = device or next(model.parameters()).device
    gen = torch.Generator().manual_seed(1234)
    low = min(10, vocab_size - 2)
    ids = torch.randint(low, vocab_size, (_PROBE_LENGTH,), generator=gen)
    changed = ids.clone()
    changed[-1] = low + (int(ids[-1]) - low + 1) % (vocab_size - low)
    rows = torch.stack([ids, changed])
    pads = torch.full((2, _PROBE_PAD), pad_id)
    ones = torch.ones(2, _PROBE_LENGTH, dtype=torch.long)
    zeros = torch.zeros(2, _PROBE_PAD, dtype=torch.long)
    layouts = {
        "unpadded": (rows, ones, 0),
        "right_padded": (torch.cat([rows, pads], 1), torch.cat([ones, zeros], 1), 0),
        "left_padded": (torch.cat([pads, rows], 1), torch.cat([zeros, ones], 1), _PROBE_PAD),
    }
    changes = {}
    with torch.inference_mode():
        for name, (input_ids, mask, first) in layouts.items():
            positions = (mask.cumsum(1) - 1).clamp(min=0)
            hidden = model(
                input_ids=input_ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
            ).last_hidden_state.float()
            a, b = hidden[0, first], hidden[1, first]
            changes[name] = float((a - b).norm() / a.norm().clamp(min=1e-12))
    return ProbeResult(**changes)


def check_attention(model, result: ProbeResult, *, bidirectional: bool) -> None:
    """Raise if the measured attention does not match what was asked for."""
    family = getattr(model.config, "model_type", type(model).__name__)
    if bidirectional and not result.is_bidirectional():
        raise NotBidirectionalError(
            f"architecture '{family}' stayed causal with is_causal=False (first-token change "
            f"{result.smallest:.2e}); ragkit cannot make it bidirectional, use bidirectional=False "
            "or another backbone"
        )
    if not bidirectional and not result.is_causal():
        raise NotBidirectionalError(
            f"architecture '{family}' is not causal in causal mode (first-token change "
            f"{result.largest:.2e}); it cannot serve as a causal baseline"
        )
