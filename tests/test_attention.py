"""Bidirectional attention must be real for every family, and causal mode must stay causal."""

from __future__ import annotations

import pytest

from conftest import FAMILIES, make_encoder, make_model
from ragkit.encoder.attention import check_attention, probe, set_bidirectional
from ragkit.errors import NotBidirectionalError


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("family", FAMILIES)
def test_probe_bidirectional_and_causal(family: str, attn: str) -> None:
    model = make_model(family, attn)
    set_bidirectional(model, True)
    bi = probe(model, vocab_size=128, pad_id=0)
    assert bi.is_bidirectional(), (family, attn, bi)
    set_bidirectional(model, False)
    causal = probe(model, vocab_size=128, pad_id=0)
    assert causal.is_causal(), (family, attn, causal)
    # All three padding layouts are measured, not only the easy unpadded one.
    assert min(bi.unpadded, bi.right_padded, bi.left_padded) > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
def test_encoder_load_runs_the_check(family: str) -> None:
    enc = make_encoder(family, bidirectional=True)
    assert enc.probe_result is not None and enc.probe_result.is_bidirectional()
    causal = make_encoder(family, bidirectional=False)
    assert causal.probe_result.is_causal()


def test_model_that_stays_causal_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """An architecture ignoring is_causal=False must fail loudly, naming itself."""
    import ragkit.encoder.encoder as encoder_module

    monkeypatch.setattr(encoder_module, "set_bidirectional", lambda model, enabled: None)
    with pytest.raises(NotBidirectionalError, match="'qwen2' stayed causal"):
        make_encoder("qwen2", bidirectional=True)


def test_model_that_is_not_causal_is_refused_as_baseline() -> None:
    model = make_model("llama")
    set_bidirectional(model, True)
    result = probe(model, vocab_size=128, pad_id=0)
    with pytest.raises(NotBidirectionalError, match="not causal"):
        check_attention(model, result, bidirectional=False)
