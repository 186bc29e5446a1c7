"""``ragkit serve``: MCP over stdio through the SDK's client, the JSON API over HTTP, its token,
bad requests answered as JSON errors, and a re-index picked up while serving."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import CATS_AND_DOGS, build_tiny_index
from ragkit.indexer.builder import IndexOptions, build_index
from ragkit.search.index import Index

pytest.importorskip("mcp")
pytest.importorskip("fastapi")

RAGKIT = str(Path(sys.executable).parent / "ragkit")
TOKEN = "a-long-enough-secret-token"


@pytest.fixture
def built(tmp_path: Path, tiny_backbone_dir: Path) -> Path:
    return build_tiny_index(
        tmp_path, tiny_backbone_dir, {"a.md": CATS_AND_DOGS, "b.txt": "stock market fell in the city\n"}
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """``ragkit serve`` in a subprocess, stopped on exit."""

    def __init__(self, index: Path, *extra: str):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [RAGKIT, "serve", "--index", str(index), "--port", str(self.port), *extra]
        self.process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)

    def __enter__(self) -> _Server:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.process.stderr.read()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.3)
        raise AssertionError("server did not start")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)

    def call(self, method: str, path: str, body=None, *, raw: bytes | None = None, token: str | None = None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


def _ids(hits) -> list[int]:
    return [h["chunk_id"] if isinstance(h, dict) else h.chunk_id for h in hits]


def test_http_api_answers_like_index_search(built: Path):
    expected = Index.open(built).search("the cat sat", k=3)
    with _Server(built) as server:
        status, body = server.call("POST", "/search", {"query": "the cat sat", "k": 3})
        assert status == 200 and _ids(body["hits"]) == _ids(expected)
        assert [h["score"] for h in body["hits"]] == [round(h.score, 6) for h in expected]
        assert {"source", "start_line", "end_line", "heading", "score", "metadata"} <= set(body["hits"][0])
        status, dense = server.call("POST", "/search", {"query": "the cat sat", "k": 3, "hybrid": False})
        assert _ids(dense["hits"]) == _ids(Index.open(built).search("the cat sat", k=3, hybrid=False))
        status, body = server.call("POST", "/answer", {"query": "where did the cat sit?", "k": 2})
        assert status == 200 and body["mode"] == "extract" and len(body["hits"]) == 2
        assert all(c["source"] in {"a.md", "b.txt"} for c in body["citations"])
        status, body = server.call("GET", "/status")
        assert status == 200 and body["chunks"] == len(Index.open(built)) and body["documents"] == 2
        status, schema = server.call("GET", "/openapi.json")
        assert status == 200 and {"/search", "/answer", "/status"} <= set(schema["paths"])


@pytest.mark.parametrize(
    ("raw", "code", "message"),
    [
        (b'{"query": ', 400, "malformed JSON"),
        (b'{"query": "cat", "filter": {"colour": "red"}}', 400, "unknown filter key 'colour'"),
        (b'{"query": "cat", "k": 0}', 400, "k must be an integer from 1 to 50"),
        (b'{"query": "cat", "k": 1000000}', 400, "k must be an integer from 1 to 50"),
        (json.dumps({"query": "c" * 1_000_000}).encode(), 413, "request body over"),
        (json.dumps({"query": "c" * 3000}).encode(), 400, "at most 2,000"),
        (b'{"query": "cat", "colour": 1}', 400, "unknown field 'colour'"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b'{"query": "   "}', 400, "non-empty"),
    ],
    ids=["malformed", "filter-key", "k0", "k-huge", "1MB", "long-query", "extra-field", "array", "blank"],
)
def test_bad_requests_are_json_errors_and_the_server_keeps_answering(built: Path, raw, code, message):
    with _Server(built) as server:
        status, body = server.call("POST", "/search", raw=raw)
        assert status == code and message in body["error"], body
        status, body = server.call("POST", "/search", {"query": "the cat sat", "k": 1})
        assert status == 200 and len(body["hits"]) == 1


def test_a_token_is_required_on_every_request_when_set(built: Path):
    with _Server(built, "--token", TOKEN) as server:
        assert server.call("GET", "/status")[0] == 401
        assert server.call("POST", "/search", {"query": "cat"}, token="wrong-token-of-some-length")[0] == 401
        assert server.call("POST", "/search", {"query": "cat"}, token=TOKEN)[0] == 200
        assert server.call("GET", "/status", token=TOKEN)[0] == 200


def test_other_addresses_need_a_token(built: Path):
    result = subprocess.run(
        [RAGKIT, "serve", "--index", str(built), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "needs --token" in result.stderr
    short = subprocess.run(
        [RAGKIT, "serve", "--index", str(built), "--token", "short"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert short.returncode != 0 and "at least 16" in short.stderr


def test_a_reindex_while_serving_changes_results_and_no_request_fails(built: Path, tiny_backbone_dir: Path):
    docs = built.parent / "docs"
    failures: list[object] = []
    stop = threading.Event()
    with _Server(built) as server:
        before = server.call("POST", "/search", {"query": "quantum chromodynamics gluon", "k": 5})[1]
        assert all(h["source"] != "c.md" for h in before["hits"])

        def hammer():
            while not stop.is_set():
                status, body = server.call(
                    "POST", "/search", {"query": "quantum chromodynamics gluon", "k": 5}
                )
                if status != 200 or not body["hits"]:
                    failures.append((status, body))

        worker = threading.Thread(target=hammer)
        worker.start()
        try:
            (docs / "c.md").write_text("# Physics\n\nquantum chromodynamics describes the gluon field.\n")
            build_index(
                IndexOptions(
                    source=docs, index_dir=built, encoder=str(tiny_backbone_dir), chunk_tokens=8, overlap=0
                )
            )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                body = server.call("POST", "/search", {"query": "quantum chromodynamics gluon", "k": 5})[1]
                if any(h["source"] == "c.md" for h in body["hits"]):
                    break
                time.sleep(0.2)
            else:
                raise AssertionError("the server never saw the new document")
        finally:
            stop.set()
            worker.join()
        assert failures == []
        status = server.call("GET", "/status")[1]
        assert status["documents"] == 3 and status["generation"] != before["generation"]


def test_mcp_over_stdio_lists_and_calls_every_tool(built: Path):
    import anyio
    from mcp import ClientSession, StdioServerParameters, stdio_client

    expected = Index.open(built).search("the cat sat", k=3)
    params = StdioServerParameters(
        command=RAGKIT, args=["serve", "--mcp", "stdio", "--index", str(built)], env=dict(os.environ)
    )

    async def session():
        async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
            await client.initialize()
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == {"search", "answer", "status"}
            assert {"query", "k", "filter", "hybrid"} <= set(tools["search"].input_schema["properties"])
            assert all(t.description for t in tools.values())
            found = await client.call_tool("search", {"query": "the cat sat", "k": 3})
            assert not found.is_error and _ids(found.structured_content["hits"]) == _ids(expected)
            answered = await client.call_tool("answer", {"query": "where did the cat sit?", "k": 2})
            assert not answered.is_error and len(answered.structured_content["hits"]) == 2
            status = await client.call_tool("status", {})
            assert status.structured_content["chunks"] == len(Index.open(built))
            for bad, message in (
                ({"query": "cat", "k": 0}, "k must be"),
                ({"query": "cat", "filter": {"colour": "red"}}, "unknown filter key"),
                ({"query": "c" * 1_000_000}, "at most 2,000"),
            ):
                refused = await client.call_tool("search", bad)
                assert refused.is_error and message in refused.content[0].text
            again = await client.call_tool("search", {"query": "the cat sat", "k": 1})
            assert not again.is_error and len(again.structured_content["hits"]) == 1

    anyio.run(session)


def test_mcp_over_http_shares_the_port_and_the_token(built: Path):
    import anyio
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    expected = Index.open(built).search("the cat sat", k=2)
    with _Server(built, "--mcp", "http", "--token", TOKEN) as server:
        refused = urllib.request.Request(server.url + "/mcp", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(refused, timeout=30)
        assert caught.value.code == 401

        async def session():
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=60) as http,
                streamable_http_client(server.url + "/mcp", http_client=http) as (read, write),
                ClientSession(read, write) as client,
            ):
                await client.initialize()
                found = await client.call_tool("search", {"query": "the cat sat", "k": 2})
                assert not found.is_error and _ids(found.structured_content["hits"]) == _ids(expected)

        anyio.run(session)
        assert server.call("POST", "/search", {"query": "cat", "k": 1}, token=TOKEN)[0] == 200
