"""The run folder's training record across a resume."""

from __future__ import annotations

import json

import pytest

from ragkit.errors import InvalidInputError
from ragkit.trainer.run_folder import RUN_FILE, prepare_output

SETTINGS = {
    "seed": 3,
    "precision": "bf16",
    "pairs_hash": "abc",
    "compile": False,
    "teacher_source": "/a/minilm",
}


def test_a_resume_records_what_it_ran_with_and_keeps_the_earlier_start(tmp_path):
    out = tmp_path / "run"
    assert prepare_output(out, SETTINGS, resume=False) is False
    resumed = {**SETTINGS, "compile": True, "teacher_source": "/b/minilm"}
    assert prepare_output(out, resumed, resume=True) is True
    record = json.loads((out / RUN_FILE).read_text())
    assert record["compile"] is True and record["teacher_source"] == "/b/minilm"
    assert record["format"] == "ragkit-training"
    assert record["earlier_starts"] == [{"compile": False, "teacher_source": "/a/minilm"}]
    prepare_output(out, {**resumed, "compile": False}, resume=True)
    record = json.loads((out / RUN_FILE).read_text())
    assert record["compile"] is False
    assert record["earlier_starts"][-1] == {"compile": True}
    assert len(record["earlier_starts"]) == 2


def test_an_unchanged_resume_leaves_the_record_byte_identical(tmp_path):
    out = tmp_path / "run"
    prepare_output(out, SETTINGS, resume=False)
    before = (out / RUN_FILE).read_bytes()
    prepare_output(out, dict(SETTINGS), resume=True)
    assert (out / RUN_FILE).read_bytes() == before


def test_a_refused_resume_changes_nothing(tmp_path):
    out = tmp_path / "run"
    prepare_output(out, SETTINGS, resume=False)
    before = (out / RUN_FILE).read_bytes()
    with pytest.raises(InvalidInputError, match="trained in bf16"):
        prepare_output(out, {**SETTINGS, "precision": "fp32", "compile": True}, resume=True)
    assert (out / RUN_FILE).read_bytes() == before
