"""Answer questions from a ragkit index inside a LangChain (LCEL) chain, fully offline.

    python examples/langchain_qa.py "How do I resume an interrupted training run?"

Indexes ./docs into ./.ragkit on first use, retrieves with RagkitRetriever, and lets the
packaged SmolLM2-135M-Instruct write a short answer that cites the passages. Swap the
`answer` step for any LangChain chat model (ChatOpenAI, ChatOllama, ...) in real use.
"""

from __future__ import annotations

import sys
from pathlib import Path

from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from ragkit.answer.generator import ChatModel
from ragkit.answer.prompt import CitationFilter, build_messages
from ragkit.indexer.builder import IndexOptions, build_index
from ragkit.integrations.langchain import RagkitRetriever

ROOT = Path(__file__).resolve().parent.parent


def main(question: str) -> None:
    index_dir = ROOT / ".ragkit"
    if not (index_dir / "index.db").exists():
        build_index(IndexOptions(source=ROOT / "docs", index_dir=index_dir))
    retriever = RagkitRetriever.from_index(index_dir, k=3)
    model = ChatModel()

    def answer(inputs: dict) -> str:
        passages = [d.page_content for d in inputs["docs"]]
        citations = CitationFilter(len(passages))
        text = "".join(citations.feed(p) for p in model.stream(build_messages(inputs["question"], passages)))
        return text + citations.flush()

    chain = {"docs": retriever, "question": RunnablePassthrough()} | RunnablePassthrough.assign(
        answer=RunnableLambda(answer)
    )
    result = chain.invoke(question)
    for i, doc in enumerate(result["docs"], start=1):
        meta = doc.metadata
        print(f"[{i}] {meta['source']}:{meta['start_line']}-{meta['end_line']} ({meta['heading']})")
    print()
    print(StrOutputParser().invoke(result["answer"]))


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "How do I resume an interrupted training run?")
