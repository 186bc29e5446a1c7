"""Hard negatives mined by the teacher: the nearest non-answer below the margin, for drawn rows."""

from __future__ import annotations

import json
import math

import numpy as np
from test_trainer_run import run_cli
from test_trainer_supervised import _salad_pairs, _write_pairs
from test_trainer_teacher import SMALL, _teacher_folder

from conftest import make_tokenizer
from ragkit.atomic import write_text_once
from ragkit.trainer.batches import PairSteps
from ragkit.trainer.options import TrainOptions
from ragkit.trainer.pairs import Pair, PairSet
from ragkit.trainer.recipe import RECIPES
from ragkit.trainer.start import load_data
from ragkit.trainer.teacher import FALSE_NEGATIVE_MARGIN, teacher_judgement
from ragkit.trainer.teacher_negatives import _passage_pool, mine_with_teacher


class _TableTeacher:
    """A teacher whose unit vectors are angles on the unit circle, one table for queries and
    one for passages (a query's text may also be another row's passage)."""

    identity = "table-teacher"

    def __init__(self, queries: dict[str, float], passages: dict[str, float]):
        self.tables = {True: queries, False: passages}
        self.asked: list[str] = []

    def vectors(self, texts, *, query, on_progress=None):
        self.asked += texts
        if on_progress:
            on_progress(len(texts))
        radians = [math.radians(self.tables[query][t]) for t in texts]
        return np.array([[math.cos(r), math.sin(r)] for r in radians], dtype=np.float32)


def _cos(degrees: float) -> float:
    return math.cos(math.radians(degrees))


# q1 sits at 0 degrees and its positive p1 at 30 (0.866); the margin is 0.95 x that, 34.6 degrees.
QUERIES = {"q1": 0, "q2": 200, "q3": 220, "q4": 240, "q5": 260, "q6": 280}
PASSAGES = {
    "p1": 30,
    "too-near": 25,  # above the margin: a likely unlabelled answer
    "p1b": 36,  # below the margin, but another answer of q1
    "q1": 38,  # below the margin, but q1's own text (another row's positive)
    "hard": 40,  # the nearest that is none of these: the negative
    "far": 80,
    "p5": 100,
}


def _pairs() -> PairSet:
    rows = [("q1", "p1"), ("q1", "p1b"), ("q2", "too-near"), ("q3", "hard"), ("q4", "far"), ("q6", "q1")]
    pairs = [Pair(q, p, dataset="d") for q, p in rows]
    pairs.append(Pair("q5", "p5", ("given",), dataset="d"))
    return PairSet(pairs, ["d.jsonl"])


def test_teacher_picks_its_nearest_non_answer_below_the_margin(tmp_path):
    assert _cos(25) > FALSE_NEGATIVE_MARGIN * _cos(30) > _cos(36) > _cos(38) > _cos(40)
    teacher = _TableTeacher(QUERIES, PASSAGES)
    mined = mine_with_teacher(_pairs(), teacher, {0, 6}, cache_root=tmp_path)
    assert mined.pairs[0].negatives == ("hard",)
    assert mined.pairs[6].negatives == ("given",)  # a row's own negative is kept
    assert all(not p.negatives for p in mined.pairs[1:6])  # rows not drawn are not mined
    assert mined.mined == 1
    assert "q2" not in teacher.asked and "q1" in teacher.asked  # only drawn queries are encoded


def test_a_row_whose_candidates_are_all_answers_or_too_near_gets_none(tmp_path):
    near = PASSAGES | {"hard": 28, "far": 29, "p5": 27}
    mined = mine_with_teacher(_pairs(), _TableTeacher(QUERIES, near), {0}, cache_root=tmp_path)
    assert mined.pairs[0].negatives == () and mined.mined == 0


def test_a_positive_the_teacher_scores_below_zero_still_bounds_its_negatives(tmp_path):
    # q7's positive scores cos(100) = -0.17; a candidate at 99 degrees scores above it and must
    # not pass, as a plain 0.95 x (-0.17) would let it; one at 110 degrees is its negative.
    pairs = PairSet(
        [Pair("q7", "p7", dataset="e"), Pair("x", "c99", dataset="e"), Pair("y", "c110", dataset="e")]
    )
    teacher = _TableTeacher({"q7": 0, "x": 0, "y": 0}, {"p7": 100, "c99": 99, "c110": 110})
    assert mine_with_teacher(pairs, teacher, {0}, cache_root=tmp_path).pairs[0].negatives == ("c110",)
    query = np.array([[1.0, 0.0]])
    passages = np.array([[_cos(100), 0.0], [_cos(99), 0.0], [_cos(110), 0.0]])
    _, keep = teacher_judgement(query, passages, [0], np.ones((1, 3), dtype=bool))
    assert keep.tolist() == [[True, False, True]]  # the filter uses the same bound


