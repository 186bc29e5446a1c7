"""What a run starts from (a backbone, or a saved encoder whose adapters stay underneath), its
data, read and checked before any model loads, and the settings that identify the run."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from ragkit.encoder.adapters import Adapter
from ragkit.encoder.backbone import backbone_layers
from ragkit.encoder.pruning import check_layers
from ragkit.encoder.resolve import resolve_encoder
from ragkit.errors import InvalidInputError
from ragkit.hashing import canonical_json_hash
from ragkit.trainer.card import stage_history
from ragkit.trainer.corpus import Corpus, corpus_pairs, load_corpus
from ragkit.trainer.negatives import mine_negatives
from ragkit.trainer.options import TrainOptions
from ragkit.trainer.pairs import PairSet, read_pairs
from ragkit.trainer.precision import Precision
from ragkit.trainer.recipe import STAGES

log = logging.getLogger("ragkit")


@dataclass
class Start:
    """What training starts from: a backbone, plus the adapters of an encoder trained before."""

    backbone: object
    adapters: list[Adapter]
    instructions: dict[str, str]
    encoder: str | None = None
    """The saved encoder the adapters come from (None: a bare backbone)."""
    history: dict = field(default_factory=dict)
    """Its own training record (stages, recipe), for the model card."""
    layers: int | None = None
    """The saved encoder's own pruning (None: every layer of the backbone)."""


def resolve_start(spec: str) -> Start:
    """A backbone name, or a saved encoder (``default`` too) whose adapters stay underneath."""
    resolved = resolve_encoder(spec)
    saved, config = resolved.saved, resolved.config
    if saved is None:
        return Start(resolved.backbone, [], {})
    history = {}
    for name, key in (("stages.json", "stages"), ("training.json", "training")):
        try:
            history[key] = json.loads((saved / name).read_text())
        except (OSError, ValueError):
            history[key] = {}
    return Start(
        resolved.backbone, resolved.adapters, dict(config.instructions), spec, history, config.layers
    )


def trained_layers(options: TrainOptions, start: Start) -> int | None:
    """The layer count of the trained encoder: pruning only ever removes layers."""
    available = start.layers or backbone_layers(start.backbone)
    check_layers(options.layers, available)
    return options.layers if options.layers is not None else start.layers


@dataclass
class TrainingData:
    """The passages of the unsupervised stages and the pairs of the supervised one."""

    corpus: Corpus | None
    pairs: PairSet | None
    teacher: object = None
    _pairs_hash: str | None = field(default=None, init=False, repr=False)

    def pairs_hash(self) -> str:
        """The pairs' content hash, computed once: it takes seconds for a few hundred thousand
        pairs, and both the run record and the teacher's cache key on it."""
        if self._pairs_hash is None:
            rows = [list(map(str, vars(p).values())) for p in self.pairs.pairs]
            self._pairs_hash = canonical_json_hash(rows)
        return self._pairs_hash

    def for_stage(self, stage: str):
        return self.pairs if stage == "supervised" else self.corpus.passages


def load_data(options: TrainOptions) -> TrainingData:
    """Read and check all training data before any model loads, so bad input fails fast."""
    if options.chunk_size is not None and options.chunk_size < 1:
        raise InvalidInputError(f"--chunk-size must be at least 1, got {options.chunk_size}")
    _check_miner(options)
    unsupervised = any(s != "supervised" for s in options.stages)
    needed = unsupervised or not options.pairs
    corpus = load_corpus(options.corpus, leave_out_eval=not options.use_eval_sections) if needed else None
    pairs = teacher = None
    if "supervised" in options.stages:
        pairs = read_pairs(options.pairs) if options.pairs else corpus_pairs(corpus)
        teacher = _load_teacher(options)  # a bad --teacher fails before minutes of mining
        by_teacher = options.negatives_from == "teacher"  # _check_miner: with mining on
        if options.mine_negatives and not by_teacher:
            pairs = mine_negatives(pairs)
        data = TrainingData(corpus, pairs)
        if teacher is not None:
            from ragkit.trainer.teacher import open_teacher

            # Keyed on the pairs before teacher mining, which then reuses the vectors it caches.
            data.teacher = open_teacher(options.teacher, data.pairs_hash(), encoder=teacher)
        if by_teacher:
            data = TrainingData(corpus, _mined_by_teacher(pairs, options, data.teacher), data.teacher)
        log.info("supervised stage on %s", data.pairs.describe())
        return data
    return TrainingData(corpus, pairs)


