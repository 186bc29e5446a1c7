"""Hard negatives mined by the teacher: the nearest non-answer below the margin, for drawn rows."""

from __future__ import annotations

import json
import math

import numpy as np
from test_trainer_run import run_cli
from test_trainer_supervised import _salad_pairs, _write_pairs
from test_trainer_teacher import SMALL, _teacher_folder

from ragkit.trainer.pairs import Pair, PairBatches, PairSet
from ragkit.trainer.teacher import FALSE_NEGATIVE_MARGIN
from ragkit.trainer.teacher_negatives import _passage_pool, drawn_rows, mine_with_teacher


class _TableTeacher:
    """A teacher whose unit vectors are given per text (an angle on the unit circle)."""

    def __init__(self, angles: dict[str, float]):
        self.angles = angles
        self.asked: list[str] = []

    def vectors(self, texts, *, query, on_progress=None):
        self.asked += texts
        if on_progress:
            on_progress(len(texts))
        radians = [math.radians(self.angles[t]) for t in texts]
        return np.array([[math.cos(r), math.sin(r)] for r in radians], dtype=np.float32)


def _pairs() -> PairSet:
    rows = [
        ("q1", "p1"),  # the query at 0 degrees, its positive at 30: cosine 0.866
        ("q1", "p1b"),  # a second answer of q1 at 10 degrees: never its negative
        ("q2", "too-near"),  # 25 degrees: 0.906, above 0.95 of 0.866, a likely answer
        ("q3", "hard"),  # 40 degrees: 0.766, below the margin: the negative
        ("q4", "far"),  # 80 degrees
    ]
    pairs = [Pair(q, p, dataset="d") for q, p in rows]
    pairs.append(Pair("q5", "p5", ("given",), dataset="d"))
    return PairSet(pairs, ["d.jsonl"])


ANGLES = {"q1": 0, "p1": 30, "p1b": 10, "q2": 200, "too-near": 25, "q3": 220, "hard": 40, "q4": 240}
ANGLES |= {"far": 80, "q5": 260, "p5": 100}


def test_teacher_picks_its_nearest_non_answer_below_the_margin():
    assert math.cos(math.radians(25)) > FALSE_NEGATIVE_MARGIN * math.cos(math.radians(30))
    assert math.cos(math.radians(40)) < FALSE_NEGATIVE_MARGIN * math.cos(math.radians(30))
    teacher = _TableTeacher(ANGLES)
    mined = mine_with_teacher(_pairs(), teacher, {0, 5})
    assert mined.pairs[0].negatives == ("hard",)
    assert mined.pairs[5].negatives == ("given",)  # a row's own negative is kept
    assert all(not p.negatives for p in mined.pairs[1:5])  # rows not drawn are not mined
    assert mined.mined == 1
    assert "q2" not in teacher.asked and "q1" in teacher.asked  # only drawn queries are encoded


def test_a_row_whose_candidates_are_all_answers_or_too_near_gets_none():
    angles = ANGLES | {"hard": 28, "far": 29, "p5": 27}  # all within the margin of p1
    mined = mine_with_teacher(_pairs(), _TableTeacher(angles), {0})
    assert mined.pairs[0].negatives == () and mined.mined == 0


def test_pool_is_a_seeded_sample_plus_the_drawn_positives():
    pairs = [Pair(f"q{i}", f"p{i}", dataset="d") for i in range(50)]
    rows = list(range(50))
    pool = _passage_pool(pairs, rows, [7, 40], 10, seed=0)
    assert len(pool) in (10, 11, 12) and {"p7", "p40"} <= set(pool)
    assert pool == _passage_pool(pairs, rows, [7, 40], 10, seed=0)
    assert pool != _passage_pool(pairs, rows, [7, 40], 10, seed=1)
    assert _passage_pool(pairs, rows, [7], 100, seed=0) == [f"p{i}" for i in range(50)]


def test_drawn_rows_are_the_rows_the_batches_hold():
    pairs = PairSet([Pair(f"q{i}", f"p{i}", dataset="a" if i < 40 else "b") for i in range(60)])
    rows = drawn_rows(pairs, batch_size=4, seed=3, mixture="sqrt", steps=5)
    order = PairBatches(pairs, 4, 3, "sqrt")
    assert rows == {r for s in range(5) for r in order.rows(s)}
    assert 4 < len(rows) <= 20 and not rows >= {r for s in range(5, 9) for r in order.rows(s)}


def test_training_with_teacher_mined_negatives_is_recorded_and_binds_a_resume(
    tiny_causal_dir, tmp_path, capsys
):
    pairs = _write_pairs(
        tmp_path / "pairs.jsonl", [{k: v for k, v in r.items() if k != "group"} for r in _salad_pairs(24, 0)]
    )
    args = ["train", "--backbone", str(tiny_causal_dir), "--stages", "supervised", "--pairs", str(pairs)]
    code, err = run_cli([*args, *SMALL, "--negatives-from", "teacher", "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and "--negatives-from teacher needs a --teacher" in err and "Traceback" not in err
    code, err = run_cli([*args, *SMALL, "--negatives-from", "dense", "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and "bm25 or teacher" in err
    out = tmp_path / "out"
    with_teacher = [*args, *SMALL, "--teacher", str(_teacher_folder(tmp_path)), "--out", str(out)]
    code, err = run_cli([*with_teacher, "--negatives-from", "teacher"], capsys)
    assert code == 0, err
    run = json.loads((out / "training.json").read_text())
    assert run["negatives_from"] == "teacher"
    assert "hard negatives mined by it" in (out / "README.md").read_text()
    code, err = run_cli([*with_teacher, "--resume"], capsys)
    assert code == 1 and "hard-negative miner" in err
    plain = tmp_path / "plain"
    assert run_cli([*with_teacher[:-1], str(plain)], capsys)[0] == 0
    assert json.loads((plain / "training.json").read_text())["negatives_from"] is None
