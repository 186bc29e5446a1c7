"""Whose fusion a hybrid search uses: set on the index object, recorded by ``ragkit index
--dense-weight``, stated by the encoder, or the default; and how each is read back."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import WORDS
from ragkit.cli.app import app
from ragkit.encoder.config import EncoderConfig, fingerprint
from ragkit.errors import EncoderFormatError, InvalidInputError
from ragkit.indexer.builder import IndexOptions, build_index
from ragkit.search.fusion import DEFAULT_FUSION, Fusion, encoder_fusion
from ragkit.search.index import Index

runner = CliRunner()
WEIGHT = ("--dense-weight", "0.35", "--json")


def test_settings_round_trip_and_bad_settings_name_where_they_came_from():
    for fusion in (Fusion("convex", 0.7), Fusion("rrf", 0.5, 30), Fusion("weighted-rrf", 0.2)):
        assert Fusion.from_settings(json.loads(json.dumps(fusion.settings())), "x") == fusion
    assert Fusion.from_settings({"method": "rrf"}, "x") == Fusion("rrf")  # equal weights: none needed
    bad = [
        ({"method": "max"}, "unknown fusion"),
        ({"method": "convex"}, "needs a dense_weight"),
        ({"dense_weight": 0.4}, "with 'method'"),
        ({}, "with 'method'"),
        ({"method": "convex", "dense_weight": 1.5}, "between 0 and 1"),
        ({"method": "convex", "dense_weight": "0.5"}, "must be a number"),
        ({"method": "convex", "dense_weight": True}, "must be a number"),
        ({"method": "rrf", "k": 0}, "positive integer"),
        ({"method": "convex", "weight": 0.5}, "with 'method'"),
        ([0.5], "must be an object"),
    ]
    for settings, message in bad:
        with pytest.raises(InvalidInputError, match=message) as caught:
            Fusion.from_settings(settings, "the index at /somewhere")
        assert str(caught.value).startswith("the index at /somewhere: ")


def test_an_encoders_fusion_is_not_part_of_its_fingerprint():
    """The fusion changes no vector, so indexes built before it was stated stay valid."""
    plain = EncoderConfig(backbone="b", backbone_identity="i")
    stated = EncoderConfig(
        backbone="b", backbone_identity="i", fusion={"method": "convex", "dense_weight": 0.9}
    )
    hashes = {"tokenizer_hash": "t", "adapter_hashes": ["a"]}
    assert fingerprint(plain, **hashes) == fingerprint(stated, **hashes)
    for bad in (0.4, {"method": "convex", "dense_weight": 2}, {}):
        with pytest.raises(EncoderFormatError, match="fusion"):
            EncoderConfig(backbone="b", backbone_identity="i", fusion=bad)


def test_the_shipped_encoder_states_its_fusion():
    from ragkit.encoder.resolve import DEFAULT_ENCODER_DIR

    config = EncoderConfig.load(DEFAULT_ENCODER_DIR)
    assert Fusion.from_settings(config.fusion, "default") == Fusion("convex", 0.4)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    rng = random.Random(11)
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(10):
        paragraphs = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(3)]
        (folder / f"d{i}.md").write_text(f"# Doc {i}\n\n" + "\n\n".join(paragraphs) + "\n")
    return folder


def _build(docs: Path, index_dir: Path, encoder_dir: Path, fusion: Fusion | None = None) -> Index:
    settings = fusion.settings() if fusion else None
    build_index(IndexOptions(source=docs, index_dir=index_dir, encoder=str(encoder_dir), fusion=settings))
    return Index.open(index_dir)


def _fused_by_hand(index: Index, query: str, weight: float, k: int = 8) -> list[int]:
    """The convex fusion of the index's own two rankings, computed outside ``search``."""
    dense = [(h.chunk_id, h.score) for h in index.search(query, k=100, hybrid=False)]
    from ragkit.search.lexical import lexical_ranking

    lexical = lexical_ranking(index.db, query, 100, None)
    return [item for item, _ in Fusion("convex", weight).fuse(dense, lexical)[:k]]


