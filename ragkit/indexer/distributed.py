"""Parsing, chunking and embedding on a Ray cluster (``ragkit index --ray``).

The driver keeps everything that decides what an index holds: discovery, hashing, the change
plan and every write to SQLite and FAISS, in the same transactions as a local run. What costs
the time, turning a changed file's bytes into chunks and vectors, runs as a Ray Data
``map_batches`` stage on a pool of actors, one encoder each (one GPU each when the cluster
has GPUs). The driver sends the bytes it hashed, so workers need no shared filesystem and
embed exactly what was hashed; results stream back in input order and are written as they
arrive, so a killed driver leaves what a killed local run leaves. Ray retries a batch whose
actor died; each document is replaced whole, so a retried batch never duplicates chunks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ragkit.errors import InvalidInputError

LOCAL = "local"
"""``--ray`` without an address: ``$RAY_ADDRESS`` if set, else a cluster on this machine."""
INSTALL_HINT = "pip install 'ragkit[ray]'"
_BYTES_PER_TOKEN = 4
"""Rough size of a token in document bytes: sizes a batch before its text is tokenised."""
_CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class StageSettings:
    """What every actor needs to turn bytes into the chunks and vectors a local run would make."""

    encoder: str
    device: str | None
    chunk_tokens: int
    overlap: int
    threads: int


@dataclass
class EmbeddedDocument:
    """One document as a worker returned it: its chunks and vectors, or why it was skipped."""

    relative: str
    chunks: list
    vectors: np.ndarray
    skipped: str
    fingerprint: str


def installed() -> bool:
    return importlib.util.find_spec("ray") is not None


def _address(address: str) -> str | None:
    """The cluster to join: None starts (or finds) one on this machine."""
    if address == LOCAL:
        return os.environ.get("RAY_ADDRESS") or None
    return address


def _check_reachable(address: str) -> None:
    """Fail in seconds with one line where ``ray.init`` would wait a minute and then trace."""
    if address == "auto":
        return
    host_port = address.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidInputError(f"the Ray address must be HOST:PORT or ray://HOST:PORT, not {address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InvalidInputError(
            f"cannot reach the Ray cluster at {address} ({reason}); start one with `ray start --head` "
            "or check the address"
        ) from None


@contextlib.contextmanager
def session(address: str) -> Iterator[None]:
    """Join the Ray cluster for the duration of a run (leaving one that was already joined)."""
    if not installed():
        raise InvalidInputError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}")
    import ray

    target = _address(address)
    if target is not None:
        _check_reachable(target)
    _quiet_ray()
    if ray.is_initialized():
        yield
        return
    try:
        ray.init(address=target, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise InvalidInputError(f"cannot start or join the Ray cluster ({exc})") from None
    try:
        yield
    finally:
        ray.shutdown()


def _quiet_ray() -> None:
    """ragkit's own progress is the one shown: Ray Data's bars and chatter stay off."""
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # Ray core's C++ notices on stderr
    import ray.data

    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = True
    context.print_on_execution_start = False


def _pool(workers: int | None) -> tuple[int, dict]:
    """How many actors, and what each asks of the cluster: one GPU each where there are GPUs,
    else an equal share of the CPUs (each actor's encoder runs that many threads)."""
    import ray

    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
    if gpus:
        count = workers or gpus
        return count, {"num_gpus": 1, "num_cpus": 1}
    count = workers or 1
    return count, {"num_cpus": max(1, cpus // count)}


class EmbedStage:
    """A Ray Data actor: loads the encoder once, then parses, chunks and embeds batches.

    ``on_batch`` is called with each batch's document names before any work on it (a hook
    for callers and tests that must act mid-run, such as killing this actor).
    """

    def __init__(self, settings: StageSettings, on_batch: Callable[[list[str]], None] | None = None):
        import torch

        from ragkit.encoder import Encoder, openvino_engine
        from ragkit.indexer.chunking import token_chunker

        torch.set_num_threads(settings.threads)
        openvino_engine.set_num_threads(settings.threads)
        self.encoder = Encoder.from_pretrained(settings.encoder, device=settings.device, light=True)
        self.chunker = token_chunker(self.encoder, settings.chunk_tokens, settings.overlap)
        self.on_batch = on_batch

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        from ragkit.documents.readers import SkipFile, parse_document

        names = [str(name) for name in batch["relative"]]
        if self.on_batch is not None:
            self.on_batch(names)
        chunks_of, skipped = [], []
        for path, raw in zip(batch["path"], batch["raw"], strict=True):
            try:
                chunks = self.chunker.split(parse_document(Path(str(path)), bytes(raw)))
                if not chunks:
                    raise SkipFile("no text")
                chunks_of.append(chunks)
                skipped.append("")
            except SkipFile as skip:
                chunks_of.append([])
                skipped.append(skip.reason)
        texts = [chunk.text for chunks in chunks_of for chunk in chunks]
        vectors = self.encoder.encode_documents(texts, show_progress=False, warn_truncated=False)
        vectors = np.asarray(vectors, dtype=np.float32)
        rows, offset = [], 0
        for chunks in chunks_of:
            rows.append(vectors[offset : offset + len(chunks)].tobytes())
            offset += len(chunks)
        return {
            "relative": names,
            "chunks": [json.dumps([asdict(c) for c in chunks]) for chunks in chunks_of],
            "vectors": rows,
            "skipped": skipped,
            "fingerprint": [self.encoder.fingerprint] * len(names),
        }


def documents_per_batch(sizes: list[int], chunk_tokens: int, group_chunks: int) -> int:
    """Documents per batch so that a batch holds about ``group_chunks`` chunks' worth of tokens
    (the local run's commit group), judged from the median document's size in bytes."""
    if not sizes:
        return 1
    median = sorted(sizes)[len(sizes) // 2]
    tokens = max(1, median // _BYTES_PER_TOKEN)
    return max(1, min(256, (group_chunks * chunk_tokens) // tokens))


def embed(
    pending: list[tuple[str, Path, bytes]],
    settings: StageSettings,
    *,
    workers: int | None = None,
    batch_documents: int = 16,
    dimension: int,
    on_batch: Callable[[list[str]], None] | None = None,
) -> Iterator[EmbeddedDocument]:
    """Chunks and vectors of ``pending`` (name, path, bytes), in input order, as they finish."""
    import ray.data

    from ragkit.indexer.chunking import Chunk

    if not pending:
        return
    count, resources = _pool(workers)
    if "num_gpus" not in resources:
        settings = StageSettings(**{**asdict(settings), "threads": resources["num_cpus"]})
    items = [{"relative": name, "path": str(path), "raw": raw} for name, path, raw in pending]
    batch_documents = max(1, min(batch_documents, -(-len(items) // count)))  # every actor gets work
    dataset = ray.data.from_items(items, override_num_blocks=-(-len(items) // batch_documents))
    embedded = dataset.map_batches(
        EmbedStage,
        fn_constructor_kwargs={"settings": settings, "on_batch": on_batch},
        batch_size=batch_documents,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=count, max_tasks_in_flight_per_actor=1),
        **resources,
    )
    for row in embedded.iter_rows():
        chunks = [Chunk(**c) for c in json.loads(row["chunks"])]
        vectors = np.frombuffer(row["vectors"], dtype=np.float32).reshape(len(chunks), dimension)
        yield EmbeddedDocument(row["relative"], chunks, vectors, row["skipped"], row["fingerprint"])


class EncodeStage:
    """A Ray Data actor for evaluation: one model, several poolings of one forward pass."""

    def __init__(self, spec: dict, poolings: list[str], batch_size: int, threads: int):
        import torch

        from ragkit.encoder import Encoder, openvino_engine

        torch.set_num_threads(threads)
        openvino_engine.set_num_threads(threads)
        self.encoder = Encoder.from_pretrained(**spec)
        self.poolings, self.batch_size = poolings, batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        texts = [str(text) for text in batch["text"]]
        pooled = self.encoder.encode_pooled(
            texts, self.poolings, batch_size=self.batch_size, show_progress=False, warn_truncated=False
        )
        columns = {
            f"pooling_{i}": [np.asarray(row, dtype=np.float32).tobytes() for row in pooled[pooling]]
            for i, pooling in enumerate(self.poolings)
        }
        truncated = [self.encoder.last_truncated] + [0] * (len(texts) - 1)
        return {**columns, "truncated": truncated, "fingerprint": [self.encoder.fingerprint] * len(texts)}


def encode_texts(
    texts: list[str],
    spec: dict,
    poolings: list[str],
    *,
    batch_size: int = 32,
    workers: int | None = None,
    texts_per_batch: int = 256,
) -> tuple[list[np.ndarray], int, str]:
    """``texts`` embedded by Ray workers: one array per pooling (rows in input order), how many
    were truncated, and the workers' encoder fingerprint (for the caller to check)."""
    import ray.data

    count, resources = _pool(workers)
    threads = resources.get("num_cpus", 1) if "num_gpus" not in resources else 1
    texts_per_batch = max(1, min(texts_per_batch, -(-len(texts) // count)))
    dataset = ray.data.from_items(
        [{"text": text} for text in texts], override_num_blocks=-(-len(texts) // texts_per_batch)
    )
    encoded = dataset.map_batches(
        EncodeStage,
        fn_constructor_kwargs={
            "spec": spec,
            "poolings": poolings,
            "batch_size": batch_size,
            "threads": threads,
        },
        batch_size=texts_per_batch,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=count, max_tasks_in_flight_per_actor=1),
        **resources,
    )
    rows: list[list[np.ndarray]] = [[] for _ in poolings]
    truncated, fingerprints = 0, set()
    for row in encoded.iter_rows():
        for i in range(len(poolings)):
            rows[i].append(np.frombuffer(row[f"pooling_{i}"], dtype=np.float32))
        truncated += int(row["truncated"])
        fingerprints.add(row["fingerprint"])
    if len(fingerprints) > 1:
        raise InvalidInputError(f"Ray workers loaded different encoders ({', '.join(sorted(fingerprints))})")
    return [np.stack(r) for r in rows], truncated, next(iter(fingerprints), "")