def _check_miner(options: TrainOptions) -> None:
    if options.negatives_from not in ("bm25", "teacher"):
        raise InvalidInputError(f"--negatives-from must be bm25 or teacher, got {options.negatives_from!r}")
    if options.negatives_from == "teacher" and not options.teacher:
        raise InvalidInputError("--negatives-from teacher needs a --teacher")
    if options.negatives_from == "teacher" and not options.mine_negatives:
        raise InvalidInputError("--negatives-from teacher mines negatives; drop --no-mine-negatives")


def _mined_by_teacher(pairs: PairSet, options: TrainOptions, teacher) -> PairSet:
    """The teacher's hard negatives for the rows the supervised stage will draw."""
    from ragkit.trainer.display import MiningDisplay
    from ragkit.trainer.teacher_negatives import drawn_rows, mine_with_teacher

    settings = options.recipe.supervised
    rows = drawn_rows(
        pairs,
        batch_size=settings.batch_size,
        seed=options.seed + STAGES.index("supervised"),
        mixture=options.mixture,
        steps=settings.steps,
    )
    with MiningDisplay(options.show_progress) as display:
        return mine_with_teacher(pairs, teacher, rows, seed=options.seed, on_progress=display.advance)


def _load_teacher(options: TrainOptions):
    if not options.teacher:
        return None
    from ragkit.trainer.teacher import load_teacher_encoder

    return load_teacher_encoder(options.teacher, device=options.device)


def run_settings(options: TrainOptions, start: Start, data: TrainingData, precision: Precision) -> dict:
    layers = trained_layers(options, start)
    settings = {
        "backbone": start.backbone.name,
        "backbone_identity": start.backbone.identity,
        "base_adapters": [a.content_hash() for a in start.adapters],
        "base": {
            "encoder": start.encoder,
            "adapters": [a.name for a in start.adapters],
            "history": stage_history(start.history.get("stages", {}), start.history.get("training", {})),
        }
        if start.adapters
        else None,
        "stages": list(options.stages),
        "layers": layers,
        "model_layers": layers if layers is not None else backbone_layers(start.backbone),
        "recipe": options.recipe.to_dict(),
        "seed": options.seed,
        "precision": precision.name,
        "chunk_size": options.chunk_size,
        "compile": options.compile,
    }
    if data.corpus is not None:
        settings |= {
            "corpus": data.corpus.source,
            "corpus_passages": len(data.corpus.passages),
            "corpus_hash": canonical_json_hash(data.corpus.passages),
        }
    if data.pairs is not None:
        settings |= {
            "pairs": data.pairs.sources or ["(pairs from the corpus)"],
            "pairs_rows": len(data.pairs.pairs),
            "pairs_hash": data.pairs_hash(),
            "mixture": options.mixture,
            "teacher": data.teacher.identity if data.teacher is not None else None,
            "teacher_source": options.teacher,
            "teacher_filter": bool(data.teacher is not None and options.teacher_filter),
            # None for BM25, as runs recorded before the teacher could mine: they still resume.
            "negatives_from": "teacher" if options.negatives_from == "teacher" else None,
            "distill_weight": options.distill_weight if data.teacher is not None else 0.0,
        }
        if data.teacher is not None and options.correlation_weight:
            settings["correlation_weight"] = options.correlation_weight
    return settings
