"""BEIR sets by name: downloaded from a (local) server, checked, cached; failures are one line."""

from __future__ import annotations

import http.server
import io
import json
import threading
import zipfile
from pathlib import Path

import pytest

from ragkit.evaluation.beir import DatasetError, load_beir
from ragkit.evaluation.datasets import resolve_dataset


def _archive(name: str, *, outside: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        document = {"_id": "d1", "title": "", "text": "cats sleep"}
        zipped.writestr(f"{name}/corpus.jsonl", json.dumps(document) + "\n")
        zipped.writestr(f"{name}/queries.jsonl", json.dumps({"_id": "q1", "text": "do cats sleep"}) + "\n")
        zipped.writestr(f"{name}/qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
        if outside:
            zipped.writestr("../escape.txt", "out")
    return buffer.getvalue()


@pytest.fixture
def server():
    """A local HTTP server whose files the test sets: {path: bytes}."""
    files: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            if body is not None:
                self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield files, f"http://127.0.0.1:{httpd.server_port}/{{name}}.zip"
    httpd.shutdown()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_a_named_set_is_downloaded_checked_and_cached(server, home: Path):
    files, url = server
    files["/scifact.zip"] = _archive("scifact")
    folder = resolve_dataset("scifact", url=url)
    assert folder == home / "datasets" / "scifact"
    assert load_beir(folder).qrels == {"q1": {"d1": 1}}
    files.clear()  # the server no longer has it: the cached copy is used
    assert resolve_dataset("SciFact", url=url) == folder


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"this is not a zip archive", "damaged; nothing was kept"),
        (_archive("scifact")[:-40], "damaged; nothing was kept"),
        (_archive("scifact", outside=True), "outside its folder"),
        (b"", "damaged"),
    ],
    ids=["not-a-zip", "truncated", "path-outside", "empty"],
)
def test_a_bad_archive_is_refused_and_nothing_is_kept(server, home: Path, body: bytes, message: str):
    files, url = server
    files["/scifact.zip"] = body
    with pytest.raises(DatasetError, match=message):
        resolve_dataset("scifact", url=url)
    assert not (home / "datasets" / "scifact").exists()
    assert not (home / "escape.txt").exists() and not (home / "datasets" / "escape.txt").exists()


def test_unreachable_unknown_and_missing_are_one_clear_line(server, tmp_path: Path):
    _, url = server
    with pytest.raises(DatasetError, match=r"could not download scifact .*local BEIR folder"):
        resolve_dataset("scifact", url="http://127.0.0.1:9/{name}.zip")  # nothing listens on port 9
    with pytest.raises(DatasetError, match="could not download nfcorpus"):
        resolve_dataset("nfcorpus", url=url)  # the server answers 404
    with pytest.raises(DatasetError, match="neither a dataset folder nor a BEIR set name"):
        resolve_dataset("no-such-set", url=url)
    local = tmp_path / "mine"
    local.mkdir()
    assert resolve_dataset(local) == local
