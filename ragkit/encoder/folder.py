"""The saved encoder folder: the one place that knows its layout, for readers and writers.

An encoder folder holds ``ragkit.json`` (:class:`~ragkit.encoder.config.EncoderConfig`),
``tokenizer/`` and ``adapters/<nn>-<stage>/`` (peft LoRA adapters). ``Encoder.save`` writes
one whole; the trainer writes one piece by piece (an adapter per finished stage, the
tokenizer and config at the end), and ``ragkit.json`` always comes last, so its presence
means the folder is complete.
"""

from __future__ import annotations

import re
from pathlib import Path

from ragkit.atomic import atomic_folder, write_text
from ragkit.encoder.adapters import ADAPTER_WEIGHTS, Adapter, load_adapter
from ragkit.encoder.config import CONFIG_NAME, EncoderConfig
from ragkit.errors import EncoderFormatError

ADAPTERS_DIR = "adapters"
TOKENIZER_DIR = "tokenizer"
_DTYPES = ("float32", "float16", "bfloat16")
_POSITION = re.compile(r"^\d{2}-")


def is_encoder_folder(path: Path) -> bool:
    """True when ``path`` is a complete saved encoder."""
    return (path / CONFIG_NAME).is_file()


def read_config(folder: Path) -> EncoderConfig:
    return EncoderConfig.load(folder)


def tokenizer_folder(folder: Path) -> Path:
    return folder / TOKENIZER_DIR


def adapter_folder(folder: Path, name: str) -> Path:
    return folder / ADAPTERS_DIR / name


def adapter_name(position: int, stage: str) -> str:
    """Adapters are named by their place in the stack, so a folder listing shows the order
    (a name that already carries a position, as a loaded adapter does, gets the new one)."""
    return f"{position:02d}-{_POSITION.sub('', stage)}"


def has_adapter(folder: Path, name: str) -> bool:
    return (adapter_folder(folder, name) / ADAPTER_WEIGHTS).is_file()


def has_adapters(folder: Path) -> bool:
    return (folder / ADAPTERS_DIR).is_dir()


def read_adapters(folder: Path, config: EncoderConfig) -> list[Adapter]:
    """The adapters ``config`` lists, in order."""
    return [load_adapter(adapter_folder(folder, name)) for name in config.adapters]


def write_adapter(folder: Path, name: str, adapter: Adapter, *, dtype: str = "float32") -> Path:
    """Write one adapter into ``folder`` atomically, its tensors stored as ``dtype``."""
    import torch

    if dtype not in _DTYPES:
        raise EncoderFormatError(f"adapter dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    cast = getattr(torch, dtype)
    stored = Adapter(adapter.name, adapter.config, {k: v.to(cast) for k, v in adapter.tensors.items()})
    target = adapter_folder(folder, name)
    with atomic_folder(target) as tmp:
        stored.save(tmp)
    return target


def write_tokenizer(folder: Path, tokenizer) -> None:
    tokenizer.save_pretrained(tokenizer_folder(folder))


def write_config(folder: Path, config: EncoderConfig) -> None:
    """Write ``ragkit.json``: the last file of an encoder, marking it complete."""
    write_text(folder / CONFIG_NAME, config.to_json())


def save_encoder(target: Path, config: EncoderConfig, tokenizer, adapters: list[Adapter]) -> Path:
    """Write a whole encoder to ``target`` at once, replacing an older encoder there.

    Adapters are renamed by position; a folder that holds something other than an encoder
    is refused rather than overwritten.
    """
    if target.exists() and not is_encoder_folder(target) and any(target.iterdir()):
        raise EncoderFormatError(f"{target} exists and is not a ragkit encoder; refusing to overwrite it")
    with atomic_folder(target) as tmp:
        write_tokenizer(tmp, tokenizer)
        names = []
        for position, adapter in enumerate(adapters):
            names.append(adapter_name(position, adapter.name))
            adapter.save(adapter_folder(tmp, names[-1]))
        write_config(tmp, EncoderConfig(**{**config.__dict__, "adapters": names}))
    return target
