"""Resolve a backbone name, folder or hub id to local safetensors weights, and load them.

Every source ends as a local folder with ``config.json``, ``*.safetensors`` and a tokenizer,
plus an *identity*: a content hash that changes whenever the weights do, so fingerprints
built on it tell encoders apart. Only safetensors are ever loaded (no pickle).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ragkit.encoder.converted import ensure_converted
from ragkit.encoder.packaged import PACKAGED_MODELS
from ragkit.encoder.quiet import quiet_transformers
from ragkit.errors import ModelNotFoundError
from ragkit.hashing import canonical_json_hash, sampled_file_hash

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.tiktoken", "*.txt"]


@dataclass(frozen=True)
class Backbone:
    """A resolved backbone: what the user called it, where it is, what it contains."""

    name: str
    folder: Path
    identity: str
    source: str  # "packaged", "folder" or "hub"


def _unknown(name: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"unknown backbone '{name}': use {', '.join(PACKAGED_MODELS)}, a Hugging Face id "
        "(org/name), a local model folder, or a saved ragkit encoder folder"
    )


def folder_identity(folder: Path) -> str:
    """Hash of the config and sampled hashes of every weight file."""
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise ModelNotFoundError(
            f"{folder} has no *.safetensors weights; ragkit loads safetensors only "
            "(convert with `model.save_pretrained(dir, safe_serialization=True)`)"
        )
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"{folder}/config.json is unreadable: {exc}") from None
    return canonical_json_hash({"config": config, "weights": {p.name: sampled_file_hash(p) for p in weights}})


def _download(hub_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        with quiet_transformers():
            return Path(snapshot_download(hub_id, allow_patterns=_HUB_PATTERNS))
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelNotFoundError(
            f"could not fetch '{hub_id}' from the Hugging Face Hub (offline, an unknown id, or a "
            "gated model: accept its licence on the Hub and set HF_TOKEN): "
            f"{type(exc).__name__}: {reason[:200]}"
        ) from None


def resolve_backbone(name_or_path: str) -> Backbone:
    """Turn a user's backbone spec into a local folder plus a content identity."""
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise ModelNotFoundError("backbone name must be a non-empty string")
    if name_or_path in PACKAGED_MODELS:
        folder, manifest = ensure_converted(PACKAGED_MODELS[name_or_path])
        identity = canonical_json_hash({"packaged": name_or_path, "gguf": manifest["source_sha256"]})
        return Backbone(name_or_path, folder, identity, "packaged")
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"'{path}' is neither a model folder (config.json) nor a ragkit encoder folder"
            )
        return Backbone(str(path.resolve()), path.resolve(), folder_identity(path), "folder")
    if HUB_ID.match(name_or_path):
        folder = _download(name_or_path)
        return Backbone(name_or_path, folder, folder_identity(folder), "hub")
    raise _unknown(name_or_path)


def backbone_layers(backbone: Backbone) -> int:
    """How many decoder layers the backbone has, from its config (a nested text config too)."""
    try:
        config = json.loads((backbone.folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"{backbone.folder}/config.json is unreadable: {exc}") from None
    count = config.get("num_hidden_layers") or (config.get("text_config") or {}).get("num_hidden_layers")
    if not isinstance(count, int):
        raise ModelNotFoundError(f"{backbone.folder}/config.json does not say how many layers it has")
    return count


def load_model(folder: Path, *, attn_implementation: str | None = None, causal_lm: bool = False):
    """Load fp32 weights from a resolved folder (safetensors only).

    ``causal_lm=True`` keeps the LM head, which MNTP training needs; encoding does not.
    """
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    cls = AutoModelForCausalLM if causal_lm else AutoModel
    kwargs = {"dtype": torch.float32, "use_safetensors": True}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        with quiet_transformers():
            return cls.from_pretrained(folder, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelNotFoundError(f"cannot load a model from {folder}: {first[:300]}") from None


def load_tokenizer(folder: Path):
    """Load the tokenizer that belongs to a folder, with a readable error if it has none."""
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelNotFoundError(f"cannot load a tokenizer from {folder}: {first[:300]}") from None
