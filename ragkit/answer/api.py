"""``ragkit.answer``: a short answer from an index's passages, extractive or checked.

One call for the CLI, the LangChain adapter and agent code: retrieve, then either pick the
passages' own best sentences (``mode="extract"``, the default: nothing can be invented) or
let a chat model write the answer and keep only the sentences the passages support
(``mode="generate"``). Both return the same :class:`Answer`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from ragkit.answer.extractive import ScoredSentences, choose, score_sentences
from ragkit.answer.grounding import Checked, GroundingCheck, move_late_citations
from ragkit.answer.prompt import build_messages, citation_numbers
from ragkit.documents.sentences import SENTENCE_END
from ragkit.errors import InvalidInputError, RagkitError

MODES = ("extract", "generate")
NO_ANSWER = "The documents do not seem to answer this question; the closest passages are listed."


@dataclass
class Citation:
    """Passage ``[number]`` of an answer and where it is."""

    number: int
    source: str
    start_line: int
    end_line: int
    heading: str


@dataclass
class Answer:
    query: str
    mode: str
    """How the shown text was made: "extract" (also when a generated answer fell back) or "generate"."""
    text: str
    citations: list[Citation]
    hits: list
    answered: bool
    """False when nothing in the passages scored as an answer (``text`` then says so)."""
    removed_sentences: int = 0
    """Generated sentences the grounding check removed."""
    invented: list[str] = field(default_factory=list)
    """URLs, paths, numbers and names a generated answer used that no passage contains."""
    note: str = ""

    def to_dict(self) -> dict:
        body = asdict(self)
        body["hits"] = [h.to_dict() for h in self.hits]
        return body


def answer(
    index,
    query: str,
    *,
    k: int = 5,
    mode: str = "extract",
    generator=None,
    filter: str | dict | list | None = None,
    hybrid: bool = True,
    hits: list | None = None,
    on_text: Callable[[str], None] | None = None,
) -> Answer:
    """Answer ``query`` from the top ``k`` passages of ``index`` (an ``Index`` or its folder).

    ``generator`` (``mode="generate"``): a chat model name (the packaged ``smollm2-135m`` by
    default, a local folder or a hub id) or an object with ``stream(messages)``. ``on_text``
    receives checked text as it is ready, for streaming. ``hits`` skips the search.
    """
    if mode not in MODES:
        raise InvalidInputError(f"unknown answer mode {mode!r}: use extract or generate")
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError("the query is empty; there is nothing to answer")
    if isinstance(index, str | os.PathLike):
        from ragkit.search.index import Index

        index = Index.open(index)
    if hits is None:
        hits = index.search(query, k=k, filter=filter, hybrid=hybrid)
    scored = score_sentences(query, hits, index.encoder)
    if mode == "extract":
        return _extractive(query, hits, scored)
    return _generated(query, hits, index.encoder, scored, generator, on_text)


def _citations(hits, numbers: list[int]) -> list[Citation]:
    chosen = sorted(set(numbers))
    return [
        Citation(n, hits[n - 1].source, hits[n - 1].start_line, hits[n - 1].end_line, hits[n - 1].heading)
        for n in chosen
    ]


def _extractive(
    query: str, hits, scored: ScoredSentences, note: str = "", removed: Checked | None = None
) -> Answer:
    chosen = choose(scored)
    extra = {"removed_sentences": len(removed.removed), "invented": removed.invented} if removed else {}
    if not chosen:
        return Answer(query, "extract", NO_ANSWER, [], hits, False, note=note, **extra)
    text = " ".join(f"{s.text} [{s.passage}]" for s in chosen)
    citations = _citations(hits, [s.passage for s in chosen])
    return Answer(query, "extract", text, citations, hits, True, note=note, **extra)


def _chat_model(generator):
    if generator is not None and hasattr(generator, "stream"):
        return generator
    from ragkit.answer.generator import DEFAULT_ANSWER_MODEL, ChatModel

    return ChatModel(generator or DEFAULT_ANSWER_MODEL)


def _generated(query: str, hits, encoder, scored: ScoredSentences, generator, on_text) -> Answer:
    """Stream the model's text, check each sentence as it completes, show only what passes."""
    if not hits:
        return _extractive(query, hits, scored)
    model = _chat_model(generator)
    check = GroundingCheck(hits, encoder, scored)
    result, buffer = Checked(), ""

    def settle(text: str) -> None:
        before = len(result.sentences)
        check.check(text, result)
        for sentence in result.sentences[before:]:
            if on_text is not None:
                on_text(sentence + " ")

    try:
        for piece in model.stream(build_messages(query, [h.text for h in hits])):
            buffer = move_late_citations(buffer + piece)
            # A sentence is complete once the next one starts; not while a citation of it may
            # still follow ("... vectors. [1] It ..."). The rest waits, spaces and all.
            ends = [m for m in SENTENCE_END.finditer(buffer) if buffer[m.end()] != "["]
            if ends:
                settle(buffer[: ends[-1].start()])
                buffer = buffer[ends[-1].end() :]
    except RagkitError:
        raise
    except Exception as exc:  # a user's generator object: one clear error, never a traceback
        raise RagkitError(f"the answer model failed: {type(exc).__name__}: {exc}") from exc
    settle(buffer)
    if not result.sentences:
        why = (
            f"no generated sentence was supported by the passages ({len(result.removed)} removed); "
            "showing the passages' own sentences"
        )
        return _extractive(query, hits, scored, note=why, removed=result)
    text = " ".join(result.sentences)
    numbers = [n for n in citation_numbers(text) if 1 <= n <= len(hits)]
    return Answer(
        query, "generate", text, _citations(hits, numbers), hits, True, len(result.removed), result.invented
    )
