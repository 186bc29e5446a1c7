"""MNTP masking and label shift, and the SimCSE loss, checked against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from ragkit.trainer.losses import MNTPObjective, SimCSEObjective, info_nce, shifted_targets
from ragkit.trainer.masking import IGNORE_INDEX, MaskingScheme, mask_tokens

PAD, BOS, MASK = 0, 2, 5


def _batch(rows: int = 400, width: int = 64, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(8, width + 1, (rows,), generator=generator)
    ids = torch.randint(10, 1000, (rows, width), generator=generator)
    attention = (torch.arange(width)[None, :] < lengths[:, None]).long()
    ids[:, 0] = BOS
    ids[attention == 0] = PAD
    return ids, attention


def _tiny_masked_batch(rows: int, width: int, seed: int):
    """A batch within the tiny models' 128-token vocabulary, masked with a fixed seed."""
    ids, attention = _batch(rows=rows, width=width, seed=seed)
    ids = ids % 128
    ids[:, 0] = BOS
    ids[attention == 0] = PAD
    _, labels = mask_tokens(
        ids,
        attention,
        special_ids={PAD, BOS},
        mask_id=MASK,
        vocab_size=128,
        generator=torch.Generator().manual_seed(0),
    )
    return ids, attention, labels


def test_masking_statistics_on_a_large_seeded_batch():
    ids, attention = _batch()
    masked, labels = mask_tokens(
        ids,
        attention,
        special_ids={PAD, BOS},
        mask_id=MASK,
        vocab_size=1000,
        scheme=MaskingScheme(probability=0.2),
        generator=torch.Generator().manual_seed(1),
    )
    chosen = labels != IGNORE_INDEX
    candidates = (attention == 1) & (ids != BOS)
    # Never a special, padding or first token; labels hold the original ids.
    assert not (chosen & ~candidates).any()
    assert torch.equal(labels[chosen], ids[chosen])
    assert not chosen[:, 0].any()
    fraction = chosen.sum().item() / candidates.sum().item()
    assert abs(fraction - 0.2) < 0.01
    n = chosen.sum().item()
    to_mask = (masked == MASK) & chosen
    unchanged = (masked == ids) & chosen
    random = chosen & ~to_mask & ~unchanged
    assert abs(to_mask.sum().item() / n - 0.8) < 0.02
    # A random draw can land on the original id; that counts as "unchanged" (about 0.1 %).
    assert abs(random.sum().item() / n - 0.1) < 0.015
    assert abs(unchanged.sum().item() / n - 0.1) < 0.015
    # Outside the chosen positions nothing changes.
    assert torch.equal(masked[~chosen], ids[~chosen])


def test_masking_is_seeded_and_never_empty():
    ids, attention = _batch(rows=2, width=10)
    first = mask_tokens(
        ids,
        attention,
        special_ids={PAD, BOS},
        mask_id=MASK,
        vocab_size=1000,
        generator=torch.Generator().manual_seed(3),
    )
    again = mask_tokens(
        ids,
        attention,
        special_ids={PAD, BOS},
        mask_id=MASK,
        vocab_size=1000,
        generator=torch.Generator().manual_seed(3),
    )
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    _, labels = mask_tokens(
        ids,
        attention,
        special_ids={PAD, BOS},
        mask_id=MASK,
        vocab_size=1000,
        scheme=MaskingScheme(probability=0.0),
    )
    assert (labels != IGNORE_INDEX).sum() == 1


def test_label_shift_pairs_token_i_with_hidden_state_i_minus_one():
    hidden = torch.arange(2 * 5, dtype=torch.float).reshape(2, 5, 1)  # value = row*5 + position
    labels = torch.full((2, 5), IGNORE_INDEX)
    labels[0, 3] = 7
    labels[1, 1] = 9
    source, target = shifted_targets(hidden, labels)
    assert source.squeeze(-1).tolist() == [2.0, 5.0]  # row 0 position 2, row 1 position 0
    assert target.tolist() == [7, 9]


def test_mntp_objective_equals_full_logits_cross_entropy(tiny_causal_dir):
    from transformers import AutoModelForCausalLM

    from ragkit.encoder.attention import set_bidirectional

    model = AutoModelForCausalLM.from_pretrained(tiny_causal_dir).eval()
    set_bidirectional(model, True)
    ids, attention, labels = _tiny_masked_batch(rows=3, width=10, seed=2)
    loss = MNTPObjective(model)(ids, attention, labels)
    logits = model(input_ids=ids, attention_mask=attention).logits
    expected = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 128), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_info_nce_matches_a_hand_computation():
    first = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    second = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    t = 0.05
    c = 1 / math.sqrt(2)  # cosine of (1,0) with (1,1), and of (0,1) with (1,1)
    row0 = -math.log(math.exp(c / t) / (math.exp(c / t) + math.exp(0 / t)))
    row1 = -math.log(math.exp(1 / t) / (math.exp(c / t) + math.exp(1 / t)))
    assert info_nce(first, second, t).item() == pytest.approx((row0 + row1) / 2, rel=1e-5)


def _steps_lower_loss(objective, params, inputs, steps=30, lr=1e-2):
    def measured():
        torch.manual_seed(123)  # the same dropout masks before and after
        with torch.no_grad():
            return objective(*inputs).item()

    before = measured()
    optimizer = torch.optim.AdamW(params, lr=lr)
    for step in range(steps):
        torch.manual_seed(step)
        loss = objective(*inputs)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return before, measured()


def test_a_few_steps_lower_each_stage_loss(tiny_causal_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ragkit.encoder.attention import set_bidirectional

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_causal_dir)
    set_bidirectional(model, True)
    decoder = get_peft_model(
        model.get_decoder(),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"]),
    )
    params = [p for p in decoder.parameters() if p.requires_grad]
    ids, attention, labels = _tiny_masked_batch(rows=8, width=12, seed=4)
    model.train()
    before, after = _steps_lower_loss(MNTPObjective(model), params, (ids, attention, labels))
    assert after < before * 0.9

    for module in decoder.modules():
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.3
    objective = SimCSEObjective(decoder.base_model.model, temperature=0.05)
    before, after = _steps_lower_loss(objective, params, (ids, attention))
    assert after < before


def test_hidden_dropout_hooks_only_act_in_training_and_remove_cleanly(tiny_causal_dir):
    """SimCSE's views must differ in training; evaluation and the model after are untouched."""
    from transformers import AutoModelForCausalLM

    from ragkit.trainer.lora import add_hidden_dropout as _add_hidden_dropout

    model = AutoModelForCausalLM.from_pretrained(tiny_causal_dir).get_decoder()
    ids = torch.randint(10, 100, (2, 9), generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        plain = model(input_ids=ids).last_hidden_state
    hooks = _add_hidden_dropout(model, 0.1)
    assert len(hooks) == 2 * model.config.num_hidden_layers  # one per attention and MLP block
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).last_hidden_state, plain)
        model.train()
        first, second = model(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state
    assert (first - second).abs().max() > 1e-3
    for handle in hooks:
        handle.remove()
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(input_ids=ids).last_hidden_state, plain)
    assert _add_hidden_dropout(model, 0.0) == []
