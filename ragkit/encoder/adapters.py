"""LoRA adapters as plain safetensors + JSON, merged into the backbone at load time.

In memory, keys are relative to the base model (``AutoModel``), e.g.
``layers.0.self_attn.q_proj.lora_A.weight``, so adapters trained on a causal-LM wrapper or
a bare model load the same way. On disk they carry peft's ``base_model.model.`` prefix, so
``PeftModel.from_pretrained(AutoModel..., folder)`` reads a ragkit adapter as it reads
llm2vec's; files written without the prefix still load. Adapters apply in order, each merged
before the next, which is exactly the paper's MNTP-then-SimCSE stacking.
"""

from __future__ import annotations

import functools
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

from ragkit.errors import EncoderFormatError
from ragkit.hashing import canonical_json_hash

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PEFT_PREFIX = "base_model.model."


@dataclass
class Adapter:
    """One LoRA adapter: its peft ``LoraConfig`` as a dict and its tensors."""

    name: str
    config: dict
    tensors: dict

    @functools.cached_property
    def _hash(self) -> str:
        arrays = {k: v.detach().float().contiguous().cpu().numpy() for k, v in self.tensors.items()}
        return content_digest(self.config, arrays)

    def content_hash(self) -> str:
        """SHA-256 of config and tensors (computed once: adapters are never edited in place)."""
        return self._hash

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        (folder / ADAPTER_CONFIG).write_text(json.dumps(self.config, indent=2, sort_keys=True))
        tensors = {_PEFT_PREFIX + k: v.detach().contiguous().cpu() for k, v in self.tensors.items()}
        save_file(tensors, str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt"})


def content_digest(config: dict, arrays: dict) -> str:
    """SHA-256 of an adapter's config and its tensors widened to float32, keys sorted."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256(canonical_json_hash(config).encode())
    for key in sorted(arrays):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(arrays[key], dtype=np.float32).tobytes())
    return digest.hexdigest()


def adapter_file_hash(folder: Path) -> str:
    """:meth:`Adapter.content_hash` of a saved adapter, computed without importing torch."""
    from ragkit.encoder.numpy_weights import read_float_tensors

    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text())
        tensors = read_float_tensors(folder / ADAPTER_WEIGHTS)
    except (OSError, ValueError) as exc:
        raise EncoderFormatError(f"cannot read adapter {folder}: {exc}") from None
    return content_digest(config, {k.removeprefix(_PEFT_PREFIX): v for k, v in tensors.items()})


def load_adapter(folder: Path) -> Adapter:
    """Read an adapter folder; refuses anything but JSON config and safetensors weights."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise EncoderFormatError(f"{folder} has no {ADAPTER_WEIGHTS} (only safetensors is loaded)")
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text())
        tensors = load_file(str(weights))
    except (OSError, ValueError, SafetensorError) as exc:
        raise EncoderFormatError(f"cannot read adapter {folder}: {exc}") from None
    return Adapter(folder.name, config, {k.removeprefix(_PEFT_PREFIX): v for k, v in tensors.items()})


def adapter_from_peft(name: str, peft_model) -> Adapter:
    """Capture a trained peft model's LoRA weights in ragkit's key convention."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(peft_model)
    config = peft_model.peft_config["default"].to_dict()
    config = json.loads(json.dumps(config, default=lambda v: sorted(v) if isinstance(v, set) else str(v)))
    config["base_model_name_or_path"] = None  # a local path would leak into shared encoders
    # A causal-LM wrapper holds the base model under ``base_model_prefix`` ("model");
    # drop that level so keys match the bare backbone the encoder loads.
    inner = peft_model.get_base_model()
    nested = getattr(inner, "base_model_prefix", "")
    prefix = _PEFT_PREFIX + (f"{nested}." if nested and hasattr(inner, nested) else "")
    tensors = {k.removeprefix(prefix): v.detach().cpu().clone() for k, v in state.items()}
    return Adapter(name, config, tensors)


def merge_adapters(model, adapters: list[Adapter]):
    """Apply each adapter to ``model`` and merge it into the base weights, in order."""
    from dataclasses import fields

    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    known = {f.name for f in fields(LoraConfig)}
    for adapter in adapters:
        # The base model's path is where training happened to run: metadata, not a setting.
        skip = {"peft_type", "base_model_name_or_path"}
        settings = {k: v for k, v in adapter.config.items() if k in known and k not in skip}
        settings["task_type"] = None
        settings["inference_mode"] = True
        try:
            with warnings.catch_warnings():
                # peft asks transformers for a deprecated attribute; nothing for users to act on.
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
                peft_model = get_peft_model(model, LoraConfig(**settings))
            state = {_PEFT_PREFIX + k: v for k, v in adapter.tensors.items()}
            result = set_peft_model_state_dict(peft_model, state)
        except (TypeError, ValueError, KeyError, RuntimeError) as exc:
            raise EncoderFormatError(f"adapter '{adapter.name}' does not fit this backbone: {exc}") from None
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        if unexpected:
            raise EncoderFormatError(
                f"adapter '{adapter.name}' has {len(unexpected)} weights this backbone lacks, "
                f"e.g. {unexpected[0]}"
            )
        model = peft_model.merge_and_unload()
    return model
