"""What a user's model name means: a saved encoder (backbone + adapters), an LLM2Vec adapter
chain, or a bare backbone.

``default`` is the encoder ragkit ships; a folder with ``ragkit.json`` is a saved encoder; a
peft adapter folder or Hub repository is an LLM2Vec encoder (:mod:`ragkit.encoder.llm2vec`);
anything else is a backbone (:func:`ragkit.encoder.backbone.resolve_backbone`). Loading the
encoder, the trainer and the CLI all resolve names here, so they agree on what a name means.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ragkit.encoder.adapters import Adapter
from ragkit.encoder.backbone import Backbone, resolve_backbone
from ragkit.encoder.config import EncoderConfig
from ragkit.encoder.folder import is_encoder_folder, read_adapters, read_config, tokenizer_folder
from ragkit.encoder.llm2vec import adapter_start, read_chain
from ragkit.encoder.packaged import DEFAULT_BACKBONE
from ragkit.errors import EncoderFormatError

DEFAULT_ENCODER_DIR = Path(__file__).resolve().parent.parent / "default_encoder"
"""The encoder ragkit ships: SmolLM2-135M + MNTP, SimCSE, seven supervised LoRAs (card in its README)."""


def resolve_name(name_or_path: str) -> str:
    """``"default"`` means the shipped trained encoder (the bare backbone if it is absent)."""
    if name_or_path != "default":
        return name_or_path
    return str(DEFAULT_ENCODER_DIR) if is_encoder_folder(DEFAULT_ENCODER_DIR) else DEFAULT_BACKBONE


def saved_encoder_folder(name_or_path: str) -> Path | None:
    """The folder of a saved encoder the name means, or None for a backbone."""
    saved = Path(resolve_name(name_or_path)).expanduser()
    return saved if is_encoder_folder(saved) else None


def backbone_of(name_or_path: str) -> str:
    """The backbone under an encoder name: what the paper's causal baseline is built from."""
    saved = saved_encoder_folder(name_or_path)
    if saved is not None:
        return read_config(saved).backbone
    start = adapter_start(name_or_path)
    return read_chain(start, name_or_path).backbone.name if start is not None else resolve_name(name_or_path)


@dataclass
class ResolvedEncoder:
    """Everything needed to load an encoder, found and checked before any weight is read."""

    config: EncoderConfig
    backbone: Backbone
    adapters: list[Adapter]
    tokenizer_folder: Path
    saved: Path | None
    """The saved encoder folder (None: a bare backbone)."""


def resolve_encoder(name_or_path: str) -> ResolvedEncoder:
    """A saved encoder with its adapters, an LLM2Vec adapter chain, or a bare backbone."""
    saved = saved_encoder_folder(name_or_path)
    start = adapter_start(name_or_path) if saved is None else None
    if start is not None:
        chain = read_chain(start, name_or_path)
        backbone = chain.backbone
        config = EncoderConfig(
            backbone=backbone.name, backbone_identity=backbone.identity, **chain.encoder_settings()
        )
        return ResolvedEncoder(config, backbone, chain.adapters, chain.tokenizer_folder, None)
    if saved is None:
        backbone = resolve_backbone(resolve_name(name_or_path))
        config = EncoderConfig(backbone=backbone.name, backbone_identity=backbone.identity)
        return ResolvedEncoder(config, backbone, [], backbone.folder, None)
    config = read_config(saved)
    backbone = resolve_backbone(config.backbone)
    if backbone.identity != config.backbone_identity:
        raise EncoderFormatError(
            f"the backbone '{config.backbone}' now has different weights from those the "
            f"encoder at {saved} was trained on"
        )
    return ResolvedEncoder(config, backbone, read_adapters(saved, config), tokenizer_folder(saved), saved)
