"""Warm search latency through `ragkit serve` (HTTP API and MCP) against in-process Index.search.

    python bench/serve.py [--index DIR] [--requests 40] [--out results.json]

Indexes docs/ unless --index names an index. Starts `ragkit serve --mcp http` on a free
loopback port, then measures p50/p95 of one search over the JSON API (``POST /search``) and
over MCP's streamable HTTP (``tools/call search`` through the SDK's client), with 1 and 8
concurrent clients, against ``Index.search`` in this process, all with the same queries.
A bounded load test: each client sends --requests searches, one after another.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
QUERIES = [
    "How do I resume an interrupted training run?",
    "Which index types are there?",
    "How is a filter written?",
    "What does the teacher do during training?",
    "How do I export an encoder for sentence-transformers?",
    "How are Sphinx documents read?",
    "What does ragkit eval report?",
    "How much memory does a query need?",
]


def percentiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000


def http_search(url: str, query: str) -> None:
    body = json.dumps({"query": query, "k": 5}).encode()
    with urllib.request.urlopen(urllib.request.Request(url + "/search", data=body), timeout=120) as response:
        json.loads(response.read())


def run_clients(clients: int, requests: int, call) -> list[float]:
    """Per-request latencies of ``clients`` threads, each making ``requests`` calls in turn."""
    times: list[float] = []
    lock = threading.Lock()

    def client(offset: int) -> None:
        for i in range(requests):
            started = time.perf_counter()
            call(QUERIES[(offset + i) % len(QUERIES)])
            with lock:
                times.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return times


def mcp_latencies(url: str, clients: int, requests: int) -> list[float]:
    """The same load through MCP: one SDK session per client, concurrent on one event loop."""
    import anyio
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    times: list[float] = []

    async def client(offset: int) -> None:
        async with (
            streamable_http_client(url + "/mcp") as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            for i in range(requests):
                started = time.perf_counter()
                result = await session.call_tool(
                    "search", {"query": QUERIES[(offset + i) % len(QUERIES)], "k": 5}
                )
                if result.is_error:
                    raise SystemExit(result.content[0].text)
                times.append(time.perf_counter() - started)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for c in range(clients):
                group.start_soon(client, c)

    anyio.run(main)
    return times


def start_server(index: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [str(BIN / "ragkit"), "serve", "--index", str(index), "--port", str(port), "--mcp", "http"]
    process = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(url + "/status", timeout=5).read()
            return process, url
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=None)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    index = args.index
    if index is None:
        index = Path(tempfile.mkdtemp(prefix="serve-bench-")) / "index"
        subprocess.run(
            [str(BIN / "ragkit"), "index", str(HERE.parent / "docs"), "--index", str(index)], check=True
        )
    from ragkit import Index

    local = Index.open(index)
    local.search(QUERIES[0], k=5)  # load the encoder before timing
    serial = threading.Lock()  # one search at a time, as the server runs them

    def in_process(query: str) -> None:
        with serial:
            local.search(query, k=5)

    process, url = start_server(index)
    rows = {}
    try:
        for clients in (1, 8):
            rows[f"in-process Index.search, {clients} thread(s)"] = run_clients(
                clients, args.requests, in_process
            )
            rows[f"HTTP POST /search, {clients} client(s)"] = run_clients(
                clients, args.requests, lambda q: http_search(url, q)
            )
            rows[f"MCP tools/call search, {clients} client(s)"] = mcp_latencies(url, clients, args.requests)
    finally:
        process.terminate()
        process.wait(timeout=30)
    print("| path | requests | p50 ms | p95 ms |")
    print("|---|---|---|---|")
    for name, times in rows.items():
        p50, p95 = percentiles(times)
        print(f"| {name} | {len(times)} | {p50:.0f} | {p95:.0f} |")
    if args.out:
        args.out.write_text(json.dumps({k: percentiles(v) for k, v in rows.items()}, indent=2))


if __name__ == "__main__":
    main()
