"""``ragkit ask``: the top passages for a question, with sources, and optionally an answer."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from ragkit.cli.console import err, out
from ragkit.cli.index_commands import IndexDirOption
from ragkit.cli.options import JsonOption

SNIPPET_CHARS = 320


def ask_command(
    query: Annotated[str, typer.Argument(help="What to look for, in plain words.", show_default=False)],
    index_dir: IndexDirOption = None,
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=1000, help="How many passages to show.")] = 5,
    filter: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            help="Only chunks whose document matches: a path glob ('docs/*.md') or key=value on "
            "document metadata ('suffix=.md'). Repeatable; all must hold.",
        ),
    ] = None,
    hybrid: Annotated[
        bool,
        typer.Option(
            "--hybrid/--dense",
            help="Fuse dense search with full-text BM25 (the default: 0.3 dense + 0.7 BM25 over "
            "normalised scores, better than either alone on SciFact), or rank by the encoder "
            "alone with cosine scores.",
        ),
    ] = True,
    answer: Annotated[
        bool,
        typer.Option(
            "--answer", help="Also write a short answer from the passages, citing them as [1], [2]."
        ),
    ] = False,
    answer_model: Annotated[
        str, typer.Option(help="Chat model for --answer: smollm2-135m (packaged) or a Hugging Face id.")
    ] = "smollm2-135m",
    encoder: Annotated[
        str | None,
        typer.Option(
            "--encoder", "-e", help="Encoder for the query. Default: the one the index was built with."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Search the index for QUERY and show the best passages with file, lines and heading.

    Example: `ragkit ask "how do I resume training?" -k 3 --filter "docs/*.md"`
    """
    from ragkit.errors import InvalidInputError
    from ragkit.indexer.filters import parse_filter_args
    from ragkit.indexer.index import Index

    if not query.strip():
        raise InvalidInputError("the query is empty; there is nothing to search for")
    index = Index.open(index_dir)
    if encoder is not None:
        index.use_encoder(encoder)
    if len(index) == 0:
        raise InvalidInputError(
            f"the index at {index.folder} is empty; add documents with `ragkit index PATH`"
        )
    hits = index.search(query, k=k, filter=parse_filter_args(filter) if filter else None, hybrid=hybrid)
    payload = {"query": query, "hits": [_hit_dict(h) for h in hits]}
    if as_json:
        if answer:
            payload["answer"] = _answer(query, hits, answer_model, stream=False)
        out.print_json(data=payload)
        return
    _show(query, hits, hybrid=hybrid)
    if answer:
        _answer(query, hits, answer_model, stream=True)


def _hit_dict(hit) -> dict:
    return {
        "rank": hit.rank,
        "score": round(hit.score, 6),
        "similarity": round(hit.similarity, 6),
        "text": hit.text,
        "source": hit.source,
        "start_line": hit.start_line,
        "end_line": hit.end_line,
        "heading": hit.heading,
        "chunk_id": hit.chunk_id,
    }


def _show(query: str, hits, *, hybrid: bool) -> None:
    from rich.text import Text

    if not hits:
        out.print("no matching passages")
        return
    words = [w for w in re.findall(r"\w+", query) if len(w) > 2]
    for hit in hits:
        header = Text.assemble(
            (f"{hit.rank:>2}. ", "bold"),
            (f"{hit.score:.3f}  ", "cyan"),
            (f"cos {hit.similarity:.2f}  ", "dim cyan") if hybrid else ("", ""),
            (f"{hit.source}:{hit.start_line}-{hit.end_line}", "green"),
            (f"  {hit.heading}" if hit.heading else "", "dim"),
        )
        out.print(header)
        body = " ".join(hit.text.split())
        snippet = Text("    " + body[:SNIPPET_CHARS] + ("…" if len(body) > SNIPPET_CHARS else ""))
        snippet.highlight_words(words, style="bold yellow", case_sensitive=False)
        out.print(snippet)


def _answer(query: str, hits, model_name: str, *, stream: bool, model=None) -> str:
    from ragkit.answer.prompt import CitationFilter, build_messages

    if not hits:
        return ""
    if model is None:
        from ragkit.answer.generator import ChatModel

        with err.status(f"loading {model_name} to write the answer"):
            model = ChatModel(model_name)
    citations = CitationFilter(len(hits))
    parts = []
    if stream:
        out.print("\n[bold]Answer[/] (from the passages above; check them)")
    for piece in model.stream(build_messages(query, [h.text for h in hits])):
        clean = citations.feed(piece)
        parts.append(clean)
        if stream and clean:
            out.print(clean, end="")
    tail = citations.flush()
    parts.append(tail)
    if stream:
        out.print(tail)
        if citations.dropped:
            dropped = sorted(set(citations.dropped))
            err.print(f"[yellow]removed citations of passages that were not given: {dropped}[/]")
    return "".join(parts).strip()
