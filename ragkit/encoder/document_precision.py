"""Which precision embeds an index's documents: bf16 only where retrieval does not notice.

On CPUs with AMX or AVX512-BF16 the OpenVINO engine in bf16 embeds documents several times
faster than fp32, and most vectors agree with fp32 to cosine 0.999, but not all of them.
What a user feels is whether search returns the same passages, so bf16 is accepted by what
it does to retrieval on a probe set of documentation prose (``probe_texts.json``): every
probe vector within cosine :data:`MIN_COSINE` of fp32, and the top-:data:`TOP_K` passages of
each probe query the same as fp32's for at least :data:`MIN_AGREEMENT` of them on average.

``dtype="auto"`` (``ragkit index``'s default) asks the CPU first (no native bf16: fp32,
without loading anything more), then the check, run once per encoder, CPU and engine
version and remembered under ``$RAGKIT_HOME/precision/``. Queries are always embedded in
fp32, which is the reference the check compares with, so an index's queries and documents
agree by the same check; the index records what embedded its documents.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ragkit.atomic import write_text
from ragkit.encoder.cache import ragkit_home
from ragkit.encoder.encoder import Encoder
from ragkit.encoder.probe_texts import probe_texts
from ragkit.errors import InvalidInputError
from ragkit.hardware import cpu_bf16_features
from ragkit.hashing import canonical_json_hash

log = logging.getLogger("ragkit")

MIN_COSINE = 0.99
MIN_AGREEMENT = 0.95
TOP_K = 10
CHECK_FORMAT = 1
DTYPES = ("auto", "float32", "bfloat16", "float16")
"""What ``dtype`` accepts where documents are embedded."""


@dataclass(frozen=True)
class PrecisionChoice:
    """What embeds documents, why, and (when the check ran) what it measured."""

    dtype: str
    reason: str
    min_cosine: float | None = None
    top_agreement: float | None = None

    @property
    def passed(self) -> bool:
        return (
            self.min_cosine is not None
            and self.top_agreement is not None
            and self.min_cosine >= MIN_COSINE
            and self.top_agreement >= MIN_AGREEMENT
        )

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def summary(self) -> str:
        measured = ""
        if self.min_cosine is not None:
            measured = f"; probe min cosine {self.min_cosine:.4f}, top-{TOP_K} {self.top_agreement:.3f}"
        return f"{self.dtype} ({self.reason}{measured})"


def measure(reference: Encoder, candidate: Encoder, k: int = TOP_K) -> tuple[float, float]:
    """The smallest cosine between the two encoders' probe vectors, and the mean share of each
    probe query's top-``k`` passages (by ``reference``) that ``candidate`` also ranks top-``k``."""
    passages, queries = (list(t) for t in probe_texts())

    def vectors(encoder: Encoder) -> tuple[np.ndarray, np.ndarray]:
        docs = encoder.encode_documents(passages, show_progress=False, warn_truncated=False)
        return docs, encoder.encode_queries(queries, show_progress=False, warn_truncated=False)

    (ref_docs, ref_queries), (docs, queries_) = vectors(reference), vectors(candidate)
    cosines = np.concatenate([np.sum(ref_docs * docs, 1), np.sum(ref_queries * queries_, 1)])
    k = min(k, len(passages))
    ours = np.argsort(-(ref_queries @ ref_docs.T), axis=1)[:, :k]
    theirs = np.argsort(-(queries_ @ docs.T), axis=1)[:, :k]
    shared = [len(set(a) & set(b)) / k for a, b in zip(ours, theirs, strict=True)]
    return float(cosines.min()), float(np.mean(shared))


def check(reference: Encoder, candidate: Encoder) -> PrecisionChoice:
    """bf16 if ``candidate`` (the bf16 engine) retrieves as ``reference`` (fp32) does, else fp32."""
    cosine, agreement = measure(reference, candidate)
    measured = {"min_cosine": round(cosine, 6), "top_agreement": round(agreement, 4)}
    accepted = PrecisionChoice("bfloat16", "passed the retrieval check", **measured)
    if accepted.passed:
        return accepted
    return PrecisionChoice("float32", "bf16 failed the retrieval check", **measured)