def test_an_index_uses_the_fusion_it_records_then_the_encoders(
    tmp_path: Path, docs: Path, tiny_backbone_dir: Path
):
    plain = _build(docs, tmp_path / "plain", tiny_backbone_dir)
    assert plain.fusion == DEFAULT_FUSION and plain.status()["fusion"] is None
    plain.encoder.config.fusion = {"method": "convex", "dense_weight": 0.9}
    assert plain.fusion == Fusion("convex", 0.9)  # the encoder's own, where the index records none

    chosen = _build(docs, tmp_path / "chosen", tiny_backbone_dir, Fusion("convex", 0.85))
    assert chosen.fusion == Fusion("convex", 0.85)
    assert chosen.status()["fusion"] == Fusion("convex", 0.85).settings()
    query = "the cat sat on the mat by the river"
    hits = [h.chunk_id for h in chosen.search(query, k=8)]
    assert hits == _fused_by_hand(chosen, query, 0.85)
    assert hits != _fused_by_hand(chosen, query, 0.1)  # the weight changes this ranking
    chosen.close()
    again = _build(docs, tmp_path / "chosen", tiny_backbone_dir)  # a later run keeps the choice
    assert again.fusion == Fusion("convex", 0.85)


def test_an_open_index_follows_a_new_recorded_fusion_but_keeps_its_own(
    tmp_path: Path, docs: Path, tiny_backbone_dir: Path
):
    index = _build(docs, tmp_path / "index", tiny_backbone_dir, Fusion("convex", 0.3))
    pinned = Index.open(tmp_path / "index")
    pinned.fusion = Fusion("rrf")
    # Nothing but the weight changes: the open indexes still reopen and follow it.
    _build(docs, tmp_path / "index", tiny_backbone_dir, Fusion("convex", 0.7)).close()
    index.search("guitar music", k=3)
    pinned.search("guitar music", k=3)
    assert index.fusion == Fusion("convex", 0.7)
    assert pinned.fusion == Fusion("rrf")
    with pytest.raises(InvalidInputError, match=r"must be a ragkit\.search\.fusion\.Fusion"):
        pinned.fusion = 0.5
    pinned.fusion = None  # back to what the index records
    assert pinned.fusion == Fusion("convex", 0.7)


def test_a_rebuild_keeps_the_recorded_fusion_and_options_are_checked(
    tmp_path: Path, docs: Path, tiny_backbone_dir: Path
):
    _build(docs, tmp_path / "index", tiny_backbone_dir, Fusion("weighted-rrf", 0.6)).close()
    build_index(
        IndexOptions(source=docs, index_dir=tmp_path / "index", encoder=str(tiny_backbone_dir), rebuild=True)
    )
    assert Index.open(tmp_path / "index").fusion == Fusion("weighted-rrf", 0.6)
    options = IndexOptions(source=docs, index_dir=tmp_path / "x", fusion=Fusion("convex", 0.3))
    assert options.fusion == Fusion("convex", 0.3).settings()  # a Fusion is taken as its settings
    with pytest.raises(
        InvalidInputError, match=r"IndexOptions\.fusion: dense_weight must be between 0 and 1"
    ):
        IndexOptions(source=docs, index_dir=tmp_path / "x", fusion={"method": "convex", "dense_weight": 9})


@pytest.mark.parametrize(
    ("recorded", "message"),
    [
        ({"method": "convex", "dense_weight": 7}, "between 0 and 1"),
        ({"dense_weight": 0.5}, "with 'method'"),
        ("not json at all", "must be an object"),
    ],
)
def test_a_malformed_recorded_fusion_is_a_clear_error(
    tmp_path: Path, docs: Path, tiny_backbone_dir: Path, capsys, recorded, message: str
):
    from test_trainer_run import run_cli

    from ragkit.indexer import store

    _build(docs, tmp_path / "index", tiny_backbone_dir).close()
    db = store.connect(tmp_path / "index")
    store.set_meta(db, {"fusion": recorded})
    db.conn.close()
    for command in (["ask", "the cat", "-i"], ["status", "--index"]):
        code, stderr = run_cli([*command, str(tmp_path / "index")], capsys)
        assert code == 1 and "Traceback" not in stderr
        assert "fusion recorded in the index" in stderr and message in stderr
    code, stderr = run_cli(["ask", "the cat", "-i", str(tmp_path / "index"), "--dense"], capsys)
    assert code == 0, stderr  # dense search needs no fusion


