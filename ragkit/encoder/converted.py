"""Convert a packaged GGUF backbone once into a safetensors folder, safely.

Dequantizing GGUF takes about 25 s per load; the converted folder loads in a few seconds.
The folder is built in a private temporary directory, verified tensor by tensor against the
model in memory, described by a manifest (sizes and SHA-256 of every file) and renamed into
place atomically under a file lock, so two processes starting at once convert only once and
a reader never sees half a folder. A corrupt or incomplete cache is detected and rebuilt.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from ragkit.atomic import atomic_folder, remove_leftovers
from ragkit.encoder.cache import converted_folder
from ragkit.encoder.packaged import PackagedModel
from ragkit.encoder.quiet import quiet_transformers
from ragkit.errors import CacheError
from ragkit.hashing import sha256_file

log = logging.getLogger("ragkit")

MANIFEST_NAME = "ragkit-cache.json"
CACHE_FORMAT = 1
_LOCK_TIMEOUT_S = 900


def cached_folder(model: PackagedModel) -> Path:
    """Where the converted copy of ``model`` lives (it may not exist yet)."""
    return converted_folder(model.name, model.version())


def read_manifest(folder: Path) -> dict | None:
    """The manifest of a complete, unmodified cache folder, else ``None``.

    Size and mtime match: trusted without rehashing, which keeps warm loads fast. Anything
    else (a copied, touched or damaged file) is hashed in full before it is believed.
    """
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
        if manifest.get("format") != CACHE_FORMAT:
            return None
        for rel, info in manifest["files"].items():
            stat = (folder / rel).stat()
            if stat.st_size != info["size"]:
                return None
            if stat.st_mtime_ns != info["mtime_ns"] and sha256_file(folder / rel) != info["sha256"]:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return manifest


def ensure_converted(model: PackagedModel) -> tuple[Path, dict]:
    """Return the converted folder and its manifest, converting first if needed."""

    def convert(out: Path) -> dict:
        return {
            "name": model.name,
            "package": model.distribution,
            "package_version": model.version(),
            "source_sha256": export_gguf(model, out),
        }

    return ensure_built(cached_folder(model), convert, label=model.name)


def ensure_built(folder: Path, build: Callable[[Path], dict], *, label: str) -> tuple[Path, dict]:
    """Return ``folder`` and its manifest, running ``build(tmp)`` first if it is missing or damaged.

    ``build`` writes the files into an empty private folder and returns extra manifest fields;
    the folder is renamed into place only once complete, under a lock, so concurrent
    processes build once and readers never see half a folder.
    """
    manifest = read_manifest(folder)
    if manifest is not None:
        return folder, manifest
    root = folder.parent
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / f".lock-{folder.name}"))
    try:
        with lock.acquire(timeout=_LOCK_TIMEOUT_S):
            manifest = read_manifest(folder)  # another process may have finished meanwhile
            if manifest is not None:
                return folder, manifest
            if folder.exists():
                log.warning("cached copy of %s at %s is damaged; rebuilding it", label, folder)
            _build(folder, build)
    except Timeout:
        raise CacheError(
            f"waited {_LOCK_TIMEOUT_S} s for another process building {label}; "
            f"if none is running, delete {lock.lock_file}"
        ) from None
    manifest = read_manifest(folder)
    if manifest is None:
        raise CacheError(f"the cached copy of {label} at {folder} did not verify")
    return folder, manifest


def _build(final: Path, build: Callable[[Path], dict]) -> None:
    # We hold the lock, so leftovers are from builds killed mid-way, never a live one.
    remove_leftovers(final.parent, final.name)
    try:
        with atomic_folder(final) as tmp:
            _write_manifest(tmp, build(tmp))
    except OSError as exc:
        raise CacheError(f"cannot write the cached {final.name} into {final.parent}: {exc}") from exc


@contextlib.contextmanager
def _no_gguf_progress_bar() -> Iterator[None]:
    """transformers' GGUF reader uses a bare tqdm that its logging switches do not reach."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    original = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def export_gguf(model: PackagedModel, out: Path) -> str:
    """Dequantize the package's GGUF into ``out`` as safetensors; return the GGUF's SHA-256."""
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    scratch = out / ".scratch"
    scratch.mkdir()
    gguf = model.locate(scratch)
    source_sha256 = sha256_file(gguf)
    log.info("converting %s to safetensors in %s (only the first time)", model.name, out.parent)
    with quiet_transformers(), _no_gguf_progress_bar():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        lm = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # save_pretrained refuses GGUF-loaded models; the weights are already dequantized fp32.
        lm.hf_quantizer = None
        if hasattr(lm.config, "quantization_config"):
            del lm.config.quantization_config
        lm.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    shutil.rmtree(scratch)

    expected = lm.state_dict()
    for weights in sorted(out.glob("*.safetensors")):
        with safe_open(str(weights), framework="pt") as stored:
            for key in stored.keys():  # noqa: SIM118 - safe_open is not iterable
                if not torch.equal(stored.get_tensor(key), expected[key]):
                    raise CacheError(f"verification failed: tensor {key} differs after saving")
    return source_sha256


def _write_manifest(out: Path, info: dict) -> None:
    """Record size, mtime and SHA-256 of every file; written last, so it marks completeness."""
    files = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        stat = path.stat()
        files[str(path.relative_to(out))] = {
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": sha256_file(path),
        }
    manifest = {"format": CACHE_FORMAT, **info, "files": files}
    manifest_path = out / MANIFEST_NAME
    with open(manifest_path, "w") as handle:
        json.dump(manifest, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
