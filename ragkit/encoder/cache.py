"""Every cache ragkit keeps, where it lives and what its key is made of.

All of it sits under one folder, ``$RAGKIT_HOME`` (default ``~/.cache/ragkit``), so CI, tests
and shared machines keep caches apart with one variable, and deleting any of it is always
safe: each entry is rebuilt from its sources on the next use.

======================  ========================================  =============================
folder                  key                                       holds
======================  ========================================  =============================
``models/``             packaged model name + its package         a packaged GGUF backbone
                        version                                   converted to safetensors
``merged/``             backbone content identity + each          a backbone with an encoder's
                        adapter's content hash (in order) +       LoRA adapters merged in (and
                        kept layers, when pruned                  pruned), as safetensors
``engines/``            engine name, version and artefact         the merged model converted
                        format + the merged folder's name (so:    for a CPU engine (OpenVINO),
                        its key above)                            checked against torch, and
                                                                  the engine's compiled form
``vectors/``            encoder fingerprint, with engine, device  evaluation vectors, float32
                        and precision when not float32 (a file
                        each); SHA-256 of instruction + text (a
                        row)
``teacher/``            teacher fingerprint + pair set content    a training teacher's vectors
                        hash (a file each); text (a row)          of the pairs' texts
``negatives/``          a pairs dataset's rows + mining depth +   each row's mined hard
                        format + BM25 settings + the bm25s and    negative (JSON indices)
                        PyStemmer versions
======================  ========================================  =============================

Hub backbones are downloaded by ``huggingface_hub`` into its own cache and identified by the
content of what was downloaded (:func:`ragkit.encoder.backbone.folder_identity`). The encoder
fingerprint (:func:`ragkit.encoder.config.fingerprint`) is the key of everything derived from
vectors: an index is bound to it as well. Each key changes whenever what it describes does,
so a new model, adapter or setting never meets a stale entry.
"""

from __future__ import annotations

import os
from pathlib import Path

from ragkit.hashing import canonical_json_hash

MERGED_FORMAT = 2
"""2: the manifest records whether the light (transformers-free) forward matches."""


def ragkit_home() -> Path:
    """Return ``$RAGKIT_HOME`` or ``~/.cache/ragkit``, created on first use."""
    root = Path(os.environ.get("RAGKIT_HOME") or Path.home() / ".cache" / "ragkit").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def converted_folder(name: str, version: str) -> Path:
    """Where a packaged backbone's safetensors conversion lives."""
    root = ragkit_home() / "models"
    root.mkdir(parents=True, exist_ok=True)
    return root / f"{name}-{version}"


def merged_folder(
    backbone_name: str, backbone_identity: str, adapter_hashes: list[str], layers: int | None = None
) -> Path:
    """Where a backbone with adapters merged in (and pruned to ``layers``) lives."""
    described = {"format": MERGED_FORMAT, "backbone": backbone_identity, "adapters": adapter_hashes}
    if layers is not None:
        described["layers"] = layers
    key = canonical_json_hash(described)[:16]
    return ragkit_home() / "merged" / f"{backbone_name.replace('/', '--')[-40:]}-{key}"


def engine_folder(engine: str, merged_name: str) -> Path:
    """Where a CPU engine's conversion of a merged model lives."""
    return ragkit_home() / "engines" / f"{engine}-{merged_name}"


def vectors_file(fingerprint: str, root: Path | None = None) -> Path:
    """The evaluation vector store of one encoder."""
    folder = (root or ragkit_home()) / "vectors"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{fingerprint}.sqlite"