def test_dense_weight_on_the_command_line(tmp_path: Path, docs: Path, tiny_backbone_dir: Path):
    index_dir = tmp_path / "index"
    made = runner.invoke(
        app,
        [
            "index",
            str(docs),
            "--index",
            str(index_dir),
            "-e",
            str(tiny_backbone_dir),
            "--dense-weight",
            "0.8",
        ],
    )
    assert made.exit_code == 0, made.output
    status = runner.invoke(app, ["status", "--index", str(index_dir)])
    assert "dense weight 0.8" in status.stdout
    index = Index.open(index_dir)
    query = "the dog ran fast in the house"
    for args, weight in (([], 0.8), (["--dense-weight", "0.05"], 0.05)):
        asked = runner.invoke(app, ["ask", query, "-i", str(index_dir), "-k", "8", "--json", *args])
        assert asked.exit_code == 0, asked.output
        assert [h["chunk_id"] for h in json.loads(asked.stdout)["hits"]] == _fused_by_hand(
            index, query, weight
        )
    assert Index.open(index_dir).fusion == Fusion("convex", 0.8)  # a query's weight is not stored
    for command in (["index", str(docs), "--index", str(index_dir)], ["ask", query, "-i", str(index_dir)]):
        refused = runner.invoke(app, [*command, "--dense-weight", "1.5"])
        assert refused.exit_code == 2 and "less than or equal to 1" in refused.output
    sts = runner.invoke(app, ["eval", "--sts", str(tmp_path / "x.tsv"), "--dense-weight", "0.5"])
    assert sts.exit_code != 0 and "STS-B has none" in sts.output
    dense = runner.invoke(app, ["ask", query, "-i", str(index_dir), "--dense", "--dense-weight", "0.5"])
    assert dense.exit_code != 0


def test_eval_hybrid_uses_the_encoders_fusion_unless_told(tmp_path: Path, tiny_backbone_dir: Path):
    from conftest import write_beir
    from ragkit.encoder import Encoder
    from ragkit.evaluation.retrieval import evaluate_retrieval

    rng = random.Random(5)
    texts = {f"d{i}": " ".join(rng.choice(WORDS) for _ in range(8)) for i in range(20)}
    queries = {f"q{i}": " ".join(rng.choice(WORDS) for _ in range(4)) for i in range(4)}
    write_beir(
        tmp_path / "beir", {d: ("", t) for d, t in texts.items()}, queries, [(q, "d0", 1) for q in queries]
    )
    encoder = Encoder.from_pretrained(str(tiny_backbone_dir))
    encoder.config.fusion = {"method": "convex", "dense_weight": 0.75}
    assert encoder_fusion(encoder) == Fusion("convex", 0.75)
    own = evaluate_retrieval(tmp_path / "beir", encoder=encoder, systems="hybrid")
    assert own["systems"]["hybrid"]["system"]["dense_weight"] == 0.75
    cli = runner.invoke(
        app,
        ["eval", str(tmp_path / "beir"), "-e", str(tiny_backbone_dir), "--systems", "hybrid", *WEIGHT],
    )
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout)["systems"]["hybrid"]["system"]["dense_weight"] == 0.35
    told = evaluate_retrieval(
        tmp_path / "beir", encoder=encoder, systems="hybrid", fusion=Fusion("convex", 0.2)
    )
    assert told["systems"]["hybrid"]["system"]["dense_weight"] == 0.2


def test_a_saved_encoders_stated_fusion_reaches_info_and_its_indexes(
    tmp_path: Path, docs: Path, tiny_backbone_dir: Path
):
    from ragkit.encoder import Encoder

    encoder = Encoder.from_pretrained(str(tiny_backbone_dir))
    plain_fingerprint = encoder.fingerprint
    encoder.config.fusion = Fusion("convex", 0.65).settings()
    saved = encoder.save(tmp_path / "stated")
    assert json.loads((saved / "ragkit.json").read_text())["fusion"]["dense_weight"] == 0.65
    info = runner.invoke(app, ["info", "-e", str(saved), "--json"])
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout)["fusion"] == Fusion("convex", 0.65).settings()
    assert json.loads(info.stdout)["fingerprint"] == plain_fingerprint
    shown = runner.invoke(app, ["info", "-e", str(saved)])
    assert "dense weight 0.65" in shown.stdout
    index = _build(docs, tmp_path / "index", saved)
    assert index.status()["fusion"] is None and index.fusion == Fusion("convex", 0.65)
    # Chosen for this encoder: a variant with another fingerprint does not inherit it.
    assert (
        Encoder.from_pretrained(str(saved), pooling="mean").config.fusion == Fusion("convex", 0.65).settings()
    )
    assert Encoder.from_pretrained(str(saved), pooling="last_token").config.fusion is None
    assert encoder.with_pooling("last_token").config.fusion is None
