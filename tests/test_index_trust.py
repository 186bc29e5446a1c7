"""The index never deletes, mixes or loses what the user put in, whatever the input."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from ragkit.documents.readers import PARSER_VERSION
from ragkit.errors import InvalidInputError
from ragkit.indexer import store
from ragkit.indexer.builder import IndexOptions, build_index
from ragkit.indexer.folder import MARKER_NAME
from ragkit.search.index import Index


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in {
        "a.md": "# Alpha\n\nthe cat sat on the mat\n",
        "b.md": "# Beta\n\nthe dog ran in the house\n",
        "c.md": "# Gamma\n\nthe red tree by the river\n",
    }.items():
        (folder / name).write_text(text)
    return folder


def _build(source: Path, index: Path, encoder: Path, **kw):
    return build_index(IndexOptions(source=source, index_dir=index, encoder=str(encoder), **kw))


def _paths(index: Path) -> list[str]:
    db = sqlite3.connect(index / store.DB_NAME)
    return [r[0] for r in db.execute("SELECT path FROM documents ORDER BY path")]


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_rebuild_into_the_source_folder_is_refused_and_deletes_nothing(docs, tiny_backbone_dir):
    before = _tree(docs)
    with pytest.raises(InvalidInputError, match="holds the documents"):
        _build(docs, docs, tiny_backbone_dir, rebuild=True)
    assert _tree(docs) == before


def test_index_in_a_folder_of_foreign_files_is_refused_untouched(docs, tmp_path, tiny_backbone_dir):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("years of work")
    (other / "data").mkdir()
    (other / "data" / "x.csv").write_text("1,2")
    before = _tree(other)
    for rebuild in (False, True):
        with pytest.raises(InvalidInputError, match="not a ragkit index"):
            _build(docs, other, tiny_backbone_dir, rebuild=rebuild)
    assert _tree(other) == before
    assert sorted(p.name for p in other.iterdir()) == ["data", "thesis.tex"]


def test_index_naming_a_regular_file_is_a_clear_error(docs, tmp_path, tiny_backbone_dir):
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    with pytest.raises(InvalidInputError, match="is a file"):
        _build(docs, path, tiny_backbone_dir)
    assert path.read_text() == "keep me"


def test_rebuild_replaces_the_index_and_keeps_it_readable(docs, tmp_path, tiny_backbone_dir):
    index = tmp_path / "index"
    _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0)
    (docs / "c.md").unlink()
    summary = _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0, rebuild=True)
    assert sorted(summary.added) == ["a.md", "b.md"]
    assert _paths(index) == ["a.md", "b.md"]
    assert (index / MARKER_NAME).is_file()
    assert not any(p.name.startswith(".index.") for p in tmp_path.iterdir())
    assert len(Index.open(index)) > 0


def test_a_file_run_updates_that_file_and_removes_nothing(docs, tmp_path, tiny_backbone_dir):
    index = tmp_path / "index"
    _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0)
    (docs / "a.md").write_text("# Alpha\n\nthe cat now sleeps on the rug\n")
    summary = _build(docs / "a.md", index, tiny_backbone_dir, chunk_tokens=16, overlap=0)
    assert summary.updated == ["a.md"] and summary.removed == []
    assert _paths(index) == ["a.md", "b.md", "c.md"]


def test_a_file_in_a_subfolder_of_the_root_keeps_its_path(docs, tmp_path, tiny_backbone_dir):
    (docs / "sub").mkdir()
    (docs / "sub" / "d.md").write_text("# Delta\n\nthe blue house is big\n")
    index = tmp_path / "index"
    _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0)
    (docs / "sub" / "d.md").write_text("# Delta\n\nthe blue house is small now\n")
    summary = _build(docs / "sub" / "d.md", index, tiny_backbone_dir, chunk_tokens=16, overlap=0)
    assert summary.updated == ["sub/d.md"]
    assert _paths(index) == ["a.md", "b.md", "c.md", "sub/d.md"]


def test_a_file_that_becomes_unreadable_leaves_the_index_with_a_reason(docs, tmp_path, tiny_backbone_dir):
    index = tmp_path / "index"
    _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0)
    (docs / "b.md").write_bytes(b"\x00\x01binary now" * 10)
    (docs / "c.md").write_text("")
    summary = _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0)
    assert summary.removed == ["b.md", "c.md"]
    assert set(summary.removed_reasons) == {"b.md", "c.md"}
    assert _paths(index) == ["a.md"]
    hits = Index.open(index).search("dog house", k=5)
    assert all(h.source == "a.md" for h in hits)


def test_a_file_name_that_is_not_utf8_is_skipped_not_fatal(docs, tmp_path, tiny_backbone_dir):
    os.close(os.open(os.fsencode(docs) + b"/caf\xe9.md", os.O_CREAT | os.O_WRONLY))
    with open(os.fsencode(docs) + b"/caf\xe9.md", "w") as handle:
        handle.write("# Cafe\n\nlatin-1 name\n")
    index = tmp_path / "index"
    summary = _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0)
    assert summary.skipped["file name is not valid UTF-8"] == 1
    assert _paths(index) == ["a.md", "b.md", "c.md"]
    again = _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0)
    assert again.unchanged == 3 and not again.changed


def test_symlinks_out_of_the_root_are_not_followed_unless_asked(docs, tmp_path, tiny_backbone_dir):
    secret = tmp_path / "secrets"
    secret.mkdir()
    (secret / "credentials.md").write_text("# Keys\n\naws secret key 1234\n")
    (docs / "leak.md").symlink_to(secret / "credentials.md")
    (docs / "leakdir").symlink_to(secret)
    (docs / "inside.md").symlink_to(docs / "a.md")
    index = tmp_path / "index"
    summary = _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0)
    assert summary.skipped["symlink out of the folder"] == 2
    assert _paths(index) == ["a.md", "b.md", "c.md", "inside.md"]
    followed = tmp_path / "followed"
    _build(docs, followed, tiny_backbone_dir, chunk_tokens=16, overlap=0, follow_symlinks=True)
    assert "leak.md" in _paths(followed) and "leakdir/credentials.md" in _paths(followed)


def test_a_failed_first_run_leaves_no_folder_behind(docs, tmp_path):
    index = tmp_path / "index"
    with pytest.raises(Exception, match=r"backbone|model"):
        build_index(IndexOptions(source=docs, index_dir=index, encoder=str(tmp_path / "no-such-model")))
    assert not index.exists()


def _can_mount_read_only(tmp_path: Path) -> bool:
    import shutil
    import subprocess

    if shutil.which("unshare") is None:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    script = f"mount --bind -o ro {probe} {probe} && ! touch {probe}/x 2>/dev/null"
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True).returncode == 0


def test_a_read_only_index_can_be_searched(docs, tmp_path, tiny_backbone_dir):
    """The index folder mounted read-only (as in an image or a shared volume) still searches."""
    import subprocess
    import sys

    if not _can_mount_read_only(tmp_path):
        pytest.skip("needs unshare and a bind mount to make the folder read-only")
    index = tmp_path / "index"
    _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0)
    before = _tree(index)
    code = (
        "from ragkit.search.index import Index; "
        f"index = Index.open({str(index)!r}, encoder={str(tiny_backbone_dir)!r}); "
        "print(len(index.search('cat mat', k=2)), len(index))"
    )
    script = f"mount --bind -o ro {index} {index} && {sys.executable} -c {code!r}"
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[0] == "2"
    assert _tree(index) == before


def test_a_damaged_database_is_one_clear_error(docs, tmp_path, tiny_backbone_dir):
    index = tmp_path / "index"
    _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0)
    (index / store.DB_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(InvalidInputError, match=r"damaged.*--rebuild"):
        Index.open(index)
    with pytest.raises(InvalidInputError, match=r"damaged.*--rebuild"):
        _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0)
    summary = _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0, rebuild=True)
    assert sorted(summary.added) == ["a.md", "b.md", "c.md"]
    assert len(Index.open(index)) > 0


@pytest.mark.parametrize(
    "text",
    [
        "日本語の文章には空白がありません" * 400,
        "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkrLw" * 300,
        "word " * 3000,
    ],
    ids=["cjk", "base64", "spaced"],
)
def test_every_chunk_fits_its_budget_whatever_the_script(text):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from ragkit.documents.blocks import Block
    from ragkit.indexer.chunking import Chunker

    # Byte-level tokens, as in GPT-2 and Llama-3 style tokenizers: a CJK character is 3 tokens.
    backend = Tokenizer(models.BPE({c: i for i, c in enumerate(pre_tokenizers.ByteLevel.alphabet())}, []))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)

    def count(texts):
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def offsets(value):
        return tokenizer(value, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]

    for spans in (offsets, None):
        chunker = Chunker(count, 32, 0, spans)
        chunks = chunker.split([Block(text, 1, 1, ("Title",))])
        assert len(chunks) > 1
        assert all(c.tokens <= 32 for c in chunks)
        assert all(n <= 32 for n in count([c.text for c in chunks]))
        # Nothing lost: the chunks hold every non-space character, in order.
        assert "".join("".join(c.text.split()) for c in chunks) == "".join(text.split())


@pytest.mark.parametrize("separator", ["\f", "\x85", "\u2028", "\u2029", "\v", "\x1c"])
def test_unicode_line_separators_lose_no_text(separator):
    from ragkit.documents.readers import parse_document

    source = (
        f"# Fruit\n\n- apple {separator}- banana - cherry\n\n"
        f"after{separator}the break\n\n## End\n\nlast line\n"
    )
    for newline in ("\n", "\r\n"):
        raw = source.replace("\n", newline).encode()
        blocks = parse_document(Path("f.md"), raw)
        text = " ".join(b.text for b in blocks)
        for word in ("apple", "banana", "cherry", "after", "the break", "last line"):
            assert word in text, (repr(separator), newline, text)
        by_text = {b.text: b for b in blocks}
        assert by_text["last line"].start_line == 9
        plain = parse_document(Path("f.txt"), raw)
        assert "cherry" in " ".join(b.text for b in plain) and plain[-1].start_line == 9


def test_a_generator_that_raises_ends_the_stream_with_one_error(tiny_causal_dir):
    import threading

    from ragkit.answer.generator import ChatModel
    from ragkit.errors import RagkitError

    model = ChatModel.__new__(ChatModel)
    model.tokenizer = _chat_tokenizer(tiny_causal_dir)
    model.device = "cpu"
    model.max_new_tokens = 4

    class Broken:
        def generate(self, **kwargs):
            raise RuntimeError("out of memory")

    model.model = Broken()
    result: list = []

    def consume():
        try:
            result.append(list(model.stream([{"role": "user", "content": "cat"}])))
        except RagkitError as exc:
            result.append(exc)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    reader.join(timeout=20)
    assert not reader.is_alive(), "the stream hung after the generator raised"
    assert isinstance(result[0], RagkitError) and "out of memory" in str(result[0])


def _chat_tokenizer(folder: Path):
    from ragkit.encoder.backbone import load_tokenizer

    tokenizer = load_tokenizer(folder)
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    return tokenizer


def test_settings_are_one_record_never_a_silent_mix(docs, tmp_path, tiny_backbone_dir):
    index = tmp_path / "index"
    _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0, index_type="hnsw")
    (docs / "a.md").write_text("# Alpha\n\nchanged text about the cat\n")
    with pytest.raises(InvalidInputError, match=r"--chunk-tokens 16.*--rebuild"):
        _build(docs, index, tiny_backbone_dir, chunk_tokens=32, overlap=0)
    with pytest.raises(InvalidInputError, match="--overlap 0"):
        _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=4)
    summary = _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0)  # plain run
    assert summary.updated == ["a.md"]
    assert summary.index_spec["kind"] == "hnsw"  # the type asked for before, not auto
    meta = store.get_meta(store.connect(index, readonly=True))
    assert meta["encoder"] == str(tiny_backbone_dir.resolve())
    assert meta["parser_version"] == str(PARSER_VERSION)
    # Chunks made by other document readers are not mixed with this version's.
    db = store.connect(index)
    with db.atomic():
        store.set_meta(db, {"parser_version": "1"})
    db.conn.close()
    with pytest.raises(InvalidInputError, match=r"readers version 1.*--rebuild"):
        _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0)
    rebuilt = _build(docs, index, tiny_backbone_dir, chunk_tokens=32, overlap=0, rebuild=True)
    assert sorted(rebuilt.added) == ["a.md", "b.md", "c.md"]
    assert rebuilt.index_spec["kind"] == "hnsw"


def test_remove_drops_named_documents_and_nothing_else(docs, tmp_path, tiny_backbone_dir, monkeypatch):
    from typer.testing import CliRunner

    from ragkit.cli.app import app

    (docs / "sub").mkdir()
    (docs / "sub" / "d.md").write_text("# Delta\n\nthe blue house is big\n")
    (docs / "sub" / "e.md").write_text("# Epsilon\n\nthe small dog runs slow\n")
    index = tmp_path / "index"
    _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0)
    runner = CliRunner()
    result = runner.invoke(app, ["remove", "nope.md", "--index", str(index)])
    assert result.exit_code != 0 and "matches no document" in str(result.exception or result.output)
    assert _paths(index) == ["a.md", "b.md", "c.md", "sub/d.md", "sub/e.md"]
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["remove", "docs/a.md", "sub", "--index", str(index), "--json"])
    assert result.exit_code == 0, result.output
    assert _paths(index) == ["b.md", "c.md"]
    assert all((docs / p).is_file() for p in ("a.md", "sub/d.md", "sub/e.md"))
    hits = Index.open(index).search("blue house dog", k=5, hybrid=False)
    assert {h.source for h in hits} <= {"b.md", "c.md"}


def test_rebuild_swaps_atomically_while_a_reader_searches(docs, tmp_path, tiny_backbone_dir):
    import threading

    from ragkit.encoder.encoder import Encoder

    index = tmp_path / "index"
    _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0)
    encoder = Encoder.from_pretrained(str(tiny_backbone_dir))
    failures: list[str] = []
    counts: list[int] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                opened = Index.open(index, encoder=encoder)
                counts.append(len(opened.search("cat mat", k=2, hybrid=False)))
                opened.db.conn.close()
            except Exception as exc:  # any failure a reader sees is the bug
                failures.append(f"{type(exc).__name__}: {exc}")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for size in (24, 16, 32):
            _build(docs, index, tiny_backbone_dir, chunk_tokens=size, overlap=0, rebuild=True)
    finally:
        done.set()
        reader.join()
    assert not failures, failures[:3]
    assert len(counts) > 3 and set(counts) == {2}


def test_a_damaged_vector_or_missing_settings_never_crash_a_search(docs, tmp_path, tiny_backbone_dir):
    index = tmp_path / "index"
    _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0)
    db = sqlite3.connect(index / store.DB_NAME)
    with db:
        bad = db.execute(
            "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.path = 'b.md'"
        ).fetchone()[0]
        db.execute("UPDATE chunks SET vector = x'0102' WHERE id = ?", [bad])
    (index / "vectors.faiss").unlink()
    opened = Index.open(index)
    assert opened.repaired and len(opened.vectors) == len(opened) - 1
    for hybrid in (True, False):
        hits = opened.search("dog ran house", k=5, hybrid=hybrid)
        assert hits and all(h.chunk_id != bad or h.similarity == 0.0 for h in hits)
    assert opened.search("dog", k=3, filter="b.md", hybrid=False) == []
    assert not Index.open(index).repaired  # the repaired vector file is consistent now
    with db:
        db.execute("DELETE FROM meta WHERE key = 'dimension'")
    with pytest.raises(InvalidInputError, match="lacks its settings"):
        Index.open(index)


def test_another_tools_index_db_is_not_taken_for_an_index(docs, tmp_path, tiny_backbone_dir):
    other = tmp_path / "other"
    other.mkdir()
    conn = sqlite3.connect(other / "index.db")
    conn.execute("CREATE TABLE notes (x)")
    conn.commit()
    conn.close()
    before = (other / "index.db").read_bytes()
    for rebuild in (False, True):
        with pytest.raises(InvalidInputError, match="not a ragkit index"):
            _build(docs, other, tiny_backbone_dir, rebuild=rebuild)
    assert (other / "index.db").read_bytes() == before


def test_an_interrupted_first_run_keeps_what_it_committed(docs, tmp_path, tiny_backbone_dir, monkeypatch):
    from ragkit.indexer import builder

    calls = {"n": 0}
    original = builder._write_group

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(builder, "_write_group", interrupted)
    index = tmp_path / "index"
    with pytest.raises(KeyboardInterrupt):
        _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0, group_chunks=1)
    assert len(_paths(index)) == 1  # the first group's document is kept for the next run
    monkeypatch.setattr(builder, "_write_group", original)
    summary = _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0)
    assert len(summary.added) == 2 and len(_paths(index)) == 3


def test_rebuild_naming_one_file_rebuilds_every_source(docs, tmp_path, tiny_backbone_dir):
    index = tmp_path / "index"
    _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0)
    summary = _build(docs / "a.md", index, tiny_backbone_dir, chunk_tokens=16, overlap=0, rebuild=True)
    assert sorted(summary.added) == ["a.md", "b.md", "c.md"]
    assert _paths(index) == ["a.md", "b.md", "c.md"]


def test_remove_never_empties_the_index_by_one_path(docs, tmp_path, tiny_backbone_dir, monkeypatch):
    from ragkit.indexer.removal import remove_documents

    index = tmp_path / "index"
    _build(docs, index, tiny_backbone_dir, chunk_tokens=16, overlap=0)
    for spec in ("", ".", str(docs)):
        monkeypatch.chdir(docs)
        with pytest.raises(InvalidInputError, match="whole index"):
            remove_documents(index, [spec])
    assert _paths(index) == ["a.md", "b.md", "c.md"]
    assert remove_documents(index, ["a.md"]) == ["a.md"]  # relative to the current folder


def test_removing_below_ivfpq_minimum_keeps_the_index_openable(tmp_path):
    import numpy as np

    from ragkit.indexer import vectors

    rng = np.random.default_rng(0)
    points = rng.normal(size=(300, 16)).astype(np.float32)
    spec = vectors.choose("ivfpq", 300, 16)
    assert spec.kind == "ivfpq"
    few = vectors.build(spec, 16, [(np.arange(100, dtype=np.int64), points[:100])])
    assert few.ntotal == 100  # fell back to exact search instead of failing to train


def test_progress_shows_on_a_pipe(docs, tmp_path, tiny_backbone_dir):
    import subprocess
    import sys

    command = [sys.executable, "-m", "ragkit", "index", str(docs), "--index", str(tmp_path / "index")]
    command += ["--encoder", str(tiny_backbone_dir), "--chunk-tokens", "16", "--overlap", "0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "indexing 3 files" in result.stderr and "indexing: 3/3 files, 3 chunks" in result.stderr
