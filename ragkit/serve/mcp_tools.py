"""The index as Model Context Protocol tools, built with the official MCP Python SDK.

Three read-only tools: ``search``, ``answer`` and ``status``. Each tool's description and
argument schema is what an agent reads to decide how to call it, so they say what comes back
and what the limits are. A refused request is a tool error carrying the reason (the model can
correct itself); nothing a client sends can stop the server.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from ragkit.errors import RagkitError
from ragkit.serve.service import MAX_K, MAX_QUERY_CHARS, SearchService

Filter = str | dict[str, str] | list[str | dict[str, str]] | None

INSTRUCTIONS = (
    "ragkit serves one document index. Call `search` to find passages (each with its source "
    "file, line range and heading) and cite them; `answer` for a short extractive answer with "
    "numbered citations; `status` to see what the index holds."
)


def create_mcp_server(service: SearchService):
    """An ``MCPServer`` whose tools call ``service``."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer("ragkit", instructions=INSTRUCTIONS)

    def guarded(call, *args) -> dict[str, Any]:
        try:
            return call(*args)
        except RagkitError as exc:
            raise ToolError(str(exc)) from None

    @server.tool(
        description=(
            "Search the index for passages relevant to a query. Returns up to k hits, best "
            "first, each with text, source (file path), start_line, end_line, heading, score "
            "(the fused hybrid score, or cosine when hybrid is false), similarity (cosine), "
            "chunk_id and the document's metadata."
        )
    )
    def search(
        query: Annotated[str, Field(description=f"What to look for (at most {MAX_QUERY_CHARS} characters).")],
        k: Annotated[int, Field(description=f"How many hits, 1 to {MAX_K}.")] = 5,
        filter: Annotated[
            Filter,
            Field(
                description='A path glob ("docs/*.md"), an object of metadata values '
                '({"path": "docs/*", "suffix": ".md"}), or a list of those that must all hold.'
            ),
        ] = None,
        hybrid: Annotated[
            bool, Field(description="Fuse dense and BM25 rankings (true) or dense only.")
        ] = True,
    ) -> dict[str, Any]:
        return guarded(service.search, query, k, filter, hybrid)

    @server.tool(
        description=(
            "Answer a question from the top k passages: the passages' own best sentences, each "
            "citing [n]; citations map n to source, start_line, end_line and heading. answered is "
            "false when no passage scored as an answer (the closest passages are still listed)."
        )
    )
    def answer(
        query: Annotated[str, Field(description=f"The question (at most {MAX_QUERY_CHARS} characters).")],
        k: Annotated[int, Field(description=f"How many passages to answer from, 1 to {MAX_K}.")] = 5,
        mode: Annotated[
            str, Field(description="extract (sentences from the passages) or generate (a chat model).")
        ] = "extract",
        filter: Annotated[Filter, Field(description="As in search.")] = None,
    ) -> dict[str, Any]:
        return guarded(service.answer, query, k, mode, filter)

    @server.tool(
        description=(
            "What the index holds: sources, documents, chunks, the encoder and its fingerprint, "
            "index type, chunking, size, last update and generation (bumped by every finished "
            "`ragkit index` run; the server follows it without restarting)."
        )
    )
    def status() -> dict[str, Any]:
        return guarded(service.status)

    return server
