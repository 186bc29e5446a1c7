"""The LangChain adapters, run for real with langchain-core."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore

from conftest import CATS_AND_DOGS, build_tiny_index, make_encoder
from ragkit.integrations.langchain import RagkitEmbeddings, RagkitRetriever


@pytest.fixture
def index_dir(tmp_path: Path, tiny_backbone_dir: Path) -> Path:
    return build_tiny_index(
        tmp_path,
        tiny_backbone_dir,
        {"a.md": CATS_AND_DOGS, "sub/b.txt": "stock market fell in the city\n\nthe red tree by the river\n"},
    )


def test_invoke_ainvoke_and_batch_return_documents_with_sources(index_dir: Path):
    retriever = RagkitRetriever.from_index(index_dir, k=2)
    docs = retriever.invoke("the cat sat on the mat")
    assert len(docs) == 2 and all(isinstance(d, Document) for d in docs)
    top = docs[0]
    assert top.page_content == "the cat sat on the mat"
    assert (
        top.metadata["source"] == "a.md"
        and top.metadata["start_line"] == 3
        and top.metadata["heading"] == "Cats"
    )
    assert {"score", "similarity", "chunk_id", "end_line", "rank"} <= set(top.metadata)
    assert top.metadata["similarity"] == pytest.approx(1.0, abs=1e-3)  # the exact text of a chunk
    again = asyncio.run(retriever.ainvoke("the cat sat on the mat"))
    assert [d.metadata["chunk_id"] for d in again] == [d.metadata["chunk_id"] for d in docs]
    batched = retriever.batch(["the cat sat on the mat", "stock market fell in the city"])
    assert batched[1][0].metadata["source"] == "sub/b.txt"


def test_filter_and_k_are_honoured(index_dir: Path):
    retriever = RagkitRetriever.from_index(index_dir, k=2, filter="sub/*")
    docs = retriever.invoke("the cat sat on the mat")
    assert len(docs) == 2 and all(d.metadata["source"] == "sub/b.txt" for d in docs)


def test_inside_an_lcel_chain(index_dir: Path):
    retriever = RagkitRetriever.from_index(index_dir, k=1)
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from the context only."), ("human", "Context: {context}\n\nQuestion: {question}")]
    )
    seen = []

    def format_docs(docs):
        seen.extend(docs)
        return "\n".join(f"[{d.metadata['source']}] {d.page_content}" for d in docs)

    chain = {"context": retriever | format_docs, "question": RunnablePassthrough()} | prompt
    chain = chain | FakeListChatModel(responses=["The cat sat on the mat [a.md]."]) | StrOutputParser()
    assert chain.invoke("the cat sat on the mat") == "The cat sat on the mat [a.md]."
    assert seen and seen[0].metadata["source"] == "a.md"


def test_embeddings_use_the_query_instruction_and_work_in_a_vector_store():
    encoder = make_encoder(instructions={"query": "find the relevant passage"})
    embeddings = RagkitEmbeddings(encoder)
    doc = np.array(embeddings.embed_documents(["the cat sat"])[0])
    query = np.array(embeddings.embed_query("the cat sat"))
    assert doc.shape == (32,) and not np.allclose(doc, query)
    np.testing.assert_allclose(doc, encoder.encode_documents(["the cat sat"])[0], atol=1e-6)
    np.testing.assert_allclose(query, encoder.encode_queries(["the cat sat"])[0], atol=1e-6)
    store = InMemoryVectorStore(embedding=embeddings)
    store.add_texts(["the cat sat on the mat", "stock market fell", "the red tree by the river"])
    assert len(store.similarity_search("stock market fell", k=2)) == 2
    assert asyncio.run(embeddings.aembed_query("the cat sat")) == embeddings.embed_query("the cat sat")


def test_empty_documents_get_zero_vectors_not_an_error():
    encoder = make_encoder()
    embeddings = RagkitEmbeddings(encoder)
    vectors = np.array(embeddings.embed_documents(["", "the cat sat", "   "]))
    assert vectors.shape == (3, 32)
    assert not vectors[0].any() and not vectors[2].any()
    np.testing.assert_allclose(vectors[1], encoder.encode_documents(["the cat sat"])[0], atol=1e-6)


def test_missing_index_fails_at_construction(tmp_path: Path):
    from ragkit.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="no index at"):
        RagkitRetriever.from_index(tmp_path / "none")
