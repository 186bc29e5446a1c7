"""Answer questions from a ragkit index inside a LangChain (LCEL) chain, fully offline.

    python examples/langchain_qa.py "How do I resume an interrupted training run?"
    python examples/langchain_qa.py --generate "How do I resume an interrupted training run?"

Indexes ./docs into ./.ragkit on first use. The answer step is ``ragkit.answer`` as a
runnable: the passages' own best sentences by default, or (``--generate``) an answer written
by the packaged SmolLM2-135M-Instruct of which only the sentences that a cited passage
supports are kept. The retriever composes with any other LangChain step the same way.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ragkit.indexer.builder import IndexOptions, build_index
from ragkit.integrations.langchain import answer_runnable

ROOT = Path(__file__).resolve().parent.parent


def main(question: str, mode: str) -> None:
    index_dir = ROOT / ".ragkit"
    if not (index_dir / "index.db").exists():
        build_index(IndexOptions(source=ROOT / "docs", index_dir=index_dir))
    chain = answer_runnable(index_dir, k=3, mode=mode)
    result = chain.invoke(question)
    print(result.text)
    for c in result.citations:
        print(f"  [{c.number}] {c.source}:{c.start_line}-{c.end_line} {c.heading}")
    if result.note:
        print(result.note)


if __name__ == "__main__":
    args = sys.argv[1:]
    mode = "generate" if "--generate" in args else "extract"
    words = [a for a in args if a != "--generate"]
    main(" ".join(words) or "How do I resume an interrupted training run?", mode)
