"""A backbone with its LoRA adapters merged in, cached as safetensors.

Merging through peft costs seconds on every load (import peft, wrap every projection,
merge, unwrap) and yields the same weights each time; a terminal user of ``ragkit ask``
should not pay that per question. The merged model is written once under
``$RAGKIT_HOME/merged/`` (its key: :mod:`ragkit.encoder.cache`), and built and verified like
the converted-model cache. The folder is ours, written by us, safetensors only; deleting it is always safe.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

from ragkit.encoder.adapters import Adapter, merge_adapters
from ragkit.encoder.backbone import Backbone, load_model
from ragkit.encoder.cache import engine_folder
from ragkit.encoder.cache import merged_folder as merged_cache_folder
from ragkit.encoder.converted import ensure_built, read_manifest
from ragkit.encoder.pruning import keep_bottom_layers
from ragkit.encoder.quiet import quiet_transformers
from ragkit.errors import CacheError

log = logging.getLogger("ragkit")


def merged_folder(backbone: Backbone, adapters: list[Adapter], layers: int | None = None) -> Path:
    return merged_cache_folder(backbone.name, backbone.identity, [a.content_hash() for a in adapters], layers)


def _verify_light(model, out: Path) -> dict:
    """Compare the transformers-free forward with ``model`` while both are at hand."""
    from ragkit.encoder.attention import set_bidirectional
    from ragkit.encoder.light import VERIFY_TOLERANCE, verify_against
    from ragkit.encoder.llama_layout import supports

    if not supports(json.loads((out / "config.json").read_text())):
        return {"verified": False, "reason": "not a plain Llama model"}
    set_bidirectional(model, True)
    try:
        difference = verify_against(model.eval(), out)
    except (KeyError, ValueError, RuntimeError) as exc:
        return {"verified": False, "reason": f"{type(exc).__name__}: {exc}"[:200]}
    return {"verified": difference <= VERIFY_TOLERANCE, "max_difference": difference}


def load_light_merged(backbone: Backbone, adapters: list[Adapter], layers: int | None = None):
    """The merged model through the light forward, if its cache says that was verified; else None."""
    folder = merged_folder(backbone, adapters, layers)
    manifest = read_manifest(folder)
    if manifest is None or not manifest.get("light", {}).get("verified"):
        return None
    from ragkit.encoder.light import load_light_model
    from ragkit.encoder.numpy_engine import record_verdict

    try:
        model = load_light_model(folder)
    except (OSError, ValueError, KeyError) as exc:
        log.info("light loading of %s failed (%s); using transformers", folder, exc)
        return None
    record_verdict(folder, model)  # lets later searches skip torch (numpy_engine.py)
    return model


def load_merged(
    backbone: Backbone,
    adapters: list[Adapter],
    *,
    layers: int | None = None,
    attn_implementation: str | None = None,
):
    """The backbone with ``adapters`` merged in order and pruned to ``layers``: from the
    cache, or merged and cached."""

    def merged():
        model = load_model(backbone.folder, attn_implementation=attn_implementation)
        return keep_bottom_layers(merge_adapters(model, adapters), layers)

    if not adapters:
        return merged()
    folder = merged_folder(backbone, adapters, layers)
    if read_manifest(folder) is not None:
        return load_model(folder, attn_implementation=attn_implementation)
    built = {}

    def build(out: Path) -> dict:
        model = merged()
        with quiet_transformers():
            model.save_pretrained(out, safe_serialization=True)
        built["model"] = model
        return {
            "backbone": backbone.name,
            "adapters": [a.name for a in adapters],
            "layers": layers,
            "light": _verify_light(model, out),
        }

    try:
        ensure_built(folder, build, label=f"{backbone.name} + {len(adapters)} adapters")
    except (CacheError, OSError) as exc:
        # A full disk or read-only home costs speed, never a result.
        log.warning("could not cache the merged model (%s); merging in memory", exc)
        if "model" not in built:
            built["model"] = merged()
    if "model" in built:
        return built["model"]
    return load_model(folder, attn_implementation=attn_implementation)  # another process built it


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def _probe_token_rows(backbone: Backbone) -> list[list[int]] | None:
    """The probe passages as the backbone's tokenizer cuts them; None without a readable
    ``tokenizer.json`` (the engine's bf16 check then uses its random-id probe)."""
    from tokenizers import Tokenizer

    from ragkit.encoder.probe_texts import probe_texts

    path = backbone.folder / "tokenizer.json"
    try:
        tokenizer = Tokenizer.from_file(str(path))
        return [encoding.ids for encoding in tokenizer.encode_batch(list(probe_texts()[0]))]
    except Exception:  # any unreadable tokenizer: the engine keeps the random-id probe
        return None


def load_engine_merged(
    backbone: Backbone, adapters: list[Adapter], layers: int | None = None, precision: str = "f32"
):
    """The merged model run by the OpenVINO engine (converted and verified once), computing in
    ``precision`` ("f32" or "bf16"); None, said once, when it cannot be used here (not
    installed, no verified light cache, a failed check)."""
    import ragkit.encoder.openvino_engine as engine

    if not engine.installed():
        _warn_once("OpenVINO is not installed (pip install 'ragkit[openvino]'); encoding with torch")
        return None
    merged = merged_folder(backbone, adapters, layers)
    manifest = read_manifest(merged)
    if manifest is None or not manifest.get("light", {}).get("verified"):
        return None

    def build(out: Path) -> dict:
        from ragkit.encoder.light import load_light_model

        light = load_light_model(merged)
        built = engine.build(light, out, _probe_token_rows(backbone))
        return {**built, "parameters": sum(p.numel() for p in light.parameters())}

    folder = engine_folder(engine.artefact_name(), merged.name)
    try:
        _, info = ensure_built(folder, build, label=f"the OpenVINO engine of {backbone.name}")
        if not info.get("verified"):
            cosine = info.get("min_cosine")
            _warn_once(f"the OpenVINO engine disagrees with torch (min cosine {cosine}); encoding with torch")
            return None
        config = json.loads((merged / "config.json").read_text())
        vocab, parameters = int(config["vocab_size"]), int(info["parameters"])
        return engine.load(folder, SimpleNamespace(**config), vocab, parameters, precision)
    except (CacheError, OSError, RuntimeError, ValueError, KeyError) as exc:
        _warn_once(f"the OpenVINO engine cannot run here ({exc}); encoding with torch")
        return None
