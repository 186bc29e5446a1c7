"""Regression tests for what probing the CLI as a new user and as an attacker found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_trainer_run import run_cli

from conftest import CATS_AND_DOGS

REPO = Path(__file__).resolve().parent.parent


def _index(tmp_path: Path, backbone: Path, capsys, files: dict[str, str], name: str = "docs") -> Path:
    docs = tmp_path / name
    for relative, text in files.items():
        (docs / relative).parent.mkdir(parents=True, exist_ok=True)
        (docs / relative).write_text(text)
    index = tmp_path / "index"
    code, err = run_cli(
        ["index", str(docs), "--index", str(index), "--encoder", str(backbone), "--chunk-tokens", "16"],
        capsys,
    )
    assert code == 0, err
    return index


def _cli(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess: what a terminal or a pipe receives."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "ragkit", *args], capture_output=True, env=env, **kwargs)


def test_escape_sequences_in_text_and_file_names_reach_the_terminal_escaped(
    tiny_backbone_dir, tmp_path, capsys
):
    evil = "# Cats\n\nthe cat sat \x1b[2J\x1b]0;owned\x07 on the mat \u202e here\n"
    index = _index(tmp_path, tiny_backbone_dir, capsys, {"evil\x1b[31m.md": evil})
    for extra in ([], ["--answer", "extract"]):
        result = _cli(["ask", "the cat sat", "--index", str(index), "-k", "2", *extra])
        assert result.returncode == 0, result.stderr.decode()
        shown = result.stdout.decode() + result.stderr.decode()
        assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
        assert "\\x1b" in shown and "evil\\x1b[31m.md" in shown
    result = _cli(["status", "--index", str(index)])
    assert "\x1b" not in result.stdout.decode()


@pytest.mark.parametrize(
    "args",
    [
        ["remove", "[/]"],
        ["ask", "q", "--index", "[/]x"],
        ["index", "[/]x"],
        ["status", "--index", "[bold]x[/]"],
    ],
)
def test_user_strings_are_never_read_as_markup(args, tiny_backbone_dir, tmp_path, capsys):
    index = _index(tmp_path, tiny_backbone_dir, capsys, {"a.md": CATS_AND_DOGS})
    if args[0] == "remove":
        args = [*args, "--index", str(index)]
    code, err = run_cli(args, capsys)
    assert code == 1
    assert "MarkupError" not in err and "Traceback" not in err
    assert err.strip().startswith("error:")
    assert "[/]" in err or "[bold]x[/]" in err  # shown as typed, not eaten as markup


def test_brackets_in_folder_and_file_names(tiny_backbone_dir, tmp_path, capsys):
    index = _index(
        tmp_path, tiny_backbone_dir, capsys, {"]x.md": CATS_AND_DOGS, "notes [draft].md": CATS_AND_DOGS}, "["
    )
    code, err = run_cli(
        [
            "index",
            str(tmp_path / "["),
            "--index",
            str(index),
            "--encoder",
            str(tiny_backbone_dir),
            "--chunk-tokens",
            "16",
        ],
        capsys,
    )
    assert code == 0, err
    result = _cli(["ask", "the dog ran", "--index", str(index), "-k", "4"])
    assert result.returncode == 0, result.stderr.decode()
    assert "notes [draft].md" in result.stdout.decode()


def _corrupt(index: Path) -> None:
    db = index / "index.db"
    data = bytearray(db.read_bytes())
    page = 4096
    for offset in range(page * 2, len(data), page):
        data[offset : offset + 64] = b"\xde\xad\xbe\xef" * 16
    db.write_bytes(bytes(data))


def test_a_damaged_database_is_one_line_naming_rebuild(tiny_backbone_dir, tmp_path, capsys):
    body = "\n\n".join(f"## Part {i}\n\nthe cat {i} sat on the mat and the dog ran" for i in range(200))
    index = _index(tmp_path, tiny_backbone_dir, capsys, {"a.md": body})
    _corrupt(index)
    for args in (
        ["ask", "cat", "--index", str(index)],
        ["status", "--index", str(index)],
        ["remove", "a.md", "--index", str(index)],
        [
            "index",
            str(tmp_path / "docs"),
            "--index",
            str(index),
            "--encoder",
            str(tiny_backbone_dir),
            "--chunk-tokens",
            "16",
        ],
    ):
        code, err = run_cli(args, capsys)
        assert code == 1, (args, err)
        assert "Traceback" not in err and "--rebuild" in err, (args, err)


def test_rebuild_through_a_symlinked_index_keeps_the_link(tiny_backbone_dir, tmp_path, capsys):
    index = _index(tmp_path, tiny_backbone_dir, capsys, {"a.md": CATS_AND_DOGS})
    link = tmp_path / "link"
    link.symlink_to(index)
    for _ in range(2):
        code, err = run_cli(
            [
                "index",
                str(tmp_path / "docs"),
                "--index",
                str(link),
                "--rebuild",
                "--encoder",
                str(tiny_backbone_dir),
                "--chunk-tokens",
                "16",
            ],
            capsys,
        )
        assert code == 0, err
    assert link.is_symlink() and link.resolve() == index.resolve()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and "rebuild" in p.name]


def test_a_write_failure_is_one_line_and_loses_nothing(tiny_backbone_dir, tmp_path, capsys):
    index = _index(tmp_path, tiny_backbone_dir, capsys, {"a.md": CATS_AND_DOGS})
    big = "\n\n".join(f"## Part {i}\n\n" + " ".join(["the cat sat on the mat"] * 20) for i in range(300))
    (tmp_path / "docs" / "b.md").write_text(big)
    script = (
        f"ulimit -f 64; exec {sys.executable} -m ragkit index {tmp_path / 'docs'} --index {index} "
        f"--encoder {tiny_backbone_dir} --chunk-tokens 16"
    )
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "could not write the index" in result.stderr
    code, err = run_cli(["ask", "the cat sat", "--index", str(index), "--json"], capsys)
    assert code == 0, err


def test_non_utf8_input_is_a_clear_error(tiny_backbone_dir, tmp_path, capsys):
    index = _index(tmp_path, tiny_backbone_dir, capsys, {"a.md": CATS_AND_DOGS})
    bad = os.fsdecode(b"caf\xe9")
    for args in (["ask", bad, "--index", str(index)], ["ask", "cat", "--index", str(index), "--filter", bad]):
        code, err = run_cli(args, capsys)
        assert code == 1 and "not valid UTF-8" in err and "Traceback" not in err
    result = _cli(["embed", "-", "--encoder", str(tiny_backbone_dir)], input=b"the cat\n\xe9\xff\n")
    assert result.returncode == 1 and b"line 2 of stdin is not valid UTF-8" in result.stderr
    odd = tmp_path / os.fsdecode(b"idx\xff")
    code, err = run_cli(
        [
            "index",
            str(tmp_path / "docs"),
            "--index",
            str(odd),
            "--encoder",
            str(tiny_backbone_dir),
            "--chunk-tokens",
            "16",
        ],
        capsys,
    )
    assert code == 0, err
    result = _cli(
        ["ask", "the cat", "--index", os.fsencode(odd).decode("utf-8", "surrogateescape"), "--json"]
    )
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["hits"]


def test_embed_keeps_one_row_per_input_line(tiny_backbone_dir):
    result = _cli(["embed", "-", "--encoder", str(tiny_backbone_dir)], input=b"the cat\n\n   \nthe dog\n")
    assert result.returncode == 0, result.stderr.decode()
    rows = json.loads(result.stdout)["vectors"]
    assert len(rows) == 4 and rows[1] is None and rows[2] is None and len(rows[0]) == len(rows[3]) == 32


def test_chunk_and_overlap_defaults_and_bounds(tiny_backbone_dir, tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text(CATS_AND_DOGS)
    base = ["index", str(docs), "--encoder", str(tiny_backbone_dir)]
    code, err = run_cli([*base, "--index", str(tmp_path / "i1"), "--chunk-tokens", "32"], capsys)
    assert code == 0, err
    code, err = run_cli(
        [*base, "--index", str(tmp_path / "i2"), "--chunk-tokens", "32", "--overlap", "16"], capsys
    )
    assert code == 0, err
    code, err = run_cli(
        [*base, "--index", str(tmp_path / "i3"), "--chunk-tokens", "32", "--overlap", "17"], capsys
    )
    assert code == 1 and "half of --chunk-tokens (16)" in err


def test_readme_filter_after_indexing_a_folder(tiny_backbone_dir, tmp_path, capsys):
    index = _index(
        tmp_path,
        tiny_backbone_dir,
        capsys,
        {"guide.md": CATS_AND_DOGS, "sub/more.md": CATS_AND_DOGS, "x.txt": "the cat sat\n"},
    )
    for glob, expected in (
        ("docs/*.md", {"guide.md", "sub/more.md"}),
        ("**/*.md", {"guide.md", "sub/more.md"}),
        ("sub/*", {"sub/more.md"}),
        ("*.txt", {"x.txt"}),
    ):
        code, _ = run_cli(
            ["ask", "the cat", "--index", str(index), "-k", "10", "--filter", glob, "--json"], capsys
        )
        assert code == 0
        hits = json.loads(capsys.readouterr().out or "{}").get("hits") if False else None
        result = _cli(["ask", "the cat", "--index", str(index), "-k", "10", "--filter", glob, "--json"])
        hits = json.loads(result.stdout)["hits"]
        assert {h["source"] for h in hits} == expected, glob


def test_a_folder_of_nothing_indexable_leaves_no_index(tiny_backbone_dir, tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "empty.md").write_text("")
    (docs / "binary.txt").write_bytes(b"\x00\x01\x02" * 100)
    code, err = run_cli(
        ["index", str(docs), "--index", str(tmp_path / "index"), "--encoder", str(tiny_backbone_dir)], capsys
    )
    assert code == 1 and "nothing could be indexed" in err
    assert not (tmp_path / "index").exists()


def test_json_errors_are_json_on_stdout(tmp_path):
    result = _cli(["ask", "q", "--index", str(tmp_path / "none"), "--json"])
    assert result.returncode == 1
    assert "error" in json.loads(result.stdout) and b"error:" in result.stderr


def test_usage_errors_are_one_line_and_exit_1():
    result = _cli(["index", "--no-such-flag"])
    assert result.returncode == 1
    lines = [line for line in result.stderr.decode().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "--no-such-flag" in lines[0]
    assert "╭" not in result.stderr.decode()


def test_a_pdf_that_inflates_beyond_its_budget_is_skipped():
    pypdf = pytest.importorskip("pypdf")
    import io

    from ragkit.documents.pdf import PdfTooCostly, parse_pdf

    writer = pypdf.PdfWriter()
    for _ in range(3):
        page = writer.add_blank_page(100, 100)
        stream = pypdf.generic.DecodedStreamObject()
        stream.set_data(b"BT /F1 12 Tf (hello) Tj ET\n" + b" " * 1_000_000)
        page[pypdf.generic.NameObject("/Contents")] = writer._add_object(stream.flate_encode())
    buffer = io.BytesIO()
    writer.write(buffer)
    raw = buffer.getvalue()
    assert len(raw) < 100_000
    with pytest.raises(PdfTooCostly, match="MB of page content"):
        parse_pdf(raw, max_content_bytes=2_000_000)
    parse_pdf(raw, max_content_bytes=10_000_000)
    with pytest.raises(PdfTooCostly, match="took over"):
        parse_pdf(raw, max_seconds=0.0)


def test_unreadable_files_leave_the_index_and_unreadable_folders_keep_theirs(
    tiny_backbone_dir, tmp_path, capsys, monkeypatch
):
    import ragkit.indexer.builder as builder
    from ragkit.documents import discover as discovery

    index = _index(tmp_path, tiny_backbone_dir, capsys, {"a.md": CATS_AND_DOGS, "sub/b.md": CATS_AND_DOGS})
    args = ["index", str(tmp_path / "docs"), "--index", str(index), "--encoder", str(tiny_backbone_dir)]
    args += ["--chunk-tokens", "16", "--json"]
    real_access = os.access
    monkeypatch.setattr(
        builder.os, "access", lambda p, mode: not str(p).endswith("a.md") and real_access(p, mode)
    )
    code, err = run_cli(args, capsys)
    assert code == 0, err
    assert _stored(index) == {"sub/b.md"}  # unreadable now: out of the index, with its reason
    monkeypatch.setattr(builder.os, "access", real_access)
    real_walk = os.walk

    def walk(top, **kwargs):  # the sub-folder cannot be listed, as after chmod 000
        for current, dirs, files in real_walk(top, **kwargs):
            if current.endswith("sub"):
                kwargs["onerror"](PermissionError(13, "Permission denied", current))
                continue
            yield current, dirs, files

    monkeypatch.setattr(discovery.os, "walk", walk)
    code, err = run_cli(args, capsys)
    assert code == 0, err
    assert _stored(index) == {"a.md", "sub/b.md"}  # sub/ cannot be listed: its document is kept


def _stored(index: Path) -> set[str]:
    from ragkit.search.index import Index

    with Index.open(index) as opened:
        return {row[0] for row in opened.db.execute("SELECT path FROM documents")}


def test_index_on_a_read_only_index_is_one_line(tiny_backbone_dir, tmp_path, capsys, monkeypatch):
    index = _index(tmp_path, tiny_backbone_dir, capsys, {"a.md": CATS_AND_DOGS})
    import filelock

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(index / "index.lock"))

    monkeypatch.setattr(filelock.FileLock, "acquire", refuse)
    for args in (
        [
            "index",
            str(tmp_path / "docs"),
            "--index",
            str(index),
            "--encoder",
            str(tiny_backbone_dir),
            "--chunk-tokens",
            "16",
        ],
        ["remove", "a.md", "--index", str(index)],
    ):
        code, err = run_cli(args, capsys)
        assert code == 1 and "permission denied" in err and "index.lock" in err and "Traceback" not in err


def test_a_deleted_single_source_has_a_way_out(tiny_backbone_dir, tmp_path, capsys):
    one = tmp_path / "one.md"
    one.write_text(CATS_AND_DOGS)
    index = tmp_path / "index"
    common = ["--index", str(index), "--encoder", str(tiny_backbone_dir), "--chunk-tokens", "16"]
    assert run_cli(["index", str(one), *common], capsys)[0] == 0
    one.unlink()
    code, err = run_cli(["index", *common], capsys)
    assert code == 1 and "--rebuild" in err and "only source" in err
    two = tmp_path / "two.md"
    two.write_text("# Birds\n\nthe bird sat in the tree\n")
    code, err = run_cli(["index", str(two), *common, "--rebuild"], capsys)
    assert code == 0, err
    assert _stored(index) == {"two.md"}


def test_status_after_a_killed_first_run_says_to_rerun(tiny_backbone_dir, tmp_path, capsys, monkeypatch):
    import ragkit.indexer.builder as builder
    from ragkit.indexer.builder import IndexOptions, build_index

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text(CATS_AND_DOGS)
    index = tmp_path / "index"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill -9 after the chunks were committed

    monkeypatch.setattr(builder, "_finish", killed)
    with pytest.raises(KeyboardInterrupt):
        build_index(
            IndexOptions(source=docs, index_dir=index, encoder=str(tiny_backbone_dir), chunk_tokens=16)
        )
    monkeypatch.undo()
    code, err = run_cli(["status", "--index", str(index)], capsys)
    assert code == 1 and "run `ragkit index PATH" in err and "--rebuild" not in err
    code, err = run_cli(
        [
            "index",
            str(docs),
            "--index",
            str(index),
            "--encoder",
            str(tiny_backbone_dir),
            "--chunk-tokens",
            "16",
        ],
        capsys,
    )
    assert code == 0, err
    assert run_cli(["status", "--index", str(index)], capsys)[0] == 0
