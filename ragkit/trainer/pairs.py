"""Query-passage pairs for the supervised contrastive stage: reading and checking them.

A pairs file is JSON lines (plain or ``.gz``): ``query``, ``positive``, optional ``negative``
(a string or a list), ``instruction`` and ``group``. Each file is one *dataset*: batches are
drawn from one dataset at a time, as LLM2Vec does, so in-batch negatives are of the same
kind as the positive and the model cannot win by telling datasets apart.

Every row is checked before any model loads, so a typo costs milliseconds, not a model load.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ragkit.errors import InvalidInputError

MIN_DATASET_ROWS = 2
"""A contrastive batch needs at least one other row to serve as an in-batch negative."""


@dataclass(frozen=True)
class Pair:
    """One training example: the query, its passage, and passages that do not answer it."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()
    instruction: str | None = None
    group: str | None = None
    dataset: str = ""


@dataclass
class PairSet:
    """Pairs from one or more files, and where they came from."""

    pairs: list[Pair]
    sources: list[str] = field(default_factory=list)
    mined: int = 0

    @property
    def datasets(self) -> dict[str, list[int]]:
        """Row indices of each dataset, in file order."""
        out: dict[str, list[int]] = {}
        for i, pair in enumerate(self.pairs):
            out.setdefault(pair.dataset, []).append(i)
        return out

    def describe(self) -> str:
        sizes = ", ".join(f"{name} {len(rows):,}" for name, rows in self.datasets.items())
        return f"{len(self.pairs):,} pairs ({sizes})" + (
            f", {self.mined:,} hard negatives mined" if self.mined else ""
        )


def dataset_name(path: Path) -> str:
    """``qed.jsonl.gz`` → ``qed``."""
    name = path.name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return name or path.name


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            yield from enumerate(handle, start=1)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read pairs file {path}: {exc}") from None


def _text(row: dict, key: str, where: str, *, required: bool) -> str | None:
    value = row.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        state = "is missing" if value is None else "must be a non-empty string"
        raise InvalidInputError(f"{where}: '{key}' {state}")
    return value.strip()


def _instruction(row: dict, where: str) -> str | None:
    """The row's own query instruction: None uses the recipe's, "" means none (symmetric
    pairs, such as two sentences compared as they are)."""
    value = row.get("instruction")
    if value is None:
        return None
    if isinstance(value, str) and not value.strip():
        return ""
    return _text(row, "instruction", where, required=False)


def _negatives(row: dict, where: str) -> tuple[str, ...]:
    value = row.get("negative")
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        raise InvalidInputError(f"{where}: 'negative' must be a non-empty string or a list of them")
    return tuple(v.strip() for v in values)


def parse_pair(line: str, where: str, dataset: str) -> Pair | None:
    """One JSON line → a :class:`Pair` (``None`` for a blank line); raises with ``where``."""
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise InvalidInputError(f"{where}: not a JSON line ({exc.msg})") from None
    if not isinstance(row, dict):
        raise InvalidInputError(f"{where}: expected a JSON object with 'query' and 'positive'")
    query = _text(row, "query", where, required=True)
    positive = _text(row, "positive", where, required=True)
    if query == positive:
        raise InvalidInputError(f"{where}: 'positive' equals 'query'; the pair teaches nothing")
    negatives = tuple(n for n in _negatives(row, where) if n != positive)
    group = row.get("group")
    return Pair(
        query=query,
        positive=positive,
        negatives=negatives,
        instruction=_instruction(row, where),
        group=None if group is None else str(group),
        dataset=dataset,
    )


def read_pairs(paths: list[str | Path]) -> PairSet:
    """Read and check every pairs file; one clear error for the first bad row."""
    if not paths:
        raise InvalidInputError("no --pairs file given")
    pairs: list[Pair] = []
    sources = []
    for spec in paths:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise InvalidInputError(f"pairs file {path} does not exist")
        dataset = dataset_name(path)
        if any(p.dataset == dataset for p in pairs):
            dataset = f"{dataset}#{len(sources)}"
        before = len(pairs)
        for number, line in _lines(path):
            pair = parse_pair(line, f"{path}:{number}", dataset)
            if pair is not None:
                pairs.append(pair)
        if len(pairs) - before < MIN_DATASET_ROWS:
            raise InvalidInputError(
                f"pairs file {path} holds {len(pairs) - before} valid rows; a contrastive batch needs "
                f"at least {MIN_DATASET_ROWS}"
            )
        sources.append(str(path))
    return PairSet(pairs, sources)


def parse_mixture(spec: str | None) -> str | dict[str, float]:
    """``"sqrt"``, ``"size"`` or ``"squad=3,qed=1"`` → the mixture :class:`PairBatches` takes."""
    spec = (spec or "sqrt").strip()
    if spec in MIXTURES:
        return spec
    weights: dict[str, float] = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not sep or not name.strip() or not weight > 0:
            raise InvalidInputError(
                f"--mixture {spec!r}: use sqrt, size, or dataset=weight pairs such as squad=3,qed=1"
            )
        weights[name.strip()] = weight
    return weights


