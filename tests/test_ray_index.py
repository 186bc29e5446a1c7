"""``ragkit index --ray``: a local Ray cluster indexes exactly as one process does."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ragkit.cli.app import app
from ragkit.cli.options import ray_flag_values
from ragkit.indexer import distributed, store
from ragkit.indexer.builder import IndexOptions, build_index
from ragkit.search.index import Index

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _docs(folder: Path, count: int = 10) -> Path:
    words = "the cat sat on a mat while rivers ran past green city towers and old trees".split()
    for i in range(count):
        body = "\n\n".join(" ".join(words[(i + j) % len(words) :] + words[: j + 3]) for j in range(6))
        (folder / f"part{i // 4}").mkdir(parents=True, exist_ok=True)
        (folder / f"part{i // 4}" / f"doc{i}.md").write_text(f"# Doc {i}\n\n{body}\n\n## More\n\ntail {i}\n")
    (folder / "notes.rst").write_text("Notes\n=====\n\nthe small dog runs slow on the rug\n")
    (folder / "empty.md").write_text("")
    return folder


def _rows(index: Path) -> dict:
    db = sqlite3.connect(index / store.DB_NAME)
    rows = db.execute(
        "SELECT d.path, c.ordinal, c.text, c.start_line, c.end_line, c.heading, c.tokens, c.vector "
        "FROM chunks c JOIN documents d ON d.id = c.document_id"
    )
    return {(r[0], r[1]): (r[2:7], np.frombuffer(r[7], dtype=np.float16).astype(np.float32)) for r in rows}


def _meta(index: Path) -> dict:
    meta = dict(sqlite3.connect(index / store.DB_NAME).execute("SELECT key, value FROM meta"))
    meta.pop("updated_at")
    return meta


def _assert_same_index(ours: Path, theirs: Path) -> None:
    a, b = _rows(ours), _rows(theirs)
    assert a.keys() == b.keys() and len(a) > 10
    assert all(a[key][0] == b[key][0] for key in a)  # same chunks, lines, headings, token counts
    cosines = [
        float(a[key][1] @ b[key][1]) / float(np.linalg.norm(a[key][1]) * np.linalg.norm(b[key][1]))
        for key in a
    ]
    assert min(cosines) > 0.999
    assert _meta(ours) == _meta(theirs)  # fingerprint, chunking, sources, index type
    assert Index.open(ours).repaired is False


def _summary_lists(summary) -> tuple:
    return summary.added, summary.updated, summary.removed, dict(summary.skipped)


def test_a_local_cluster_indexes_and_updates_like_one_process(tmp_path, tiny_backbone_dir):
    docs = _docs(tmp_path / "docs")
    encoder = str(tiny_backbone_dir)
    workers = tmp_path / "workers"

    def record_worker(names: list[str]) -> None:
        import os
        import time

        with open(workers, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(1.5)

    local = build_index(IndexOptions(source=docs, index_dir=tmp_path / "one", encoder=encoder))
    options = IndexOptions(
        source=docs, index_dir=tmp_path / "ray", encoder=encoder, ray="local", ray_workers=2
    )
    options.ray_on_batch = record_worker
    spread = build_index(options)
    assert len(set(workers.read_text().split())) == 2  # both actors embedded a share
    assert _summary_lists(spread) == _summary_lists(local) and spread.skipped["empty file"] == 1
    _assert_same_index(tmp_path / "ray", tmp_path / "one")

    (docs / "part0" / "doc1.md").write_text("# Changed\n\nthe river city changed its towers\n")
    (docs / "part1" / "doc5.md").unlink()
    (docs / "part2" / "new.md").write_text("# New\n\nthe green tree by the old mat\n")
    local = build_index(IndexOptions(source=docs, index_dir=tmp_path / "one", encoder=encoder))
    spread = build_index(IndexOptions(source=docs, index_dir=tmp_path / "ray", encoder=encoder, ray="local"))
    assert _summary_lists(spread) == _summary_lists(local)
    assert (spread.added, spread.updated, spread.removed) == (
        ["part2/new.md"],
        ["part0/doc1.md"],
        ["part1/doc5.md"],
    )
    _assert_same_index(tmp_path / "ray", tmp_path / "one")


@pytest.mark.parametrize("inflight_mb", [40 / 2**20, 2500 / 2**20], ids=["below-one-file", "files-per-slice"])
def test_a_sliced_plan_gives_the_same_index_as_one_process(tmp_path, tiny_backbone_dir, inflight_mb):
    """Bytes in flight bounded below one file's size (every file alone) or to a few files."""
    docs = _docs(tmp_path / "docs", count=12)
    sizes = [p.stat().st_size for p in docs.rglob("*") if p.is_file()]
    assert min(s for s in sizes if s) > 40 and 3 * max(sizes) < 2500  # the two regimes hold
    encoder = str(tiny_backbone_dir)
    local = build_index(IndexOptions(source=docs, index_dir=tmp_path / "one", encoder=encoder))
    options = IndexOptions(
        source=docs,
        index_dir=tmp_path / "ray",
        encoder=encoder,
        ray="local",
        ray_workers=2,
        ray_inflight_mb=inflight_mb,
    )
    spread = build_index(options)
    assert _summary_lists(spread) == _summary_lists(local)
    _assert_same_index(tmp_path / "ray", tmp_path / "one")


