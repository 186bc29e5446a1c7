"""The command line: help, JSON output for scripts, and one-line errors with exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from ragkit.cli.app import app

runner = CliRunner()


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("info", "embed"):
        assert command in result.output


def test_embed_prints_json_vectors(tiny_backbone_dir: Path) -> None:
    result = runner.invoke(app, ["embed", "-e", str(tiny_backbone_dir), "the cat sat", "dog"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    vectors = np.array(payload["vectors"])
    assert vectors.shape == (2, payload["dimension"]) == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert len(payload["fingerprint"]) == 16 and payload["truncated"] == 0


def test_embed_reads_stdin_and_query_mode_differs(tiny_backbone_dir: Path) -> None:
    doc = runner.invoke(app, ["embed", "-e", str(tiny_backbone_dir), "-"], input="the cat sat\n\ndog\n")
    assert doc.exit_code == 0, doc.output
    rows = json.loads(doc.stdout)["vectors"]
    assert len(rows) == 3 and rows[1] is None  # one row per input line, null for the blank one
    query = runner.invoke(
        app, ["embed", "-e", str(tiny_backbone_dir), "--instruction", "find", "the cat sat"]
    )
    assert json.loads(query.stdout)["vectors"][0] != json.loads(doc.stdout)["vectors"][0]


def test_info_json(tiny_backbone_dir: Path) -> None:
    result = runner.invoke(app, ["info", "-e", str(tiny_backbone_dir), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["dimension"] == 32 and info["bidirectional"] is True
    assert info["attention_check"]["passed"] and info["attention_check"]["first_token_change_min"] > 1e-4
    causal = json.loads(
        runner.invoke(app, ["info", "-e", str(tiny_backbone_dir), "--causal", "--json"]).stdout
    )
    assert causal["bidirectional"] is False and causal["fingerprint"] != info["fingerprint"]


def _ragkit(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ragkit", *args], input=stdin, capture_output=True, text=True, timeout=120
    )


def test_bad_input_gives_one_line_and_nonzero_exit() -> None:
    for args in (["info", "-e", "no-such-model"], ["embed", ""], ["embed", "ok", "--pooling", "max"]):
        result = _ragkit(*args)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.startswith("error: "), result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stdout == ""
