"""A transformers fast tokenizer's encoding, from the ``tokenizers`` library alone.

Part of the light query-time load (:mod:`ragkit.encoder.light`): importing transformers for
its tokenizer wrapper costs seconds; the ``tokenizers`` backend it wraps loads in
milliseconds and gives the same ids.
"""

from __future__ import annotations

import json
from pathlib import Path


class LightTokenizer:
    """The part of a transformers fast tokenizer that encoding uses, from ``tokenizers`` alone.

    The ``tokenizers`` backend is what a transformers fast tokenizer runs anyway; loading it
    directly skips importing transformers. Pad and EOS tokens come from the saved
    ``tokenizer_config.json``, as transformers reads them.
    """

    def __init__(self, folder: Path):
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        self.backend_tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.backend_tokenizer.no_padding()
        self.backend_tokenizer.no_truncation()
        settings = json.loads((folder / "tokenizer_config.json").read_text())
        self.padding_side = settings.get("padding_side", "right")
        self.pad_token_id = self._token_id(settings.get("pad_token"))
        self.eos_token_id = self._token_id(settings.get("eos_token"))

    def _token_id(self, token) -> int | None:
        if isinstance(token, dict):
            token = token.get("content")
        return None if token is None else self.backend_tokenizer.token_to_id(token)

    def save_pretrained(self, target: Path) -> None:
        """Copy the tokenizer files it was read from, as transformers would save them."""
        import shutil

        target = Path(target)
        target.mkdir(parents=True, exist_ok=True)
        for path in self.folder.iterdir():
            if path.is_file():
                shutil.copy2(path, target / path.name)

    def __len__(self) -> int:
        return self.backend_tokenizer.get_vocab_size(with_added_tokens=True)

    is_fast = True
    """Offsets come from the same ``tokenizers`` backend a transformers fast tokenizer wraps."""

    def __call__(
        self, texts, add_special_tokens: bool = True, return_offsets_mapping: bool = False, **_ignored
    ) -> dict:
        single = isinstance(texts, str)
        batch = self.backend_tokenizer.encode_batch(
            [texts] if single else list(texts), add_special_tokens=add_special_tokens
        )
        ids = [item.ids for item in batch]
        out = {"input_ids": ids[0] if single else ids}
        if return_offsets_mapping:
            offsets = [list(item.offsets) for item in batch]
            out["offset_mapping"] = offsets[0] if single else offsets
        return out


def light_tokenizer_if_possible(folder: Path) -> LightTokenizer | None:
    """A :class:`LightTokenizer` for a saved tokenizer folder, or None when it has no fast one."""
    if not (folder / "tokenizer.json").is_file() or not (folder / "tokenizer_config.json").is_file():
        return None
    try:
        return LightTokenizer(folder)
    except (OSError, ValueError, Exception):  # tokenizers raises its own Exception subclass
        return None
