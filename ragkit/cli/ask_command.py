"""``ragkit ask``: the top passages for a question, with sources, and optionally an answer."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from ragkit.cli.console import err, out, visible
from ragkit.cli.index_commands import IndexDirOption
from ragkit.cli.options import DenseWeightOption, JsonOption, dense_weight_fusion, require_utf8

SNIPPET_CHARS = 320


_VALUE_OPTIONS = {"-i", "--index", "-k", "--top", "--filter", "-e", "--encoder", "--generator"} | {
    "--answer-model",
    "--dense-weight",
}


def _answer_modes() -> tuple[str, ...]:
    from ragkit.answer import MODES

    return MODES


def answer_flag_values(args: list[str]) -> list[str]:
    """Give a bare ``--answer`` its default value, so that ``--answer --json`` and
    ``--answer "a question"`` mean what they say (click would take the next word as the
    mode). After the question, a word is the mode: ``ask "q" --answer poem`` is an error."""
    fixed: list[str] = []
    question_seen = False
    for i, arg in enumerate(args):
        fixed.append(arg)
        if arg == "--answer":
            following = args[i + 1] if i + 1 < len(args) else None
            bare = following is None or following.startswith("-") or not question_seen
            if bare and following not in _answer_modes():
                fixed.append("extract")
        elif i > 0 and not arg.startswith("-") and args[i - 1] not in _VALUE_OPTIONS | {"--answer"}:
            question_seen = question_seen or args[0] == "ask"
    return fixed


def _check_inputs(query: str, filters: list[str], answer: str | None, dense_weight, hybrid: bool) -> None:
    """Refuse a query, filter or answer mode that cannot work, before the index opens."""
    from ragkit.answer import MODES
    from ragkit.errors import InvalidInputError

    require_utf8(query, "the query")
    for item in filters:
        require_utf8(item, f"--filter {item!r}")
    if not query.strip():
        raise InvalidInputError("the query is empty; there is nothing to search for")
    if answer is not None and answer not in MODES:
        raise InvalidInputError(f"--answer takes extract or generate, not {answer!r}")
    if dense_weight is not None and not hybrid:
        raise InvalidInputError("--dense-weight weighs hybrid search's two rankings; --dense ranks by one")


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
            help="Fuse dense search with full-text BM25 (the default; with the shipped encoder "
            "0.4 dense + 0.6 BM25 over normalised scores, better than either alone on SciFact and "
            "the docs/ questions), or rank by the encoder alone with cosine scores.",
        ),
    ] = True,
    dense_weight: DenseWeightOption = None,
    answer: Annotated[
        str | None,
        typer.Option(
            "--answer",
            metavar="[extract|generate]",
            help="Also answer from the passages, citing them as [1], [2]. `--answer` alone (extract): "
            "the passages' own best sentences, so nothing is invented. `--answer generate`: a chat "
            "model writes it, and only sentences a cited passage supports are shown.",
            show_default=False,
        ),
    ] = None,
    generator: Annotated[
        str,
        typer.Option(
            "--generator",
            "--answer-model",
            help="Chat model for --answer generate: smollm2-135m (packaged), a model folder or a "
            "Hugging Face id.",
        ),
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
    from ragkit.search.filters import parse_filter_args
    from ragkit.search.index import Index

    _check_inputs(query, filter or [], answer, dense_weight, hybrid)
    index = Index.open(index_dir)
    if encoder is not None:
        index.use_encoder(encoder)
    if dense_weight is not None:
        index.fusion = dense_weight_fusion(dense_weight)
    if len(index) == 0:
        raise InvalidInputError(
            f"the index at {index.folder} is empty; add documents with `ragkit index PATH`"
        )
    hits = index.search(query, k=k, filter=parse_filter_args(filter) if filter else None, hybrid=hybrid)
    payload = {"query": query, "hits": [h.to_dict(digits=6) for h in hits]}
    if as_json:
        if answer:
            result = _answer(index, query, hits, answer, generator, stream=False)
            payload["answer"] = {k: v for k, v in result.to_dict().items() if k != "hits"}
        out.print_json(data=payload)
        return
    _show(query, hits, hybrid=hybrid)
    if answer:
        _answer(index, query, hits, answer, generator, stream=True)


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
            (f"{visible(hit.source)}:{hit.start_line}-{hit.end_line}", "green"),
            (f"  {visible(hit.heading)}" if hit.heading else "", "dim"),
        )
        out.print(header)
        body = visible(" ".join(hit.text.split()))
        snippet = Text("    " + body[:SNIPPET_CHARS] + ("…" if len(body) > SNIPPET_CHARS else ""))
        snippet.highlight_words(words, style="bold yellow", case_sensitive=False)
        out.print(snippet)


def _answer(index, query: str, hits, mode: str, generator, *, stream: bool, model=None):
    """The answer object; with ``stream``, shown as it comes (generated text sentence by
    sentence, once each sentence has passed the grounding check)."""
    from ragkit.answer import answer

    if stream:
        how = "sentences of the passages" if mode == "extract" else "generated, checked against the passages"
        out.print(f"\n[bold]Answer[/] ({how})")
    if mode == "generate" and model is None:
        from ragkit.answer.generator import ChatModel

        with err.status(f"loading {generator} to write the answer"):
            model = ChatModel(generator)
    shown: list[str] = []

    def show(text: str) -> None:
        shown.append(text)
        out.print(visible(text), end="", highlight=False, markup=False)

    result = answer(index, query, hits=hits, mode=mode, generator=model, on_text=show if stream else None)
    if stream:
        _finish_answer(result, streamed=bool(shown))
    return result


def _finish_answer(result, *, streamed: bool) -> None:
    """The rest of a shown answer: text not streamed yet, its sources, what the check removed."""
    if not streamed:
        out.print(visible(result.text), highlight=False, markup=False)
    else:
        out.print()
    for citation in result.citations:
        heading = f"  {citation.heading}" if citation.heading else ""
        out.print(
            visible(
                f"  [{citation.number}] {citation.source}:{citation.start_line}-{citation.end_line}{heading}"
            ),
            highlight=False,
            markup=False,
        )
    if result.note:
        err.print(visible(result.note), style="yellow", markup=False)
    if result.removed_sentences and result.mode == "generate":
        removed = result.removed_sentences
        err.print(f"removed {removed} generated sentence(s) the passages do not support", style="yellow")
    if result.invented:
        err.print(
            visible(f"not in any passage, removed: {', '.join(result.invented)}"),
            style="yellow",
            markup=False,
        )
