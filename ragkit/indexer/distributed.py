"""Parsing, chunking and embedding on a Ray cluster (``ragkit index --ray``).

The driver keeps everything that decides what an index holds: discovery, hashing, the change
plan and every write to SQLite and FAISS, in the same transactions as a local run. What costs
the time, turning a changed file's bytes into chunks and vectors, runs on a pool of Ray
actors, one encoder each (one GPU each when the cluster has GPUs). The driver reads and sends
the bytes it hashes, so workers need no shared filesystem and embed exactly what is stored;
it reads them batch by batch with a bound on the bytes in flight, so its memory stays flat
however many files changed. Results come back in input order and are written as they
arrive, so a killed driver leaves what a killed local run leaves. Ray restarts a lost actor
and retries its batch; each document is replaced whole, so a retry never duplicates chunks.
Evaluation's corpus encoding (:func:`encode_texts`) runs as a Ray Data ``map_batches`` stage.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import json
import logging
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ragkit.errors import InvalidInputError

LOCAL = "local"
"""``--ray`` without an address: ``$RAY_ADDRESS`` if set, else a cluster started locally."""
INSTALL_HINT = "pip install 'ragkit[ray]'"
_BYTES_PER_TOKEN = 4
"""Rough size of a token in document bytes: sizes a batch before its text is tokenised."""
_CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class StageSettings:
    """What every actor needs to turn bytes into the chunks and vectors a local run would make."""

    encoder: str
    device: str | None
    dtype: str | None
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
    dtype: str = "float32"
    """What embedded it on its worker (:func:`ragkit.encoder.document_precision.document_dtype`)."""


def installed() -> bool:
    return importlib.util.find_spec("ray") is not None


def _address(address: str) -> str | None:
    """The cluster to join: None starts (or finds) a local one."""
    if address == LOCAL:
        address = os.environ.get("RAY_ADDRESS") or LOCAL
    return None if address in (LOCAL, "") else address


def _check_reachable(address: str) -> None:
    """Fail in seconds with one line where ``ray.init`` would wait a minute and then trace."""
    if address == "auto":
        return
    if address.startswith(("http://", "https://")):
        raise InvalidInputError(
            f"{address} is a Ray dashboard or job address; give the cluster's HOST:6379 "
            "(or ray://HOST:10001 for Ray Client)"
        )
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
    import ray.data

    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = True
    context.print_on_execution_start = False


def _pool(workers: int | None, device: str | None = None) -> tuple[int, dict]:
    """How many actors, and what each asks of a node: one GPU each where the cluster has GPUs
    (and ``device`` is not ``cpu``), else one actor per node by default, each with an equal
    share of the smallest node's CPUs (its encoder runs that many threads)."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    gpus = sum(int(n.get("GPU", 0)) for n in nodes)
    if gpus and str(device or "").split(":")[0] != "cpu":
        if workers is not None and workers > gpus:
            raise InvalidInputError(f"--ray-workers {workers}: the cluster has {gpus} GPUs, one per worker")
        return workers or gpus, {"num_gpus": 1, "num_cpus": 1}
    smallest = min((int(n.get("CPU", 0)) for n in nodes), default=1) or 1
    total = sum(int(n.get("CPU", 0)) for n in nodes) or 1
    count = workers or max(1, len(nodes))
    if count > total:
        raise InvalidInputError(
            f"--ray-workers {count}: the cluster has {total} CPUs, one at least per worker"
        )
    per_node = -(-count // max(1, len(nodes)))
    return count, {"num_cpus": max(1, smallest // per_node)}


def reader_signature() -> str:
    """What decides how bytes become chunks besides the encoder: ragkit's version, its
    readers' version, and whether PDFs can be read. Driver and workers must agree on it."""
    from ragkit.documents.readers import PARSER_VERSION
    from ragkit.version import __version__

    pdf = importlib.util.find_spec("pypdf") is not None
    return f"ragkit {__version__}, readers {PARSER_VERSION}, pdf {'yes' if pdf else 'no'}"


def _check_worker(fingerprint: str, readers: str, expected: tuple[str, str]) -> None:
    """A worker that would embed or read differently must not write anything."""
    if fingerprint != expected[0]:
        raise InvalidInputError(
            f"a Ray worker embedded with encoder fingerprint {fingerprint}, this run uses "
            f"{expected[0]}: install the same ragkit and encoder on every node"
        )
    if readers != expected[1]:
        raise InvalidInputError(
            f"a Ray worker reads documents as {readers}, the driver as {expected[1]}: "
            "install the same ragkit (and extras) on every node"
        )


def _run_errors(rows: Iterator, fetch: bool = False) -> Iterator:
    """Ray's failures (a worker that cannot start, a batch that failed every retry) as one line;
    with ``fetch``, ``rows`` are object references, each read with ``ray.get``."""
    import ray
    from ray.exceptions import RayError

    try:
        for row in rows:
            yield ray.get(row) if fetch else row
    except RayError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInputError(f"a Ray worker failed: {first}") from None


RETRIES = {"max_restarts": 3, "max_task_retries": 3}
"""A lost actor is restarted and its batch retried, a few times, never forever. Ray Data
takes these as ``ray_remote_args`` (deprecated in 2.60, with no named replacement yet), so
the ``ray`` extra stays below 2.64."""


def _map_batches(dataset, stage, **kwargs):
    """``dataset.map_batches`` with the bounded retries, without Ray's deprecation notice."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return dataset.map_batches(stage, **kwargs, **RETRIES)


class EmbedStage:
    """A Ray Data actor: loads the encoder once, then parses, chunks and embeds batches.

    ``on_batch`` is called with each batch's document names before any work on it (a hook
    for callers and tests that must act mid-run, such as killing this actor).
    """

    def __init__(self, settings: StageSettings, on_batch: Callable[[list[str]], None] | None = None):
        import torch

        from ragkit.encoder import openvino_engine
        from ragkit.encoder.document_precision import load_document_encoder
        from ragkit.indexer.chunking import token_chunker

        torch.set_num_threads(settings.threads)
        openvino_engine.set_num_threads(settings.threads)
        self.encoder = load_document_encoder(settings.encoder, device=settings.device, dtype=settings.dtype)
        choice = self.encoder.precision_choice
        self.dtype = choice.dtype if choice is not None else "float32"
        self.chunker = token_chunker(self.encoder, settings.chunk_tokens, settings.overlap)
        self.on_batch = on_batch
        self.readers = reader_signature()

    def embed_batch(self, batch: dict[str, list]) -> dict[str, list]:
        """The actor method the driver calls: ``batch`` has relative, path and raw columns."""
        return self(batch)

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
        vectors = np.zeros((0, self.encoder.dimension), dtype=np.float32)
        if texts:  # a batch of skipped files has nothing to embed
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
            "readers": [self.readers] * len(names),
            "dtype": [self.dtype] * len(names),
        }


def documents_per_batch(sizes: list[int], chunk_tokens: int, group_chunks: int) -> int:
    """Documents per batch so that a batch holds about ``group_chunks`` chunks' worth of tokens
    (the local run's commit group), judged from the median document's size in bytes."""
    if not sizes:
        return 1
    median = sorted(sizes)[len(sizes) // 2]
    tokens = max(1, median // _BYTES_PER_TOKEN)
    return max(1, min(256, (group_chunks * chunk_tokens) // tokens))


def plan_batches(
    items: Iterable[tuple[str, Path, bytes]], batch_documents: int, max_bytes: int
) -> Iterator[list[tuple[str, Path, bytes]]]:
    """Consecutive batches of at most ``batch_documents`` files and ``max_bytes`` bytes (a file
    larger than that is a batch of its own), drawn from ``items`` only as they are needed."""
    batch: list[tuple[str, Path, bytes]] = []
    size = 0
    for item in items:
        if batch and (len(batch) >= batch_documents or size + len(item[2]) > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += len(item[2])
    if batch:
        yield batch


def embed(
    pending: Iterable[tuple[str, Path, bytes]],
    settings: StageSettings,
    *,
    workers: int | None = None,
    batch_documents: int = 16,
    dimension: int,
    fingerprint: str,
    on_batch: Callable[[list[str]], None] | None = None,
    max_bytes_in_flight: int = 64 * 1024 * 1024,
    documents: int | None = None,
) -> Iterator[EmbeddedDocument]:
    """Chunks and vectors of ``pending`` (name, path, bytes), in input order, as they finish;
    every worker must embed with ``fingerprint`` and read documents as the driver does.

    ``pending`` is read lazily and shipped in batches; batches are handed to the actors
    round-robin while at most ``max_bytes_in_flight`` bytes (and two batches an actor) are
    out, and collected oldest first, so the driver's memory is bounded by that budget, not
    by how many files changed. A lost actor is restarted and its batch retried (``RETRIES``).
    ``documents``, how many ``pending`` holds when known, keeps batches small enough that
    every actor gets work.
    """
    import ray

    expected = (fingerprint, reader_signature())
    count, resources = _pool(workers, settings.device)
    if "num_gpus" not in resources:
        settings = StageSettings(**{**asdict(settings), "threads": resources["num_cpus"]})
    if documents:
        batch_documents = max(1, min(batch_documents, -(-documents // count)))
    remote = ray.remote(**resources, **RETRIES)(EmbedStage)
    actors: list = []
    in_flight: collections.deque = collections.deque()
    budget = max(1, max_bytes_in_flight)
    for turn, batch in enumerate(plan_batches(pending, batch_documents, budget)):
        size = sum(len(raw) for _, _, raw in batch)
        while in_flight and (sum(s for _, s in in_flight) + size > budget or len(in_flight) >= 2 * count):
            yield from _collect(in_flight.popleft()[0], dimension, expected)
        if not actors:  # started with the first batch: a run with nothing to embed starts none
            actors = [remote.remote(settings, on_batch) for _ in range(count)]
        columns = {"relative": [n for n, _, _ in batch], "path": [str(p) for _, p, _ in batch]}
        reference = actors[turn % count].embed_batch.remote({**columns, "raw": [r for *_, r in batch]})
        in_flight.append((reference, size))
        del batch, columns
    while in_flight:
        yield from _collect(in_flight.popleft()[0], dimension, expected)


def _collect(reference, dimension: int, expected: tuple[str, str]) -> Iterator[EmbeddedDocument]:
    """One finished batch as documents, after checking its worker embeds as this run does."""
    from ragkit.indexer.chunking import Chunk

    (result,) = list(_run_errors(iter([reference]), fetch=True))
    for i, name in enumerate(result["relative"]):
        _check_worker(result["fingerprint"][i], result["readers"][i], expected)
        chunks = [Chunk(**c) for c in json.loads(result["chunks"][i])]
        vectors = np.frombuffer(result["vectors"][i], dtype=np.float32).reshape(len(chunks), dimension)
        yield EmbeddedDocument(name, chunks, vectors, result["skipped"][i], result["dtype"][i])


class EncodeStage:
    """A Ray Data actor for evaluation: one model, several poolings of one forward pass."""

    def __init__(self, spec: dict, poolings: list[str], batch_size: int, threads: int):
        import torch

        from ragkit.encoder import Encoder, openvino_engine

        torch.set_num_threads(threads)
        openvino_engine.set_num_threads(threads)
        from ragkit.encoder.document_precision import document_dtype

        self.encoder = Encoder.from_pretrained(**spec)
        self.dtype = document_dtype(self.encoder)
        self.poolings, self.batch_size = poolings, batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        texts = [str(text) for text in batch["text"]]
        pooled = self.encoder.encode_pooled(
            texts,
            self.poolings,
            batch_size=self.batch_size,
            show_progress=False,
            warn_truncated=False,
            max_length=self.encoder.config.document_max_length,
        )
        columns = {
            f"pooling_{i}": [np.asarray(row, dtype=np.float32).tobytes() for row in pooled[pooling]]
            for i, pooling in enumerate(self.poolings)
        }
        truncated = [self.encoder.last_truncated] + [0] * (len(texts) - 1)
        return {
            **columns,
            "position": batch["position"],
            "truncated": truncated,
            "fingerprint": [self.encoder.fingerprint] * len(texts),
            "dtype": [self.dtype] * len(texts),
        }


def actor_count(workers: int | None, device: str | None = None) -> int:
    """How many actors a job on the joined cluster will run."""
    return _pool(workers, device)[0]


def encode_texts(
    texts: list[str],
    spec: dict,
    poolings: list[str],
    *,
    fingerprint: str,
    batch_size: int = 32,
    workers: int | None = None,
    texts_per_batch: int = 256,
) -> tuple[list[np.ndarray], int]:
    """``texts`` embedded by Ray workers, which must embed with ``fingerprint``: one array per
    pooling (rows in input order) and how many texts were truncated."""
    import ray.data

    count, resources = _pool(workers, spec.get("device"))
    threads = resources.get("num_cpus", 1) if "num_gpus" not in resources else 1
    texts_per_batch = max(1, min(texts_per_batch, -(-len(texts) // count)))
    dataset = ray.data.from_items(
        [{"text": text, "position": i} for i, text in enumerate(texts)],
        override_num_blocks=-(-len(texts) // texts_per_batch),
    )
    encoded = _map_batches(
        dataset,
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
    rows: list[list[np.ndarray | None]] = [[None] * len(texts) for _ in poolings]
    truncated = 0
    for row in _run_errors(encoded.iter_rows()):
        _check_worker(row["fingerprint"], "", (fingerprint, ""))
        if spec.get("dtype") and row["dtype"] != spec["dtype"]:
            raise InvalidInputError(
                f"a Ray worker embedded in {row['dtype']}, this run asked for {spec['dtype']}: "
                "install the same ragkit and torch on every node"
            )
        for i in range(len(poolings)):
            rows[i][int(row["position"])] = np.frombuffer(row[f"pooling_{i}"], dtype=np.float32)
        truncated += int(row["truncated"])
    return [np.stack(r) for r in rows], truncated
