"""The converted-model cache: atomic, verified, rebuilt when damaged, converted once under races."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

import ragkit.encoder.converted as cache
from ragkit.encoder.packaged import PackagedModel


def _fake_model() -> PackagedModel:
    # A real installed distribution gives a version; the export itself is faked below.
    return PackagedModel(
        name="fake-model",
        distribution="numpy",
        install_hint="-",
        licence="-",
        description="-",
        gguf_file="fake.gguf",
        locate=lambda scratch: scratch / "fake.gguf",
    )


def _fake_export(counter: Path):
    def export(model: PackagedModel, out: Path) -> str:
        with open(counter, "a") as handle:
            handle.write("x")
        (out / "model.safetensors").write_bytes(b"w" * 4096)
        (out / "config.json").write_text('{"model_type": "llama"}')
        return "0" * 64

    return export


@pytest.fixture
def fake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "home"))
    counter = tmp_path / "conversions"
    monkeypatch.setattr(cache, "export_gguf", _fake_export(counter))
    return counter


def test_converts_once_then_reuses(fake_home: Path) -> None:
    folder, manifest = cache.ensure_converted(_fake_model())
    again, _ = cache.ensure_converted(_fake_model())
    assert folder == again and fake_home.read_text() == "x"
    assert set(manifest["files"]) == {"model.safetensors", "config.json"}
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".fake-model-")]


@pytest.mark.parametrize(
    "damage",
    [
        lambda f: (f / "model.safetensors").write_bytes(b"w" * 4095),  # truncated
        lambda f: (f / "model.safetensors").write_bytes(b"v" * 4096),  # same size, other bytes
        lambda f: (f / "model.safetensors").unlink(),
        lambda f: (f / cache.MANIFEST_NAME).write_text("{broken"),
        lambda f: (f / cache.MANIFEST_NAME).unlink(),
    ],
)
def test_damaged_cache_is_detected_and_rebuilt(fake_home: Path, damage, caplog) -> None:
    folder, _ = cache.ensure_converted(_fake_model())
    damage(folder)
    assert cache.read_manifest(folder) is None
    folder2, _ = cache.ensure_converted(_fake_model())
    assert folder2 == folder and fake_home.read_text() == "xx"
    assert (folder / "model.safetensors").read_bytes() == b"w" * 4096
    assert "damaged; rebuilding" in caplog.text


def test_touched_but_intact_file_is_rehashed_not_rebuilt(fake_home: Path) -> None:
    import os

    folder, _ = cache.ensure_converted(_fake_model())
    os.utime(folder / "model.safetensors", ns=(1, 1))
    assert cache.read_manifest(folder) is not None
    cache.ensure_converted(_fake_model())
    assert fake_home.read_text() == "x"


def test_leftover_partial_build_is_cleaned(fake_home: Path) -> None:
    folder = cache.cached_folder(_fake_model())
    partial = folder.parent / f".{folder.name}-build-killed"
    partial.mkdir(parents=True)
    (partial / "model.safetensors").write_bytes(b"half")
    cache.ensure_converted(_fake_model())
    assert not partial.exists()


def _convert_in_child(counter: str, result: str) -> None:
    import time

    export = _fake_export(Path(counter))

    def slow_export(model, out):
        time.sleep(0.5)  # widen the race window
        return export(model, out)

    cache.export_gguf = slow_export
    folder, manifest = cache.ensure_converted(_fake_model())
    Path(result).write_text(json.dumps({"folder": str(folder), "files": sorted(manifest["files"])}))


def test_two_processes_at_once_convert_once(fake_home: Path, tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    results = [tmp_path / f"r{i}.json" for i in range(3)]
    procs = [ctx.Process(target=_convert_in_child, args=(str(fake_home), str(r))) for r in results]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert fake_home.read_text() == "x"
    outcomes = [json.loads(r.read_text()) for r in results]
    assert all(o == outcomes[0] for o in outcomes)
