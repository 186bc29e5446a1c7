"""``ragkit eval --sts FILE``: cosine against gold similarity, Spearman and Pearson."""

from __future__ import annotations

import csv
import gc
import time
from pathlib import Path

import numpy as np

from ragkit.encoder.vector_cache import VectorCache, cached_encode, vector_cache_name
from ragkit.evaluation.beir import DatasetError
from ragkit.evaluation.progress import Reporter, SilentReporter
from ragkit.evaluation.stats import correlation_difference
from ragkit.evaluation.systems import (
    BASELINE,
    dense_systems,
    load_group,
    minilm_folder,
    parse_systems,
    shared_groups,
)


def load_sts(path: str | Path) -> tuple[np.ndarray, list[str], list[str]]:
    """Read ``score<TAB>sentence1<TAB>sentence2`` rows (a header line is allowed)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"STS file {path} does not exist")
    gold, first, second = [], [], []
    with open(path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
            if number == 1 and row and row[0] == "score":
                continue
            if not row:
                continue
            if len(row) != 3:
                raise DatasetError(f"{path.name} line {number}: expected score, sentence1, sentence2")
            try:
                gold.append(float(row[0]))
            except ValueError:
                raise DatasetError(f"{path.name} line {number}: score {row[0]!r} is not a number") from None
            first.append(row[1])
            second.append(row[2])
    if len(gold) < 3:
        raise DatasetError(f"{path} has fewer than 3 sentence pairs")
    return np.array(gold), first, second


def evaluate_sts(
    path: str | Path,
    *,
    encoder: str | object = "default",
    systems: str | list[str] | None = None,
    max_length: int | None = None,
    batch_size: int = 32,
    device: str | None = None,
    reporter: Reporter | None = None,
) -> dict:
    """Spearman and Pearson correlation of cosine with gold, for every encoder system, and each
    system's Spearman difference from ``causal-mean`` with a paired bootstrap interval."""
    from scipy import stats

    from ragkit.encoder import Encoder

    reporter = reporter or SilentReporter()
    started = time.perf_counter()
    gold, first, second = load_sts(path)
    names = [n for n in parse_systems(systems) if n != "bm25"]
    if systems is None and minilm_folder() is None:
        names.remove("minilm")
    under_test = (
        encoder
        if isinstance(encoder, Encoder)
        else Encoder.from_pretrained(encoder, max_length=max_length, device=device)
    )
    sentences = list(dict.fromkeys(first + second))
    position = {s: i for i, s in enumerate(sentences)}
    results = {}
    cosines = {}
    for group in shared_groups(dense_systems(names, under_test, max_length=max_length, device=device)):
        encoders = load_group(group)
        poolings = [e.config.pooling for e in encoders]
        caches = [VectorCache(vector_cache_name(e)) for e in encoders]

        def encode(texts: list[str], primary=encoders[0], poolings=poolings) -> list[np.ndarray]:
            pooled = primary.encode_pooled(texts, poolings, batch_size=batch_size, show_progress=False)
            return [pooled[p] for p in poolings]

        label = " + ".join(s.name for s in group)
        try:
            with reporter.task(f"{label} · sentences", len(sentences)) as advance:
                all_vectors = cached_encode(caches, sentences, "", encode, on_progress=advance)
        finally:
            for cache in caches:
                cache.close()
        for system, enc, vectors in zip(group, encoders, all_vectors, strict=True):
            a = vectors[[position[s] for s in first]]
            b = vectors[[position[s] for s in second]]
            cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            cosines[system.name] = cosine
            results[system.name] = {
                "spearman": float(stats.spearmanr(cosine, gold).statistic),
                "pearson": float(stats.pearsonr(cosine, gold).statistic),
                "fingerprint": enc.fingerprint,
            }
        del encoders
        gc.collect()
    for name, entry in results.items():
        entry["delta_vs_causal_mean"] = (
            correlation_difference(cosines[name], cosines[BASELINE], gold)
            if BASELINE in cosines and name != BASELINE
            else None
        )
    return {
        "dataset": Path(path).name,
        "pairs": len(gold),
        "systems": results,
        "seconds": round(time.perf_counter() - started, 1),
    }
