"""``ragkit serve``: one warm process holding the encoder and the index, for agents."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from ragkit.cli.console import err, fail, safe
from ragkit.cli.index_commands import IndexDirOption

TOKEN_ENV = "RAGKIT_SERVE_TOKEN"
DEFAULT_PORT = 8765


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve_command(
    index_dir: IndexDirOption = None,
    mcp: Annotated[
        str | None,
        typer.Option(
            "--mcp",
            help="Serve MCP tools: 'stdio' (for a local agent client that starts ragkit itself; "
            "nothing else is served) or 'http' (streamable HTTP at /mcp, beside the JSON API). "
            "Without it: the JSON API only.",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on. Anything but loopback requires --token.")
    ] = ("127.0.0.1"),
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = DEFAULT_PORT,
    token: Annotated[
        str | None,
        typer.Option(
            help=f"Bearer token every HTTP request must carry (Authorization: Bearer TOKEN); also read "
            f"from ${TOKEN_ENV}, which keeps it out of the process list.",
            envvar=TOKEN_ENV,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve an index to agents: MCP tools (search, answer, status) and a JSON HTTP API.

    The encoder and index stay loaded, so a search costs its query's encoding, not a cold
    start. A finished `ragkit index` run is picked up without a restart. Read-only: no request
    writes, deletes or reads files outside the index.

    Examples: ragkit serve --mcp stdio (register with an MCP client); ragkit serve --port 8765
    then curl -X POST localhost:8765/search -d '{"query": "..."}'; OpenAPI at /docs.
    """
    if mcp not in (None, "stdio", "http"):
        fail(f"--mcp must be stdio or http, not {mcp!r}")
    if mcp != "stdio" and not is_loopback(host) and not token:
        fail(
            f"listening on {host} (not loopback) needs --token (or ${TOKEN_ENV}): "
            "anyone who can reach it could search"
        )
    if token is not None and len(token) < 16:
        fail("--token must be at least 16 characters")

    import logging

    from ragkit.serve.service import SearchService

    logging.getLogger("mcp").setLevel(logging.WARNING)  # a refused call is answered, not logged
    service = SearchService.open(index_dir)
    if mcp == "stdio":
        _serve_stdio(service)
    else:
        _serve_http(service, host, port, token, with_mcp=mcp == "http")


def _serve_stdio(service) -> None:
    from ragkit.serve.mcp_tools import create_mcp_server

    err.print(f"ragkit serve: MCP over stdio, index {safe(service.index.folder)}", highlight=False)
    create_mcp_server(service).run("stdio")


def _serve_http(service, host: str, port: int, token: str | None, *, with_mcp: bool) -> None:
    import uvicorn

    from ragkit.serve.http_api import create_app

    mcp_app = None
    if with_mcp:
        from ragkit.serve.mcp_tools import create_mcp_server

        mcp_app = create_mcp_server(service).streamable_http_app(host=host)
    app = create_app(service, token=token, mcp_app=mcp_app)
    where = f"http://{host}:{port}"
    err.print(
        f"ragkit serve: {where} (POST /search, POST /answer, GET /status, OpenAPI at /docs"
        f"{', MCP at /mcp' if with_mcp else ''}), index {safe(service.index.folder)}"
        f"{'' if token else ', no token (loopback only)'}",
        highlight=False,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
