"""The FAISS side of an index: which structure, building it, writing it atomically.

Vectors are L2-normalised, so inner product is cosine. Every structure is wrapped in
``IndexIDMap2`` so FAISS ids are the SQLite chunk ids. The file is written to a temporary
name and renamed, so a reader or a crash never sees half an index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragkit.atomic import write_bytes
from ragkit.errors import InvalidInputError

FAISS_NAME = "vectors.faiss"
INDEX_TYPES = ("auto", "flat", "hnsw", "ivfpq")
AUTO_FLAT_LIMIT = 200_000
"""Up to here exact search stays fast on a CPU (see BENCHMARKS.md); beyond it, HNSW."""


@dataclass(frozen=True)
class IndexSpec:
    """The chosen structure and its parameters, as recorded in the index's meta table."""

    kind: str
    params: dict

    def to_dict(self) -> dict:
        return {"kind": self.kind, **self.params}

    @classmethod
    def from_dict(cls, recorded: dict | str) -> IndexSpec:
        """The spec as ``to_dict`` (or the meta table, as JSON) recorded it."""
        import json

        values = json.loads(recorded) if isinstance(recorded, str) else dict(recorded)
        return cls(values.pop("kind"), values)


IVFPQ_MIN_CHUNKS = 256
"""PQ trains 256 centroids per sub-quantizer (8 bits), so it needs at least that many vectors."""


def choose(requested: str, count: int, dimension: int) -> IndexSpec:
    if requested not in INDEX_TYPES:
        raise InvalidInputError(f"--index-type must be one of {', '.join(INDEX_TYPES)}, not {requested!r}")
    kind = requested if requested != "auto" else ("flat" if count <= AUTO_FLAT_LIMIT else "hnsw")
    if kind == "ivfpq" and count < IVFPQ_MIN_CHUNKS:
        # Exact search is the better index at this size anyway; recorded so status can say why.
        return IndexSpec("flat", {"requested": "ivfpq", "why": f"fewer than {IVFPQ_MIN_CHUNKS} chunks"})
    if kind == "flat":
        return IndexSpec("flat", {})
    if kind == "hnsw":
        return IndexSpec("hnsw", {"m": 32, "ef_construction": 80, "ef_search": 128})
    nlist = int(max(16, min(65536, 4 * np.sqrt(max(count, 1)))))
    m = next(m for m in (48, 32, 24, 16, 12, 8, 6, 4, 3, 2, 1) if dimension % m == 0)
    return IndexSpec(
        "ivfpq", {"nlist": nlist, "m": m, "nbits": 8, "nprobe": 32, "refine": True, "k_factor": 16}
    )


TRAIN_POINTS_PER_LIST = 64
"""k-means needs tens of points per list, not all of them: 1M vectors would take many minutes."""


def _training_sample(vectors: np.ndarray, nlist: int) -> np.ndarray:
    limit = TRAIN_POINTS_PER_LIST * nlist
    if len(vectors) <= limit:
        return np.ascontiguousarray(vectors, dtype=np.float32)
    rows = np.sort(np.random.default_rng(0).choice(len(vectors), limit, replace=False))
    return np.ascontiguousarray(vectors[rows], dtype=np.float32)


def build(spec: IndexSpec, dimension: int, batches) -> object:
    """Build the structure from ``(ids, vectors)`` batches (all of them, for training)."""
    import faiss

    pairs = list(batches)
    ids = np.concatenate([i for i, _ in pairs]) if pairs else np.empty(0, dtype=np.int64)
    vectors = np.concatenate([v for _, v in pairs]) if pairs else np.empty((0, dimension), dtype=np.float32)
    if spec.kind == "ivfpq" and len(ids) < max(IVFPQ_MIN_CHUNKS, spec.params["nlist"]):
        spec = IndexSpec("flat", {})  # too few vectors left to train on (documents were removed)
    if spec.kind == "flat":
        inner = faiss.IndexFlatIP(dimension)
    elif spec.kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dimension, spec.params["m"], faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = spec.params["ef_construction"]
        inner.hnsw.efSearch = spec.params["ef_search"]
    else:
        quantizer = faiss.IndexFlatIP(dimension)
        ivf = faiss.IndexIVFPQ(
            quantizer,
            dimension,
            spec.params["nlist"],
            spec.params["m"],
            spec.params["nbits"],
            faiss.METRIC_INNER_PRODUCT,
        )
        if len(vectors):
            clustering = _gpu_clustering_index(dimension)
            if clustering is not None:
                ivf.clustering_index = clustering  # k-means on the GPU; the index stays a CPU one
            ivf.train(_training_sample(vectors, spec.params["nlist"]))
        ivf.nprobe = spec.params["nprobe"]
        inner = ivf
        if spec.params.get("refine"):
            # Re-rank k_factor * k PQ candidates by exact inner product: PQ alone orders poorly.
            inner = faiss.IndexRefineFlat(ivf)
            inner.k_factor = float(spec.params.get("k_factor", 16))
    index = faiss.IndexIDMap2(inner)
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
    return index


def ids_of(index) -> np.ndarray:
    import faiss

    return np.sort(faiss.vector_to_array(index.id_map).astype(np.int64))


def write_atomic(index, folder: Path) -> Path:
    import faiss

    # Serialised in memory and written by Python: FAISS's own file calls take only paths
    # that are valid UTF-8, and a folder name need not be.
    return write_bytes(folder / FAISS_NAME, faiss.serialize_index(index).tobytes(), fsync=True)


def read(folder: Path):
    """The FAISS index in ``folder``, or None when missing or unreadable (to be rebuilt)."""
    import faiss

    path = folder / FAISS_NAME
    if not path.is_file():
        return None
    try:
        import numpy as np

        return faiss.deserialize_index(np.frombuffer(path.read_bytes(), dtype=np.uint8))
    except (RuntimeError, OSError):
        return None


def from_store(db, spec: IndexSpec, dimension: int):
    """The FAISS structure of every vector the database holds: the one rebuild from SQLite."""
    from ragkit.indexer import store

    return build(spec, dimension, store.all_vectors(db, dimension))


def _gpu_available() -> bool:
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _gpu_clustering_index(dimension: int):
    """A GPU flat index for IVF training's k-means (faiss's documented way), when there is a GPU."""
    if not _gpu_available():
        return None
    import faiss

    try:
        return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, faiss.IndexFlatIP(dimension))
    except RuntimeError:
        return None


def to_gpu_if_available(index):
    """Search on a GPU when faiss-gpu and CUDA are present; CPU otherwise (the default)."""
    import faiss

    if not _gpu_available():
        return index
    try:
        return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    except RuntimeError:
        return index  # structures without a GPU version (HNSW) stay on the CPU