def test_choices_are_published_once_and_reused(tmp_path):
    first = mine_with_teacher(_pairs(), _TableTeacher(QUERIES, PASSAGES), {0}, cache_root=tmp_path)
    shifted = _TableTeacher(QUERIES, PASSAGES | {"far": 39.5})  # another process's last bits
    again = mine_with_teacher(_pairs(), shifted, {0}, cache_root=tmp_path)
    assert again.pairs[0].negatives == first.pairs[0].negatives == ("hard",)
    assert shifted.asked == []  # nothing encoded: the published choices were read
    mine_with_teacher(_pairs(), shifted, {0}, pool_size=3, cache_root=tmp_path)
    assert shifted.asked  # other settings mine afresh
    for published in tmp_path.glob("teacher-*.json"):
        published.write_text("[1, 2]")  # a damaged cache is mined again, not an error
    assert mine_with_teacher(_pairs(), _TableTeacher(QUERIES, PASSAGES), {0}, cache_root=tmp_path).mined == 1


def test_first_writer_wins(tmp_path):
    path = tmp_path / "sub" / "choices.json"
    assert write_text_once(path, "first") == "first"
    assert write_text_once(path, "second") == "first"
    assert [p.name for p in path.parent.iterdir()] == ["choices.json"]  # no temporary left


def test_pool_is_a_seeded_sample_plus_the_drawn_positives():
    pairs = [Pair(f"q{i}", f"p{i}", dataset="d") for i in range(50)]
    rows = list(range(50))
    pool = _passage_pool(pairs, rows, [7, 40], 10, seed=0)
    assert len(pool) in (10, 11, 12) and {"p7", "p40"} <= set(pool)
    assert pool == _passage_pool(pairs, rows, [7, 40], 10, seed=0)
    assert pool != _passage_pool(pairs, rows, [7, 40], 10, seed=1)
    assert _passage_pool(pairs, rows, [7], 100, seed=0) == [f"p{i}" for i in range(50)]


def test_every_process_trains_on_mined_rows_only(tmp_path, monkeypatch):
    """load_data mines exactly what PairSteps will lay out, over both processes of two."""
    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "home"))
    rows = [{k: v for k, v in r.items() if k != "group"} for r in _salad_pairs(40, 0)]
    pairs = _write_pairs(tmp_path / "pairs.jsonl", rows)
    recipe = RECIPES["quick"].with_overrides(steps=3, batch_size=4, max_length=24)
    options = TrainOptions(
        out=tmp_path / "out",
        stages=["supervised"],
        pairs=[str(pairs)],
        recipe=recipe,
        seed=5,
        teacher=str(_teacher_folder(tmp_path)),
        negatives_from="teacher",
        show_progress=False,
    )
    data = load_data(options)
    steps = PairSteps(make_tokenizer(), data.pairs, options, world=2)
    laid_out = {id(p) for step in range(3) for rank in range(2) for p in steps.layout(step, rank, 2)["rows"]}
    with_negative = {id(p) for p in data.pairs.pairs if p.negatives}
    assert with_negative and with_negative <= laid_out
    assert len(with_negative) >= len(laid_out) // 2  # the tiny teacher finds most of them one
    assert data.pairs.mined == len(with_negative)


def test_training_with_teacher_mined_negatives_is_recorded_and_binds_a_resume(
    tiny_causal_dir, tmp_path, capsys
):
    rows = [{k: v for k, v in r.items() if k != "group"} for r in _salad_pairs(24, 0)]
    pairs = _write_pairs(tmp_path / "pairs.jsonl", rows)
    args = ["train", "--backbone", str(tiny_causal_dir), "--stages", "supervised", "--pairs", str(pairs)]
    code, err = run_cli([*args, *SMALL, "--negatives-from", "teacher", "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and "--negatives-from teacher needs a --teacher" in err and "Traceback" not in err
    code, err = run_cli([*args, *SMALL, "--negatives-from", "dense", "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and "bm25 or teacher" in err
    out = tmp_path / "out"
    with_teacher = [*args, *SMALL, "--teacher", str(_teacher_folder(tmp_path)), "--out", str(out)]
    code, err = run_cli([*with_teacher, "--negatives-from", "teacher", "--no-mine-negatives"], capsys)
    assert code == 1 and "--no-mine-negatives" in err and not out.exists()
    code, err = run_cli([*with_teacher, "--negatives-from", "teacher"], capsys)
    assert code == 0, err
    run = json.loads((out / "training.json").read_text())
    assert run["negatives_from"] == "teacher"
    assert "hard negatives mined by it" in (out / "README.md").read_text()
    code, err = run_cli([*with_teacher, "--resume"], capsys)
    assert code == 1 and "hard-negative miner" in err
    code, err = run_cli([*with_teacher, "--negatives-from", "teacher", "--resume"], capsys)
    assert code == 0, err  # the same choices again: the same pair set
    plain = tmp_path / "plain"
    assert run_cli([*with_teacher[:-1], str(plain)], capsys)[0] == 0
    assert json.loads((plain / "training.json").read_text())["negatives_from"] is None
