"""A backbone with its LoRA adapters merged in, cached as safetensors.

Merging through peft costs seconds on every load (import peft, wrap every projection,
merge, unwrap) and yields the same weights each time; a terminal user of ``ragkit ask``
should not pay that per question. The merged model is written once under
``$RAGKIT_HOME/merged/``, keyed by the backbone's identity and the adapters' content hashes
(new adapters never meet stale weights), and built and verified like the converted-model
cache. The folder is ours, written by us, safetensors only; deleting it is always safe.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ragkit.encoder.adapters import Adapter, merge_adapters
from ragkit.encoder.backbone import Backbone, load_model
from ragkit.encoder.model_cache import ensure_built, read_manifest
from ragkit.errors import CacheError
from ragkit.hashing import canonical_json_hash
from ragkit.home import ragkit_home

log = logging.getLogger("ragkit")
MERGED_FORMAT = 1


def merged_folder(backbone: Backbone, adapters: list[Adapter]) -> Path:
    key = canonical_json_hash(
        {
            "format": MERGED_FORMAT,
            "backbone": backbone.identity,
            "adapters": [a.content_hash() for a in adapters],
        }
    )
    return ragkit_home() / "merged" / f"{backbone.name.replace('/', '--')[-40:]}-{key[:16]}"


def load_merged(backbone: Backbone, adapters: list[Adapter], *, attn_implementation: str | None = None):
    """The backbone with ``adapters`` merged in order: from the cache, or merged and cached."""
    if not adapters:
        return load_model(backbone.folder, attn_implementation=attn_implementation)
    folder = merged_folder(backbone, adapters)
    if read_manifest(folder) is not None:
        return load_model(folder, attn_implementation=attn_implementation)
    built = {}

    def build(out: Path) -> dict:
        model = merge_adapters(load_model(backbone.folder, attn_implementation=attn_implementation), adapters)
        model.save_pretrained(out, safe_serialization=True)
        built["model"] = model
        return {"backbone": backbone.name, "adapters": [a.name for a in adapters]}

    try:
        ensure_built(folder, build, label=f"{backbone.name} + {len(adapters)} adapters")
    except (CacheError, OSError) as exc:
        # A full disk or read-only home costs speed, never a result.
        log.warning("could not cache the merged model (%s); merging in memory", exc)
        if "model" not in built:
            built["model"] = merge_adapters(
                load_model(backbone.folder, attn_implementation=attn_implementation), adapters
            )
    if "model" in built:
        return built["model"]
    return load_model(folder, attn_implementation=attn_implementation)  # another process built it