def test_batches_are_planned_lazily_within_the_byte_budget():
    drawn: list[int] = []

    def items():
        for i in range(10):
            drawn.append(i)
            yield (f"d{i}", Path(f"d{i}"), b"x" * (100 if i != 4 else 1000))

    plan = distributed.plan_batches(items(), batch_documents=3, max_bytes=250)
    first = next(plan)
    assert [n for n, _, _ in first] == ["d0", "d1"] and drawn == [0, 1, 2]  # no more read than needed
    rest = [[n for n, _, _ in batch] for batch in plan]
    assert rest == [["d2", "d3"], ["d4"], ["d5", "d6"], ["d7", "d8"], ["d9"]]  # a big file alone


def test_a_worker_killed_mid_run_is_replaced_and_nothing_is_lost_or_doubled(tmp_path, tiny_backbone_dir):
    docs = _docs(tmp_path / "docs", count=16)
    encoder = str(tiny_backbone_dir)
    marker = str(tmp_path / "killed-once")

    def die_once(names: list[str]) -> None:
        import os
        import pathlib

        if not pathlib.Path(marker).exists():
            pathlib.Path(marker).write_text(",".join(names))
            os._exit(1)  # the actor process dies as a lost node's would

    clean = build_index(IndexOptions(source=docs, index_dir=tmp_path / "clean", encoder=encoder, ray="local"))
    options = IndexOptions(source=docs, index_dir=tmp_path / "killed", encoder=encoder, ray="local")
    options.ray_on_batch = die_once
    killed = build_index(options)
    assert Path(marker).read_text()  # the kill happened, inside a batch of documents
    assert sorted(killed.added) == sorted(clean.added) and killed.chunks_written == clean.chunks_written
    _assert_same_index(tmp_path / "killed", tmp_path / "clean")


