"""LLM2Vec's published encoders: a chain of peft LoRA adapters that ends in a base model.

McGill-NLP publishes each encoder as Hub repositories that point at one another:

- the last one (``...-mntp-supervised`` or ``...-mntp-unsup-simcse``) holds a LoRA adapter
  whose ``adapter_config.json`` names the ``-mntp`` repository as its base, and usually
  ``llm2vec_config.json`` (pooling, lengths);
- the ``-mntp`` one holds the MNTP adapter and a ``config.json`` naming the base model
  (its weights are not included);
- the base model itself.

:func:`read_chain` follows the links from the last adapter to the base, from local folders
or the Hub; a local copy may name its links by Hub id when the linked folders sit beside it
under the id's last part. The adapters are merged in order, MNTP first, exactly as ragkit
merges its own stages, so the chain loads like a saved ragkit encoder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ragkit.encoder.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS, Adapter, load_adapter
from ragkit.encoder.backbone import HUB_ID, Backbone, resolve_backbone
from ragkit.encoder.config import CONFIG_NAME
from ragkit.errors import EncoderFormatError, ModelNotFoundError

LLM2VEC_CONFIG = "llm2vec_config.json"
_MAX_LINKS = 6
_POOLING = {
    "mean": "mean",
    "weighted_mean": "weighted_mean",
    "eos_token": "last_token",
    "last_token": "last_token",
    "bos_token": "first_token",
}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


@dataclass
class Chain:
    """A followed chain: the adapters in merge order, the base, and LLM2Vec's settings."""

    adapters: list[Adapter]
    folders: list[Path]
    backbone: Backbone
    settings: dict

    @property
    def tokenizer_folder(self) -> Path:
        """The nearest folder to the last adapter that holds a tokenizer, else the base."""
        for folder in reversed(self.folders):
            if any((folder / name).is_file() for name in _TOKENIZER_FILES):
                return folder
        return self.backbone.folder

    def encoder_settings(self) -> dict:
        """``EncoderConfig`` fields from ``llm2vec_config.json`` (mean pooling when absent)."""
        raw = self.settings
        pooling = raw.get("pooling_mode", "mean")
        if pooling not in _POOLING:
            raise EncoderFormatError(
                f"{LLM2VEC_CONFIG} asks for pooling '{pooling}', which ragkit does not have "
                f"({', '.join(_POOLING)})"
            )
        out: dict = {"pooling": _POOLING[pooling], "bidirectional": True}
        for ours, theirs in (("max_length", "max_length"), ("document_max_length", "doc_max_length")):
            if isinstance(raw.get(theirs), int) and raw[theirs] > 0:
                out[ours] = raw[theirs]
        return out


def is_adapter_folder(path: Path) -> bool:
    """A peft adapter that is not inside a ragkit encoder."""
    return (path / ADAPTER_CONFIG).is_file() and not (path / CONFIG_NAME).is_file()


def _fetch_adapter(hub_id: str) -> Path | None:
    """The local snapshot of a Hub repository when it is an adapter; None when it is not."""
    try:
        from huggingface_hub import hf_hub_download, snapshot_download
        from huggingface_hub.errors import EntryNotFoundError
    except ImportError:
        return None
    try:
        hf_hub_download(hub_id, ADAPTER_CONFIG)
    except EntryNotFoundError:
        return None
    except Exception:  # offline, unknown or gated: the backbone loader says which, clearly
        return None
    patterns = ["*.json", ADAPTER_WEIGHTS, "tokenizer*", "*.model"]
    return Path(snapshot_download(hub_id, allow_patterns=patterns))


def _locate(link: str, named_by: Path) -> Path | str:
    """A link as a local folder when there is one (a path, one relative to the folder that
    names it, or a sibling named like the id's last part), else the link itself, for the Hub."""
    path = Path(link).expanduser()
    if path.is_dir():
        return path
    if not path.is_absolute() and (named_by / path).is_dir():
        return named_by / path
    if HUB_ID.match(link):
        sibling = named_by.parent / link.split("/")[-1]
        if sibling.is_dir():
            return sibling
    return link


def _link_of(folder: Path) -> str:
    """What an adapter folder names as its base: peft's field, else ``config.json``'s."""
    config = _read_json(folder / ADAPTER_CONFIG)
    link = config.get("base_model_name_or_path")
    if not link and (folder / "config.json").is_file():
        link = _read_json(folder / "config.json").get("_name_or_path")
    if not isinstance(link, str) or not link.strip():
        raise ModelNotFoundError(
            f"the adapter at {folder} does not say which model it adapts (no base_model_name_or_path "
            "in adapter_config.json, no _name_or_path in config.json)"
        )
    return link


def _read_json(path: Path) -> dict:
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EncoderFormatError(f"cannot read {path}: {exc}") from None
    if not isinstance(body, dict):
        raise EncoderFormatError(f"{path} is not a JSON object")
    return body


def adapter_start(name_or_path: str) -> Path | None:
    """The folder of the last adapter when the name means an LLM2Vec chain, else None."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path if is_adapter_folder(path) else None
    if HUB_ID.match(name_or_path):
        return _fetch_adapter(name_or_path)
    return None


def read_chain(start: Path, name: str | None = None) -> Chain:
    """Follow the links from the adapter at ``start`` down to the base model.

    ``name`` is what the user called the start (a Hub id names a snapshot folder whose own
    name is a commit hash); each adapter is named after the last part of its link.
    """
    folders, names = [start], [(name or start.name).rstrip("/").split("/")[-1]]
    while True:
        link = _link_of(folders[-1])
        target = _locate(link, folders[-1])
        if isinstance(target, str) and HUB_ID.match(target):
            target = _fetch_adapter(target) or target
        if isinstance(target, Path) and is_adapter_folder(target):
            if target in folders or len(folders) >= _MAX_LINKS:
                raise EncoderFormatError(f"the adapters starting at {start} link in a loop")
            folders.append(target)
            names.append(link.rstrip("/").split("/")[-1])
            continue
        try:
            backbone = resolve_backbone(str(target))
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(
                f"the LLM2Vec encoder at {start} needs '{link}' (named by {folders[-1]}), which "
                f"could not be found: {exc}"
            ) from None
        break
    folders.reverse()  # merge order: the adapter nearest the base first
    names.reverse()
    adapters = []
    for folder, adapter_name in zip(folders, names, strict=True):
        if not (folder / ADAPTER_WEIGHTS).is_file():
            raise ModelNotFoundError(
                f"the adapter at {folder} has no {ADAPTER_WEIGHTS} (only safetensors is read)"
            )
        adapter = load_adapter(folder)
        adapters.append(Adapter(adapter_name, adapter.config, adapter.tensors))
    settings = _read_json(start / LLM2VEC_CONFIG) if (start / LLM2VEC_CONFIG).is_file() else {}
    return Chain(adapters, folders, backbone, settings)