MIXTURES = ("sqrt", "size")


def mixture_weights(sizes: dict[str, int], mixture: str | dict[str, float]) -> dict[str, float]:
    """Each dataset's share of the batches, summing to 1.

    ``sqrt`` (the default) weighs a dataset by the square root of its size, so large sets
    lead without drowning the small ones, and no single templated set dominates; ``size``
    is proportional sampling; a dict names each dataset's weight (every dataset must be named).
    """
    if mixture == "size":
        raw = {name: float(n) for name, n in sizes.items()}
    elif mixture == "sqrt":
        raw = {name: float(n) ** 0.5 for name, n in sizes.items()}
    else:
        unknown = sorted(set(mixture) - set(sizes))
        missing = sorted(set(sizes) - set(mixture))
        if unknown or missing:
            raise InvalidInputError(
                f"--mixture must name every dataset exactly ({', '.join(sizes)}); "
                + (f"unknown: {', '.join(unknown)}" if unknown else f"missing: {', '.join(missing)}")
            )
        raw = {name: float(mixture[name]) for name in sizes}
    total = sum(raw.values())
    return {name: value / total for name, value in raw.items()}


def distinct_positive_order(order: list[int], positives: list[str]) -> list[int]:
    """Reorder rows so that rows sharing a positive fall in different rounds.

    Round *k* holds every positive's *k*-th row (in ``order``); rounds follow each other, so
    consecutive rows, and hence a batch cut from them, repeat a positive only where two
    rounds meet. (Repeats that remain are masked in the loss.)
    """
    seen: dict[str, int] = {}
    rounds: list[list[int]] = []
    for row in order:
        k = seen.get(positives[row], 0)
        seen[positives[row]] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(row)
    return [row for block in rounds for row in block]


class PairBatches:
    """Which pairs make up each step's batch: one dataset per batch, by a stated mixture.

    Step *s* draws its dataset from the mixture with a generator seeded by (seed, s); the
    dataset's *k*-th draw takes the *k*-th batch of its seeded epoch permutations, ordered so
    a batch does not repeat a positive (SQuAD has about 4.7 questions per paragraph). A
    function of (seed, step) only, which keeps ``--resume`` exact.
    """

    BLOCK = 4096

    def __init__(
        self, pair_set: PairSet, batch_size: int, seed: int, mixture: str | dict[str, float] = "sqrt"
    ):
        import numpy as np

        self.batch_size, self.seed = batch_size, seed
        groups = pair_set.datasets
        self.names = list(groups)
        self.datasets = list(groups.values())
        self.positives = [p.positive for p in pair_set.pairs]
        self.weights = mixture_weights({n: len(r) for n, r in groups.items()}, mixture)
        self._p = np.array([self.weights[n] for n in self.names])
        self._blocks: dict[int, tuple[list[int], list[int]]] = {}
        self._epochs: dict[tuple[int, int], list[list[int]]] = {}

    def _block(self, block: int) -> tuple[list[int], list[int]]:
        """The dataset of each step in a block of steps, and how often each was drawn before."""
        import numpy as np

        if block not in self._blocks:
            previous = [0] * len(self.names) if block == 0 else self._counts_after(block - 1)
            rng = np.random.default_rng([self.seed, 1_000_003, block])
            choices = rng.choice(len(self.names), size=self.BLOCK, p=self._p).tolist()
            self._blocks = {k: v for k, v in self._blocks.items() if k >= block - 1}
            self._blocks[block] = (choices, previous)
        return self._blocks[block]

    def _counts_after(self, block: int) -> list[int]:
        choices, counts = self._block(block)
        counts = list(counts)
        for d in choices:
            counts[d] += 1
        return counts

    def _epoch(self, d: int, epoch: int) -> list[list[int]]:
        import numpy as np

        key = (d, epoch)
        if key not in self._epochs:
            rows = self.datasets[d]
            order = np.random.default_rng([self.seed, epoch, d]).permutation(len(rows)).tolist()
            order = distinct_positive_order([rows[j] for j in order], self.positives)
            size = min(self.batch_size, len(rows))
            batches = [order[start : start + size] for start in range(0, len(order) - size + 1, size)]
            self._epochs = {k: v for k, v in self._epochs.items() if k[0] != d}
            self._epochs[key] = batches
        return self._epochs[key]

    def rows(self, step: int) -> list[int]:
        block, offset = divmod(step, self.BLOCK)
        choices, counts = self._block(block)
        d = choices[offset]
        k = counts[d] + choices[:offset].count(d)
        per_epoch = len(self._epoch(d, 0))
        return self._epoch(d, k // per_epoch)[k % per_epoch]