def test_missing_ray_or_an_unreachable_cluster_is_one_line_and_the_index_is_untouched(
    tmp_path, tiny_backbone_dir, monkeypatch
):
    docs = _docs(tmp_path / "docs", count=3)
    index = tmp_path / "index"
    build_index(IndexOptions(source=docs, index_dir=index, encoder=str(tiny_backbone_dir)))
    before = {p.name: p.read_bytes() for p in index.iterdir() if p.is_file()}
    (docs / "part0" / "doc0.md").write_text("# Changed\n\nnew words\n")
    runner = CliRunner()
    base = ["index", str(docs), "--index", str(index), "--encoder", str(tiny_backbone_dir)]

    result = runner.invoke(app, [*base, "--ray", "127.0.0.1:1"])
    assert result.exit_code == 1 and "cannot reach the Ray cluster at 127.0.0.1:1" in str(result.exception)
    result = runner.invoke(app, [*base, "--ray", "not an address"])
    assert result.exit_code == 1 and "HOST:PORT" in str(result.exception)
    monkeypatch.setattr(distributed, "installed", lambda: False)
    result = runner.invoke(app, [*base, "--ray", "local"])
    assert result.exit_code == 1 and "pip install 'ragkit[ray]'" in str(result.exception)
    assert {p.name: p.read_bytes() for p in index.iterdir() if p.is_file()} == before


def test_a_bare_ray_flag_means_a_local_cluster_and_paths_stay_paths():
    assert ray_flag_values(["index", "--ray", "./docs"]) == ["index", "--ray", "local", "./docs"]
    assert ray_flag_values(["index", "docs", "--ray"]) == ["index", "docs", "--ray", "local"]
    assert ray_flag_values(["index", "--ray", "10.0.0.5:6379", "docs"]) == [
        "index",
        "--ray",
        "10.0.0.5:6379",
        "docs",
    ]
    assert ray_flag_values(["index", "--ray", "ray://head:10001"]) == ["index", "--ray", "ray://head:10001"]
    assert ray_flag_values(["index", "--ray", "--json"]) == ["index", "--ray", "local", "--json"]
    assert ray_flag_values(["ask", "--ray"]) == ["ask", "--ray"]  # other commands are left alone
    assert ray_flag_values(["index", "--", "--ray"]) == ["index", "--", "--ray"]


def test_batches_hold_about_a_commit_group_of_tokens():
    assert distributed.documents_per_batch([4000] * 9, chunk_tokens=256, group_chunks=256) == 65
    assert distributed.documents_per_batch([10**9], chunk_tokens=256, group_chunks=256) == 1
    assert distributed.documents_per_batch([10], chunk_tokens=256, group_chunks=256) == 256


def _tiny_beir(folder: Path) -> Path:
    import json

    rng = np.random.default_rng(0)
    words = "cat dog river city tree house music stock market blue green red small big old".split()
    docs = {f"d{i}": " ".join(rng.choice(words, size=12)) for i in range(40)}
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as handle:
        for doc_id, text in docs.items():
            handle.write(json.dumps({"_id": doc_id, "title": "", "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w") as handle:
        for i in range(8):
            handle.write(json.dumps({"_id": f"q{i}", "text": " ".join(docs[f"d{i * 5}"].split()[:5])}) + "\n")
    rows = "".join(f"q{i}\td{i * 5}\t1\n" for i in range(8))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


def test_eval_embeds_its_corpus_on_ray_with_the_same_scores(tmp_path, tiny_backbone_dir, monkeypatch):
    from ragkit.encoder.encoder import Encoder
    from ragkit.evaluation.retrieval import evaluate_retrieval

    dataset = _tiny_beir(tmp_path / "beir")
    kwargs = {"encoder": str(tiny_backbone_dir), "systems": "ragkit,causal-mean,causal-last"}
    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "home-local"))
    here = evaluate_retrieval(dataset, **kwargs)
    encoded_here: list[int] = []
    original = Encoder.encode_pooled

    def counting(self, texts, poolings, **kw):
        encoded_here.append(len(texts))
        return original(self, texts, poolings, **kw)

    monkeypatch.setattr(Encoder, "encode_pooled", counting)
    monkeypatch.setenv("RAGKIT_HOME", str(tmp_path / "home-ray"))  # an empty vector cache
    spread = evaluate_retrieval(dataset, ray="local", ray_workers=2, **kwargs)
    assert 40 not in encoded_here and sum(encoded_here) == 2 * 8  # only queries, per group, here
    for name in ("ragkit", "causal-mean", "causal-last"):
        for metric in ("ndcg@10", "recall@100", "mrr@10"):
            assert spread["systems"][name][metric] == pytest.approx(here["systems"][name][metric], abs=1e-6)


