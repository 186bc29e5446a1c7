"""The supervised stage's teacher, mixture and candidate masks: KL, false negatives, cache."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from test_trainer_run import run_cli
from test_trainer_supervised import _salad_pairs, _write_pairs

from conftest import make_model, make_tokenizer
from ragkit.errors import InvalidInputError
from ragkit.trainer.losses import SupervisedObjective, correlation_distillation, distillation_kl
from ragkit.trainer.pairs import (
    PairBatches,
    distinct_positive_order,
    mixture_weights,
    parse_mixture,
    read_pairs,
)
from ragkit.trainer.teacher import FALSE_NEGATIVE_MARGIN, open_teacher, teacher_judgement

SMALL = ["--steps", "4", "--batch-size", "4", "--max-length", "24", "--checkpoint-every", "2"]


def test_kl_term_equals_a_hand_computation():
    student = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    teacher = torch.tensor([[1.0, 1.0, 0.0], [0.5, -0.5, 2.0]])
    allowed = torch.tensor([[True, True, True], [True, False, True]])

    def softmax(values):
        exps = [math.exp(v) for v in values]
        return [e / sum(exps) for e in exps]

    expected = 0.0
    for s_row, t_row, keep in zip(student.tolist(), teacher.tolist(), allowed.tolist(), strict=True):
        s = softmax([v for v, k in zip(s_row, keep, strict=True) if k])
        t = softmax([v for v, k in zip(t_row, keep, strict=True) if k])
        expected += sum(ti * math.log(ti / si) for ti, si in zip(t, s, strict=True))
    expected /= 2
    assert distillation_kl(student, teacher, allowed).item() == pytest.approx(expected, rel=1e-5)
    same = distillation_kl(teacher, teacher, allowed).item()
    assert same == pytest.approx(0.0, abs=1e-6)


def test_correlation_term_equals_a_hand_computation():
    student = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    teacher = torch.tensor([[1.0, 1.0, 0.0], [0.5, -0.5, 2.0]])
    allowed = torch.tensor([[True, True, True], [True, False, True]])
    s = [2.0, 0.5, -1.0, 0.0, 3.0]  # the allowed entries, row by row
    t = [1.0, 1.0, 0.0, 0.5, 2.0]
    ms, mt = sum(s) / 5, sum(t) / 5
    covariance = sum((a - ms) * (b - mt) for a, b in zip(s, t, strict=True))
    spread = math.sqrt(sum((a - ms) ** 2 for a in s) * sum((b - mt) ** 2 for b in t))
    expected = 1 - covariance / spread
    assert correlation_distillation(student, teacher, allowed).item() == pytest.approx(expected, rel=1e-5)
    # Blind to the teacher's scale and offset (its temperature, its cosine range)...
    moved = correlation_distillation(student, 3.0 * teacher - 7.0, allowed).item()
    assert moved == pytest.approx(expected, rel=1e-5)
    # ...but not to the order across rows, which a per-row softmax cannot see.
    shifted = student + torch.tensor([[0.0], [5.0]])
    assert distillation_kl(shifted, teacher, allowed).item() == pytest.approx(
        distillation_kl(student, teacher, allowed).item(), rel=1e-5
    )
    assert correlation_distillation(shifted, teacher, allowed).item() != pytest.approx(expected, rel=1e-2)
    assert correlation_distillation(teacher, teacher, allowed).item() == pytest.approx(0.0, abs=1e-6)
    lone = torch.zeros_like(allowed)
    lone[0, 0] = True
    assert correlation_distillation(student, teacher, lone).item() == 0.0
    flat = correlation_distillation(torch.ones(2, 3), teacher, allowed)
    assert flat.item() == 0.0


def test_supervised_loss_adds_the_weighted_correlation_term():
    torch.manual_seed(0)
    first, second = torch.randn(3, 4), torch.randn(3, 4)
    teacher = torch.randn(3, 3)
    allowed = torch.tensor([[True, True, False], [True, True, True], [True, True, True]])

    def loss(weight: float) -> float:
        objective = SupervisedObjective(torch.nn.Identity(), temperature=0.1, correlation_weight=weight)
        vectors = iter([first, second])
        objective.embed = lambda **_: next(vectors)
        return objective({}, {}, allowed=allowed, teacher=teacher).item()

    scores = torch.nn.functional.normalize(first) @ torch.nn.functional.normalize(second).T / 0.1
    term = correlation_distillation(scores, teacher, allowed).item()
    assert term > 0.1
    assert loss(2.0) == pytest.approx(loss(0.0) + 2.0 * term, rel=1e-5)


def test_filter_drops_a_negative_above_the_margin_and_keeps_one_below():
    query = np.array([[1.0, 0.0]])
    positive_score = 0.8
    above = positive_score * (FALSE_NEGATIVE_MARGIN + 0.02)
    below = positive_score * (FALSE_NEGATIVE_MARGIN - 0.05)
    passages = np.array([[positive_score, 0.6], [above, 0.1], [below, 0.2]])
    allowed = np.ones((1, 3), dtype=bool)
    logits, keep = teacher_judgement(query, passages, [0], allowed)
    assert keep.tolist() == [[True, False, True]]
    assert logits[0, 0] == pytest.approx(positive_score / 0.05)
    # padding stays out whatever the teacher says
    _, keep = teacher_judgement(query, passages, [0], np.array([[True, True, False]]))
    assert keep.tolist() == [[True, False, False]]


def test_mixture_weights_and_their_errors():
    sizes = {"big": 10000, "small": 100}
    assert mixture_weights(sizes, "size")["big"] == pytest.approx(10000 / 10100)
    assert mixture_weights(sizes, "sqrt")["big"] == pytest.approx(100 / 110)
    assert mixture_weights(sizes, {"big": 1, "small": 3})["small"] == pytest.approx(0.75)
    with pytest.raises(InvalidInputError, match="missing: small"):
        mixture_weights(sizes, {"big": 1})
    with pytest.raises(InvalidInputError, match="unknown: other"):
        mixture_weights(sizes, {"big": 1, "small": 1, "other": 1})
    assert parse_mixture("squad=3, qed=1") == {"squad": 3.0, "qed": 1.0}
    assert parse_mixture(None) == "sqrt"
    for bad in ("squad", "squad=0", "squad=x", "=2"):
        with pytest.raises(InvalidInputError, match="--mixture"):
            parse_mixture(bad)


def test_batches_follow_the_mixture_not_the_sizes(tmp_path):
    big = _write_pairs(tmp_path / "big.jsonl", _salad_pairs(400, 0))
    small = _write_pairs(tmp_path / "small.jsonl", _salad_pairs(16, 1))
    pair_set = read_pairs([big, small])
    counts = {"size": 0, "sqrt": 0}
    for mixture in counts:
        order = PairBatches(pair_set, 4, seed=0, mixture=mixture)
        counts[mixture] = sum(pair_set.pairs[order.rows(s)[0]].dataset == "small" for s in range(2000))
    assert counts["size"] / 2000 == pytest.approx(16 / 416, abs=0.015)
    assert counts["sqrt"] / 2000 == pytest.approx(4 / 24, abs=0.03)
    again = PairBatches(pair_set, 4, seed=0, mixture="sqrt")
    assert [again.rows(s) for s in (0, 4095, 4096, 5000)] == [
        PairBatches(pair_set, 4, seed=0, mixture="sqrt").rows(s) for s in (0, 4095, 4096, 5000)
    ]


def test_a_batch_does_not_repeat_a_positive(tmp_path):
    rows = []
    for i in range(12):  # 12 paragraphs with 4 questions each, as SQuAD shares paragraphs
        rows += [{"query": f"question {q} what {i}", "positive": f"paragraph {i} cat"} for q in range(4)]
    pair_set = read_pairs([_write_pairs(tmp_path / "squad.jsonl", rows)])
    order = PairBatches(pair_set, 8, seed=1)
    for step in range(12):
        positives = [pair_set.pairs[i].positive for i in order.rows(step)]
        assert len(set(positives)) == len(positives)
    assert distinct_positive_order([0, 1, 2, 3], ["a", "a", "b", "b"]) == [0, 2, 1, 3]


def test_repeated_positive_in_a_batch_is_not_its_own_negative(tmp_path):
    from ragkit.trainer.batches import PairSteps as _PairSteps
    from ragkit.trainer.options import TrainOptions
    from ragkit.trainer.recipe import RECIPES

    rows = [
        {"query": "q one what", "positive": "the shared cat"},
        {"query": "q two who", "positive": "the shared cat"},
    ]
    rows += [{"query": f"other {i} how", "positive": f"passage {i} dog"} for i in range(2)]
    pair_set = read_pairs([_write_pairs(tmp_path / "p.jsonl", rows)])
    options = TrainOptions(out=tmp_path, recipe=RECIPES["quick"].with_overrides(batch_size=4))
    steps = _PairSteps(make_tokenizer(), pair_set, options)
    steps.order.rows = lambda step: [0, 1, 2, 3]
    plan = steps.layout(0, 0, 1)
    assert plan["allowed"][0] == [True, False, True, True]
    assert plan["allowed"][1] == [False, True, True, True]
    assert plan["allowed"][2] == [True, True, True, True]
    # two processes: each contributes `width` columns, padding is never a candidate
    left, right = steps.layout(0, 0, 2), steps.layout(0, 1, 2)
    assert left["columns"] == right["columns"] and left["targets"] == [0, 1] and right["targets"] == [2, 3]


class _CountingEncoder:
    """Wraps a teacher encoder and counts the texts it is asked to embed."""

    def __init__(self, encoder):
        self.inner, self.calls = encoder, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, texts, **kwargs):
        self.calls += len(texts)
        return self.inner.encode(texts, **kwargs)


def _teacher_folder(tmp_path, seed: int = 3):
    """A ragkit-loadable teacher with its own (different) tokenizer: vocabulary and no BOS."""
    folder = tmp_path / f"teacher-{seed}"
    make_model("llama", seed=seed, vocab_size=160).save_pretrained(folder, safe_serialization=True)
    make_tokenizer(bos=False, eos=True).save_pretrained(folder)
    return folder


def test_teacher_cache_is_reused_for_the_same_teacher_and_pair_set(tmp_path):
    folder = _teacher_folder(tmp_path)
    texts = ["the cat sat", "the dog ran fast", "a big red house"]
    first = open_teacher(str(folder), "pairs-a", root=tmp_path / "home")
    first.encoder = _CountingEncoder(first.encoder)
    vectors = first.vectors(texts, query=False)
    assert first.encoder.calls == 3
    again = open_teacher(str(folder), "pairs-a", root=tmp_path / "home")
    again.encoder = _CountingEncoder(again.encoder)
    assert np.allclose(again.vectors(texts, query=False), vectors)
    assert again.encoder.calls == 0
    other = open_teacher(str(folder), "pairs-b", root=tmp_path / "home")
    other.encoder = _CountingEncoder(other.encoder)
    other.vectors(texts, query=False)
    assert other.encoder.calls == 3 and other.cache.path != again.cache.path
    another = open_teacher(str(_teacher_folder(tmp_path, seed=4)), "pairs-a", root=tmp_path / "home")
    assert another.cache.path != again.cache.path


def test_training_with_a_teacher_of_another_tokenizer(tiny_causal_dir, tmp_path, capsys):
    pairs = _write_pairs(tmp_path / "pairs.jsonl", _salad_pairs(24, 0))
    teacher = _teacher_folder(tmp_path)
    out = tmp_path / "out"
    args = ["train", "--backbone", str(tiny_causal_dir), "--stages", "supervised", "--pairs", str(pairs)]
    code, err = run_cli(
        [*args, *SMALL, "--teacher", str(teacher), "--distill-weight", "0.5", "--out", str(out)], capsys
    )
    assert code == 0, err
    run = json.loads((out / "training.json").read_text())
    assert run["teacher"] and run["distill_weight"] == 0.5 and run["teacher_filter"] is True
    stages = json.loads((out / "stages.json").read_text())
    assert "false_negatives_dropped" in stages["supervised"]
    assert "Teacher:" in (out / "README.md").read_text()
    plain = tmp_path / "plain"
    code, err = run_cli([*args, *SMALL, "--out", str(plain)], capsys)
    assert code == 0, err
    with_teacher = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    without = [json.loads(x)["loss"] for x in (plain / "metrics.jsonl").read_text().splitlines()]
    assert with_teacher != without  # the KL term is part of the loss


@pytest.mark.parametrize("kind", ["missing", "broken"])
def test_missing_or_broken_teacher_is_one_clear_error_before_training(
    kind, tiny_causal_dir, tmp_path, capsys
):
    pairs = _write_pairs(tmp_path / "pairs.jsonl", _salad_pairs(24, 0))
    teacher = tmp_path / "teacher"
    if kind == "broken":
        teacher.mkdir()
        (teacher / "config.json").write_text("{not json")
    out = tmp_path / "out"
    args = ["train", "--backbone", str(tiny_causal_dir), "--stages", "supervised", "--pairs", str(pairs)]
    code, err = run_cli([*args, *SMALL, "--teacher", str(teacher), "--out", str(out)], capsys)
    assert code == 1
    assert "--teacher" in err and "Traceback" not in err
    assert len([line for line in err.strip().splitlines() if line.strip()]) <= 3
    assert not out.exists()  # nothing was started


def test_distill_weight_needs_a_teacher(tiny_causal_dir, tmp_path, capsys):
    pairs = _write_pairs(tmp_path / "pairs.jsonl", _salad_pairs(24, 0))
    args = ["train", "--backbone", str(tiny_causal_dir), "--stages", "supervised", "--pairs", str(pairs)]
    code, err = run_cli([*args, *SMALL, "--distill-weight", "1", "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and "--teacher" in err


def test_correlation_weight_needs_a_teacher_is_recorded_and_binds_a_resume(tiny_causal_dir, tmp_path, capsys):
    pairs = _write_pairs(tmp_path / "pairs.jsonl", _salad_pairs(24, 0))
    args = ["train", "--backbone", str(tiny_causal_dir), "--stages", "supervised", "--pairs", str(pairs)]
    code, err = run_cli([*args, *SMALL, "--correlation-weight", "2", "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and "--correlation-weight needs a --teacher" in err
    teacher, out = _teacher_folder(tmp_path), tmp_path / "out"
    with_teacher = [*args, *SMALL, "--teacher", str(teacher), "--out", str(out)]
    code, err = run_cli([*with_teacher, "--correlation-weight", "2"], capsys)
    assert code == 0, err
    assert json.loads((out / "training.json").read_text())["correlation_weight"] == 2.0
    assert "correlation over each batch distilled with weight 2.0" in (out / "README.md").read_text()
    code, err = run_cli([*with_teacher, "--correlation-weight", "3", "--resume"], capsys)
    assert code == 1 and "correlation weight" in err
    plain = tmp_path / "plain"
    assert run_cli([*with_teacher[:-1], str(plain)], capsys)[0] == 0
    assert "correlation_weight" not in json.loads((plain / "training.json").read_text())
    losses = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    plain_losses = [json.loads(x)["loss"] for x in (plain / "metrics.jsonl").read_text().splitlines()]
    assert losses != plain_losses  # the term is part of the loss