def bf16_engine(reference: Encoder) -> Encoder | None:
    """``reference``'s encoder on the OpenVINO engine in bf16; None where that engine does not apply."""
    from ragkit.encoder.merged import load_engine_merged

    if getattr(reference.model, "backend", "torch") != "openvino":
        return None
    body = load_engine_merged(reference.backbone, reference.adapters, reference.config.layers, "bf16")
    if body is None:
        return None
    return Encoder.from_model(
        body,
        reference.tokenizer,
        reference.config,
        backbone=reference.backbone,
        adapters=reference.adapters,
        padding_side=reference.padding_side,
    )


def _verdict_file(reference: Encoder, features: list[str]) -> Path:
    from ragkit.encoder import openvino_engine

    engine = openvino_engine.artefact_name() if openvino_engine.installed() else "none"
    key = {"format": CHECK_FORMAT, "cpu": [*features, _cpu_model()], "engine": engine}
    return ragkit_home() / "precision" / f"{reference.fingerprint}-{canonical_json_hash(key)[:12]}.json"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _remembered(path: Path) -> PrecisionChoice | None:
    try:
        return PrecisionChoice(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def choose(
    reference: Encoder,
    *,
    features: list[str] | None = None,
    candidate: Callable[[Encoder], Encoder | None] = bf16_engine,
) -> tuple[PrecisionChoice, Encoder]:
    """The choice for ``reference`` (an fp32 encoder) and the encoder that embeds documents.

    ``features`` stands in for the CPU's native bf16 instruction sets; ``candidate`` builds
    the bf16 encoder to check (None: it does not apply here).
    """
    if reference.device.type != "cpu":
        return PrecisionChoice(_dtype_of(reference), "the device's default"), reference
    features = cpu_bf16_features() if features is None else features
    if not features:
        return PrecisionChoice("float32", "the CPU has no native bf16 arithmetic"), reference
    path = _verdict_file(reference, features)
    remembered = _remembered(path)
    if remembered is not None and remembered.dtype == "float32":
        return remembered, reference
    fast = candidate(reference)
    if fast is None:
        return PrecisionChoice("float32", "no bf16 engine applies to this encoder here"), reference
    verdict = remembered or check(reference, fast)
    if remembered is None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text(path, json.dumps(verdict.to_dict()))
        except OSError as exc:
            log.debug("could not remember the precision check in %s (%s)", path, exc)
    return verdict, (fast if verdict.dtype == "bfloat16" else reference)


def expected_choice(encoder: Encoder, features: list[str] | None = None) -> PrecisionChoice:
    """What :func:`choose` would pick for ``encoder`` here, from what is known without loading
    an engine: the CPU's features and a remembered check."""
    if encoder.device.type != "cpu":
        return PrecisionChoice(_dtype_of(encoder), "the device's default")
    features = cpu_bf16_features() if features is None else features
    if not features:
        return PrecisionChoice("float32", "the CPU has no native bf16 arithmetic")
    remembered = _remembered(_verdict_file(encoder, features))
    if remembered is not None:
        return remembered
    return PrecisionChoice("bfloat16", "if it passes the retrieval check, run at the first ragkit index")


def _dtype_of(encoder: Encoder) -> str:
    return str(encoder.describe()["dtype"])


def document_dtype(encoder) -> str:
    """What embeds documents with ``encoder``: its precision choice, or its weights' dtype."""
    choice = encoder.precision_choice
    return choice.dtype if choice is not None else _dtype_of(encoder)


def load_document_encoder(
    name: str,
    *,
    device: str | None = None,
    dtype: str | None = "auto",
    features: list[str] | None = None,
    candidate: Callable[[Encoder], Encoder | None] = bf16_engine,
    max_length: int | None = None,
) -> Encoder:
    """The encoder that embeds an index's documents, with ``precision_choice`` set.

    ``dtype`` ``auto`` chooses by :func:`choose`; anything else is ``Encoder.from_pretrained``'s
    ``dtype``, as asked. The fastest verified engine runs it (``backend="auto"``).
    """
    if dtype is not None and dtype not in DTYPES:
        raise InvalidInputError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    asked = None if dtype == "auto" else dtype
    encoder = Encoder.from_pretrained(name, device=device, dtype=asked, backend="auto", max_length=max_length)
    if dtype != "auto":
        encoder.precision_choice = PrecisionChoice(_dtype_of(encoder), "asked for")
        return encoder
    choice, chosen = choose(encoder, features=features, candidate=candidate)
    if chosen is not encoder:
        del encoder
    chosen.precision_choice = choice
    _say_once(choice)
    return chosen


@functools.cache
def _say_once(choice: PrecisionChoice) -> None:
    log.info("documents are embedded in %s", choice.summary())
