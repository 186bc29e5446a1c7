"""The index as a JSON HTTP API (FastAPI): ``POST /search``, ``POST /answer``, ``GET /status``.

FastAPI writes the OpenAPI description (``/openapi.json``, browsable at ``/docs``) from the
request models below. Every failure is a JSON object ``{"error": "..."}`` with a 4xx status
for a bad request and 500 for a fault, never a traceback. :class:`Guard` wraps the whole app
(the MCP endpoint included when mounted): a bearer token when one is set, a bound on the
request body read, and a POST body read as JSON whatever its declared content type.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ragkit.errors import RagkitError
from ragkit.serve.service import MAX_BODY_BYTES, MAX_K, MAX_QUERY_CHARS, SearchService

log = logging.getLogger("ragkit")
Filter = str | dict[str, str] | list[str | dict[str, str]] | None


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(description=f"What to look for (at most {MAX_QUERY_CHARS} characters).")
    k: int = Field(5, description=f"How many hits, 1 to {MAX_K}.")
    filter: Filter = Field(None, description="A path glob, an object of metadata values, or a list of those.")
    hybrid: bool = Field(True, description="Fuse dense and BM25 rankings (true) or dense only.")


class AnswerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(description=f"The question (at most {MAX_QUERY_CHARS} characters).")
    k: int = Field(5, description=f"How many passages to answer from, 1 to {MAX_K}.")
    mode: str = Field("extract", description="extract or generate.")
    filter: Filter = Field(None, description="As in /search.")


def create_app(service: SearchService, *, token: str | None = None, mcp_app=None) -> Guard:
    """The API around ``service``; ``mcp_app`` (MCP's streamable HTTP app) is served at /mcp."""
    lifespan = (lambda _app: mcp_app.router.lifespan_context(mcp_app)) if mcp_app is not None else None
    app = FastAPI(
        title="ragkit",
        summary="Search and answer over one ragkit index.",
        version=_version(),
        lifespan=lifespan,
    )

    @app.post("/search", summary="Top passages for a query, with sources and scores")
    def search(body: SearchBody) -> dict[str, Any]:
        return service.search(body.query, body.k, body.filter, body.hybrid)

    @app.post("/answer", summary="An extractive (or generated) answer with numbered citations")
    def answer(body: AnswerBody) -> dict[str, Any]:
        return service.answer(body.query, body.k, body.mode, body.filter)

    @app.get("/status", summary="What the index holds and its generation")
    def status() -> dict[str, Any]:
        return service.status()

    _add_error_handlers(app)
    if mcp_app is not None:
        app.router.routes.extend(mcp_app.routes)  # its /mcp endpoint, beside the API's own
    return Guard(app, token=token)


def _add_error_handlers(app: FastAPI) -> None:
    from starlette.exceptions import HTTPException

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        message = (
            "no such endpoint: use POST /search, POST /answer or GET /status"
            if exc.status_code == 404
            else exc.detail
        )
        return JSONResponse({"error": message}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _describe(exc.errors())}, status_code=400)

    @app.exception_handler(RagkitError)
    async def refused(_request: Request, exc: RagkitError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(Exception)
    async def fault(_request: Request, exc: Exception) -> JSONResponse:
        log.error("request failed: %s: %s", type(exc).__name__, exc)
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server's log"}, 500)


def _describe(errors) -> str:
    """Pydantic's first complaint as one sentence: where, and what was wrong."""
    if not errors:
        return "invalid request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        return f"malformed JSON: {first.get('ctx', {}).get('error', first.get('msg'))}"
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    if first.get("type") == "extra_forbidden":
        return f"unknown field {where!r}"
    if first.get("type") == "model_attributes_type":
        return 'the body must be a JSON object, e.g. {"query": "...", "k": 5}'
    if first.get("type") == "missing":
        return f"missing field {where!r}"
    return f"{where or 'body'}: {first.get('msg', 'invalid')}"


class Guard:
    """ASGI middleware: bearer-token check and a bound on the body, before anything else runs."""

    def __init__(self, app, *, token: str | None = None, max_body: int = MAX_BODY_BYTES):
        self.app, self.token, self.max_body = app, token, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.token is not None and not _authorised(headers.get("authorization", ""), self.token):
            return await _reply(send, 401, "missing or wrong bearer token", {"www-authenticate": "Bearer"})
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await _drain(receive)
            return await _reply(send, 413, f"request body over {self.max_body:,} bytes")
        seen = 0

        async def bounded_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _BodyTooLarge
            return message

        if scope.get("method") == "POST" and headers.get("content-type", "") != "application/json":
            # A body is JSON whatever it is labelled: `curl -d` sends form-encoded by default.
            kept = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
            scope = {**scope, "headers": [*kept, (b"content-type", b"application/json")]}
        try:
            await self.app(scope, bounded_receive, send)
        except _BodyTooLarge:
            await _drain(receive)
            await _reply(send, 413, f"request body over {self.max_body:,} bytes")


class _BodyTooLarge(Exception):
    pass


DRAIN_LIMIT = 4 * 1024 * 1024
"""Bytes of a refused body read and dropped before the 413 goes out. A server that answers
while the client is still sending closes a socket with unread data, which the client sees as
a connection reset instead of the answer; beyond this much, a reset is the honest reply."""


async def _drain(receive) -> None:
    read = 0
    while read <= DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            return
        read += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _authorised(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def _reply(send, status: int, message: str, extra: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _version() -> str:
    from ragkit.version import __version__

    return __version__
