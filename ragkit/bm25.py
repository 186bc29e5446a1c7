"""BM25 through bm25s, with Lucene's scoring and parameters (k1=1.2, b=0.75) as in BEIR."""

from __future__ import annotations

import numpy as np

SETTINGS = {"method": "lucene", "k1": 1.2, "b": 0.75, "stopwords": "en", "stemmer": "english"}
"""Everything besides the texts that decides a BM25 ranking here (caches key on it)."""


def bm25_run(doc_ids: list[str], doc_texts: list[str], queries: dict[str, str], k: int = 100) -> dict:
    """Top-``k`` BM25 scores per query, English stop words removed and Snowball-stemmed."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer(SETTINGS["stemmer"])
    retriever = bm25s.BM25(method=SETTINGS["method"], k1=SETTINGS["k1"], b=SETTINGS["b"])
    stopwords = SETTINGS["stopwords"]
    retriever.index(
        bm25s.tokenize(doc_texts, stopwords=stopwords, stemmer=stemmer, show_progress=False),
        show_progress=False,
    )
    query_ids = list(queries)
    tokens = bm25s.tokenize(
        [queries[q] for q in query_ids], stopwords=stopwords, stemmer=stemmer, show_progress=False
    )
    k = min(k, len(doc_ids))
    indices, scores = retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
    run = {}
    for row, query in enumerate(query_ids):
        run[query] = {
            doc_ids[int(i)]: float(s)
            for i, s in zip(indices[row], scores[row], strict=True)
            if np.isfinite(s) and s > 0
        }
    return run