def test_a_batch_of_only_unreadable_files_is_skipped_as_in_one_process(tmp_path, tiny_backbone_dir):
    docs = _docs(tmp_path / "docs", count=2)
    index = tmp_path / "index"
    encoder = str(tiny_backbone_dir)
    build_index(IndexOptions(source=docs, index_dir=index, encoder=encoder, ray="local"))
    (docs / "part0" / "doc0.md").write_text("   \n\n  \n")  # only whitespace: no text
    again = build_index(IndexOptions(source=docs, index_dir=index, encoder=encoder, ray="local"))
    assert again.removed == ["part0/doc0.md"] and again.skipped["no text"] == 1
    assert "part0/doc0.md" not in {path for path, _ in _rows(index)}


def test_workers_that_read_or_embed_differently_never_write(tmp_path, tiny_backbone_dir, monkeypatch):
    docs = _docs(tmp_path / "docs", count=2)
    encoder = str(tiny_backbone_dir)
    monkeypatch.setattr(distributed, "reader_signature", lambda: "ragkit 0.0.0, readers 0, pdf no")
    with pytest.raises(Exception, match="reads documents as"):
        build_index(IndexOptions(source=docs, index_dir=tmp_path / "index", encoder=encoder, ray="local"))
    assert not (tmp_path / "index" / store.DB_NAME).exists() or not _rows(tmp_path / "index")
    with pytest.raises(Exception, match="--ray-workers 9"):
        distributed._pool(9, "cpu")


def test_eval_workers_embed_in_the_precision_of_the_loaded_encoder(tmp_path, tiny_backbone_dir):
    """A worker that loaded its encoder in another precision would fill the loaded one's cache
    with vectors of that precision; workers are told the precision instead."""
    from ragkit.encoder.encoder import Encoder
    from ragkit.evaluation.retrieval import _encode_on_ray
    from ragkit.evaluation.systems import DenseSystem

    texts = ["the cat sat on a mat", "rivers ran past green city towers", "old trees and a small dog"]
    for dtype in ("bfloat16", "float32"):
        primary = Encoder.from_pretrained(str(tiny_backbone_dir), dtype=dtype)
        system = DenseSystem(
            name="ragkit",
            load=lambda primary=primary: primary,
            use_instruction=True,
            pooling=primary.config.pooling,
            spec=lambda: {"name_or_path": str(tiny_backbone_dir), "device": "cpu"},
        )
        (vectors,), _ = _encode_on_ray([system], primary, [primary.config.pooling], texts, 8, 1)
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        here = primary.encode(texts, batch_size=8, max_length=primary.config.document_max_length)
        np.testing.assert_allclose(vectors, here, atol=1e-6)
        if dtype == "bfloat16":
            bf16 = vectors
    assert np.abs(bf16 - vectors).max() > 1e-4  # the two precisions really differ


def test_eval_workers_that_embed_in_another_precision_are_refused(tmp_path, tiny_backbone_dir, monkeypatch):
    original = distributed._map_batches

    def elsewhere(dataset, stage, **kwargs):  # a node whose torch ignores the precision asked
        return original(dataset, stage, **kwargs).map(lambda row: {**row, "dtype": "float16"})

    monkeypatch.setattr(distributed, "_map_batches", elsewhere)
    spec = {"name_or_path": str(tiny_backbone_dir), "device": "cpu", "dtype": "float32"}
    from ragkit.encoder.encoder import Encoder

    fingerprint = Encoder.from_pretrained(str(tiny_backbone_dir)).fingerprint
    with pytest.raises(Exception, match="a Ray worker embedded in float16, this run asked for float32"):
        distributed.encode_texts(["a cat", "a dog"], spec, ["mean"], fingerprint=fingerprint, workers=1)
