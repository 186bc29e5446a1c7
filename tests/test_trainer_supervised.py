"""The supervised contrastive stage: pairs, hard negatives, batches, loss, training, resume."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import time
from pathlib import Path

import pytest
import torch
from test_trainer_run import _adapter_tensors, run_cli
from torch.nn import functional as F

from conftest import WORDS, make_model, make_tokenizer, slow_train_command
from ragkit.encoder.inputs import InputBuilder, collate
from ragkit.errors import InvalidInputError
from ragkit.trainer.card import write_card
from ragkit.trainer.corpus import corpus_pairs, load_corpus
from ragkit.trainer.loop import TrainOptions, train
from ragkit.trainer.losses import SupervisedObjective
from ragkit.trainer.negatives import mine_negatives
from ragkit.trainer.pairs import PairBatches, read_pairs
from ragkit.trainer.recipe import RECIPES

SMALL = ["--steps", "6", "--batch-size", "4", "--max-length", "24", "--checkpoint-every", "2"]


def _write_pairs(path: Path, rows: list[dict]) -> Path:
    text = "\n".join(json.dumps(r) for r in rows) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _salad_pairs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        passage = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16)))
        words = passage.split()
        rows.append({"query": " ".join([*words[:3], "what"]), "positive": passage, "group": str(i // 3)})
    return rows


@pytest.fixture
def pairs_files(tmp_path: Path) -> list[Path]:
    return [
        _write_pairs(tmp_path / "first.jsonl.gz", _salad_pairs(24, 0)),
        _write_pairs(
            tmp_path / "second.jsonl",
            [{k: v for k, v in r.items() if k != "group"} for r in _salad_pairs(16, 1)],
        ),
    ]


def test_loss_equals_a_hand_computation_with_in_batch_and_hard_negatives():
    torch.manual_seed(0)
    queries, positives, negatives = torch.randn(3, 8), torch.randn(3, 8), torch.randn(3, 8)

    class Fixed(torch.nn.Module):
        def forward(self, input_ids, attention_mask, position_ids=None, use_cache=False):
            return type("Out", (), {"last_hidden_state": input_ids})()

    objective = SupervisedObjective(Fixed(), temperature=0.05)
    ones = torch.ones(3, 1)
    docs = torch.cat([positives, negatives])
    loss = objective(
        {"input_ids": queries[:, None, :], "attention_mask": ones, "pool_mask": ones},
        {"input_ids": docs[:, None, :], "attention_mask": torch.ones(6, 1), "pool_mask": torch.ones(6, 1)},
    )
    q, d = F.normalize(queries, dim=-1), F.normalize(docs, dim=-1)
    expected = 0.0
    for i in range(3):
        logits = [float(q[i] @ d[j]) / 0.05 for j in range(6)]
        expected += -logits[i] + float(torch.logsumexp(torch.tensor(logits), 0))
    assert float(loss) == pytest.approx(expected / 3, rel=1e-5)


@pytest.mark.parametrize("side", ["left", "right"])
def test_the_instruction_is_attended_to_but_never_pooled(side):
    tokenizer = make_tokenizer()
    builder = InputBuilder(tokenizer, 32)
    items = builder.build(["the cat sat", "a dog runs fast in the house"], "find the relevant document")
    batch = collate(items, builder.pad_id, side)
    instruction_length = len(tokenizer("find the relevant document", add_special_tokens=False)["input_ids"])
    for row, item in enumerate(items):
        pooled = batch["pool_mask"][row].nonzero().flatten().tolist()
        real = batch["attention_mask"][row].nonzero().flatten().tolist()
        assert len(pooled) == len(item.ids) - item.pool_start
        assert pooled == real[item.pool_start :]
        assert item.pool_start == 1 + instruction_length  # <s> and the instruction
    model = make_model().eval()
    objective = SupervisedObjective(model)
    left = collate(items, builder.pad_id, "left")
    right = collate(items, builder.pad_id, "right")
    with torch.no_grad():
        a = objective.embed(
            left["input_ids"], left["attention_mask"], left["pool_mask"], left["position_ids"]
        )
        b = objective.embed(
            right["input_ids"], right["attention_mask"], right["pool_mask"], right["position_ids"]
        )
    assert torch.allclose(a, b, atol=1e-5)


def test_each_batch_holds_rows_of_one_dataset_and_is_seeded(pairs_files):
    pair_set = read_pairs(pairs_files)
    batches = PairBatches(pair_set, 4, seed=3)
    seen = set()
    for step in range(40):
        rows = batches.rows(step)
        assert len(rows) == 4
        assert len({pair_set.pairs[i].dataset for i in rows}) == 1
        seen.update(rows)
    assert len(seen) == 40  # forty batches drawn by the mixture cover every row of both datasets
    assert PairBatches(pair_set, 4, seed=3).rows(13) == batches.rows(13)
    assert [PairBatches(pair_set, 4, seed=4).rows(s) for s in range(5)] != [batches.rows(s) for s in range(5)]


def test_mined_negatives_are_never_the_positive(pairs_files, tmp_path):
    rows = _salad_pairs(24, 0)
    rows.append({"query": "cat", "positive": rows[0]["positive"]})  # a duplicate passage
    pair_set = mine_negatives(
        read_pairs([_write_pairs(tmp_path / "dup.jsonl", rows), pairs_files[1]]), cache_root=tmp_path / "neg"
    )
    assert pair_set.mined == len(pair_set.pairs)
    for pair in pair_set.pairs:
        assert pair.negatives and pair.negatives[0] != pair.positive
    grouped = [p for p in pair_set.pairs if p.group is not None]
    by_group = {}
    for p in grouped:
        by_group.setdefault(p.group, set()).add(p.positive)
    assert all(p.negatives[0] in by_group[p.group] for p in grouped if len(by_group[p.group]) > 1)


def test_given_negatives_are_kept(tmp_path):
    rows = [
        {"query": f"q {i} cat", "positive": f"the cat {i}", "negative": [f"dog {i}", f"tree {i}"]}
        for i in range(4)
    ]
    pair_set = mine_negatives(
        read_pairs([_write_pairs(tmp_path / "p.jsonl", rows)]), cache_root=tmp_path / "neg"
    )
    assert pair_set.mined == 0
    assert pair_set.pairs[2].negatives == ("dog 2", "tree 2")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "holds 0 valid rows"),
        ('{"query": "a cat"}\n{"query": "b", "positive": "c"}\n', "'positive' is missing"),
        ('{"positive": "a cat"}\n', "'query' is missing"),
        ('{"query": "same", "positive": "same"}\n', "equals 'query'"),
        ('{"query": "a", "positive": "b"}\nnot json\n', "not a JSON line"),
        ('{"query": "a", "positive": "b", "negative": 3}\n', "'negative' must be"),
        ('["query", "positive"]\n', "expected a JSON object"),
    ],
)
def test_bad_pairs_files_fail_before_any_model_loads(content, message, tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    out = tmp_path / "enc"
    started = time.perf_counter()
    code, err = run_cli(
        [
            "train",
            "--backbone",
            "no-such-model",
            "--stages",
            "supervised",
            "--pairs",
            str(path),
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 1 and message in err and "Traceback" not in err, err
    assert time.perf_counter() - started < 5 and not out.exists()


def test_missing_pairs_file_is_a_clear_error(tmp_path, capsys):
    code, err = run_cli(
        [
            "train",
            "--stages",
            "supervised",
            "--pairs",
            str(tmp_path / "nope.jsonl"),
            "--out",
            str(tmp_path / "x"),
        ],
        capsys,
    )
    assert code == 1 and "does not exist" in err


def test_pairs_from_titles_and_headings(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "guide.md").write_text(
        "# Guide\n\n## Install\n\nrun pip install and wait for it\n\n"
        "## Usage\n\nindex a folder and ask it things\n"
    )
    (docs / "notes.rst").write_text(
        "Notes\n=====\n\nSetup\n-----\n\nthe setup takes two steps of work\n\n"
        "Teardown\n--------\n\nremove the folder when you are done\n"
    )
    (docs / "other.md").write_text("# Other\n\n## Usage\n\nthis usage heading is shared and ambiguous\n")
    pairs = corpus_pairs(load_corpus(docs))
    found = {p.query: p.positive for p in pairs.pairs}
    assert found["Guide > Install"] == "run pip install and wait for it"
    assert found["Guide > Usage"] == "index a folder and ask it things"
    assert found["Notes > Setup"] == "the setup takes two steps of work"
    assert {p.group for p in pairs.pairs if p.query.startswith("Guide")} == {"guide.md"}
    beir = tmp_path / "corpus.jsonl"
    beir.write_text(
        "\n".join(
            json.dumps(
                {"_id": str(i), "title": f"Title {i}", "text": f"the body text of document number {i}"}
            )
            for i in range(3)
        )
    )
    titled = corpus_pairs(load_corpus(beir))
    assert [(p.query, p.group) for p in titled.pairs] == [(f"Title {i}", str(i)) for i in range(3)]
    plain = tmp_path / "lines.txt"
    plain.write_text("a line of text with no title at all\nanother line without any structure\n")
    with pytest.raises(InvalidInputError, match="no titles or headings"):
        corpus_pairs(load_corpus(plain))


def _options(backbone: Path, out: Path, pairs: list[Path], **kw) -> TrainOptions:
    recipe = RECIPES["quick"].with_overrides(steps=6, batch_size=4, max_length=24, checkpoint_every=2)
    return TrainOptions(
        out=out,
        backbone=str(backbone),
        stages=["supervised"],
        pairs=[str(p) for p in pairs],
        recipe=recipe,
        show_progress=False,
        **kw,
    )


def test_training_lowers_the_loss_and_stores_the_instruction(tiny_causal_dir, pairs_files, tmp_path):
    from dataclasses import replace

    from ragkit.encoder.encoder import Encoder

    out = tmp_path / "enc"
    options = _options(tiny_causal_dir, out, pairs_files)
    recipe = replace(options.recipe, supervised=replace(options.recipe.supervised, steps=30, lr=3e-3))
    train(replace(options, recipe=recipe))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    encoder = Encoder.from_pretrained(str(out))
    assert encoder.config.instructions["query"] == RECIPES["quick"].query_instruction
    assert encoder.describe()["adapters"] == ["00-supervised"]


def test_supervised_on_top_of_a_trained_encoder_keeps_its_adapters(
    tiny_causal_dir, tiny_corpus, pairs_files, tmp_path
):
    from test_trainer_run import _options as unsupervised_options

    from ragkit.encoder.encoder import Encoder

    base = tmp_path / "base"
    train(unsupervised_options(tiny_causal_dir, tiny_corpus, base, stages=["mntp"]))
    out = tmp_path / "tuned"
    train(_options(base, out, pairs_files))
    encoder = Encoder.from_pretrained(str(out))
    assert encoder.describe()["adapters"] == ["00-mntp", "01-supervised"]
    base_tensors = _adapter_tensors(base)
    tuned = _adapter_tensors(out)
    assert all(torch.equal(base_tensors[k], tuned[k]) for k in base_tensors)


def test_kill_9_then_resume_gives_the_same_weights(tiny_causal_dir, pairs_files, tmp_path, capsys):
    whole = tmp_path / "whole"
    train(_options(tiny_causal_dir, whole, pairs_files))
    reference = _adapter_tensors(whole)
    out = tmp_path / "killed"
    args = ["train", "--backbone", str(tiny_causal_dir), "--stages", "supervised", "--out", str(out), *SMALL]
    for path in pairs_files:
        args += ["--pairs", str(path)]
    command = slow_train_command(
        0.4,
        overrides={"steps": 6, "batch_size": 4, "max_length": 24, "checkpoint_every": 2},
        out=out,
        backbone=str(tiny_causal_dir),
        stages="supervised",
        pairs=[str(p) for p in pairs_files],
    )
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = out / "checkpoints" / "supervised-000002"
    deadline = time.monotonic() + 120
    while not target.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert target.exists() and not (out / "ragkit.json").exists()
    code, err = run_cli([*args, "--resume"], capsys)
    assert code == 0, err
    resumed = _adapter_tensors(out)
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)


def test_resume_with_nothing_to_resume_is_an_error(tiny_causal_dir, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "fresh"
    code, err = run_cli(
        [
            "train",
            "--backbone",
            str(tiny_causal_dir),
            "--corpus",
            str(tiny_corpus),
            "--out",
            str(out),
            "--resume",
        ],
        capsys,
    )
    assert code == 1 and "nothing to resume" in err


def test_mining_never_picks_another_answer_to_the_same_query(tmp_path):
    rows = [
        {"query": "what do cats eat", "positive": "cats eat fish and mice", "group": "g"},
        {"query": "what do cats eat", "positive": "cats also eat dry food", "group": "g"},
        {"query": "what do dogs eat", "positive": "dogs eat meat", "group": "g"},
        {"query": "what do cows eat", "positive": "cows eat grass all day"},
        {"query": "what do cats like", "positive": "cats like to eat and sleep"},
    ]
    pair_set = mine_negatives(
        read_pairs([_write_pairs(tmp_path / "p.jsonl", rows)]), cache_root=tmp_path / "neg"
    )
    answers = {"cats eat fish and mice", "cats also eat dry food"}
    for pair in pair_set.pairs[:2]:
        assert pair.negatives and pair.negatives[0] not in answers


def test_the_card_names_every_stage_under_a_run_on_a_trained_encoder(tiny_causal_dir, pairs_files, tmp_path):
    """Two levels down the base's own stages.json lists only its stage; the card's title,
    stage table and wall time still count every stage."""
    backbone = tiny_causal_dir
    for level in range(3):
        out = tmp_path / f"enc{level}"
        train(_options(backbone, out, pairs_files))
        backbone = out
    card = (out / "README.md").read_text()
    title = card.splitlines()[0]
    assert title.endswith(" + SUPERVISED + SUPERVISED + SUPERVISED"), title
    rows = [line for line in card.splitlines() if line.startswith("| supervised")]
    assert len(rows) == 3 and ["(base)" in row for row in rows] == [True, True, False], rows
    runs = [json.loads((tmp_path / f"enc{level}" / "stages.json").read_text()) for level in range(3)]
    seconds = sum(run["supervised"]["seconds"] for run in runs)
    assert f"Wall time: {seconds / 60:.1f} min" in card
    assert json.loads((out / "ragkit.json").read_text())["adapters"] == [
        "00-supervised",
        "01-supervised",
        "02-supervised",
    ]


def test_an_empty_instruction_means_none_and_a_missing_one_the_recipes(tmp_path: Path):
    """Symmetric pairs (two sentences compared as they are) say "instruction": ""."""
    from ragkit.trainer.batches import PairSteps

    rows = [
        {"query": "the cat sat", "positive": "a cat was sitting", "instruction": ""},
        {"query": "a dog runs", "positive": "the dog is running", "instruction": "  "},
        {"query": "birds fly", "positive": "the birds are flying"},
        {"query": "fish swim", "positive": "the fish are swimming", "instruction": "find the twin"},
    ]
    pair_set = read_pairs([_write_pairs(tmp_path / "sym.jsonl", rows)])
    assert [p.instruction for p in pair_set.pairs] == ["", "", None, "find the twin"]
    tokenizer = make_tokenizer()
    recipe = RECIPES["quick"].with_overrides(batch_size=4, max_length=24)
    steps = PairSteps(tokenizer, pair_set, TrainOptions(out=tmp_path / "out", recipe=recipe))
    built = {p.query: q for p, q in zip(pair_set.pairs, steps._encode_queries(pair_set.pairs), strict=True)}
    plain = InputBuilder(tokenizer, 24)
    assert built["the cat sat"].ids == plain.build(["the cat sat"])[0].ids
    assert built["the cat sat"].pool_start == 0
    expected = plain.build(["birds fly"], recipe.query_instruction)[0]
    assert built["birds fly"].ids == expected.ids and built["birds fly"].pool_start > 0
    assert built["fish swim"].ids == plain.build(["fish swim"], "find the twin")[0].ids


def _chunk_case(dropout: float):
    """A LoRA-wrapped tiny model in training mode and a batch of 7 queries and 12 passages."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=dropout,
        target_modules=["q_proj", "down_proj"],
        init_lora_weights=False,
    )
    model = get_peft_model(make_model(), config).base_model.model.train()
    builder = InputBuilder(make_tokenizer(), 32)
    rng = random.Random(0)
    salad = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) for _ in range(19)]
    queries = collate(builder.build(salad[:7], "find the relevant document"), builder.pad_id, "right")
    passages = collate(builder.build(salad[7:]), builder.pad_id, "right")
    keys = ("input_ids", "attention_mask", "position_ids", "pool_mask")
    return model, {k: queries[k] for k in keys}, {k: passages[k] for k in keys}


def _loss_and_gradients(model, queries, passages, chunk_size, saved: list | None = None):
    objective = SupervisedObjective(model, chunk_size=chunk_size)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)

    def pack(tensor):
        if saved is not None:
            saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = objective(queries, passages)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return float(loss), grads


def test_chunked_embedding_gives_the_unchunked_loss_and_gradients_and_keeps_less():
    model, queries, passages = _chunk_case(dropout=0.0)
    kept_whole, kept_chunked = [], []
    loss, grads = _loss_and_gradients(model, queries, passages, None, kept_whole)
    chunked_loss, chunked_grads = _loss_and_gradients(model, queries, passages, 3, kept_chunked)
    assert chunked_loss == pytest.approx(loss, rel=1e-6)
    assert grads and grads.keys() == chunked_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, atol=1e-6, rtol=1e-5)
    assert sum(kept_chunked) < 0.2 * sum(kept_whole)  # the forward keeps vectors, not activations


def test_chunked_embedding_replays_each_chunks_dropout_in_the_recomputation(monkeypatch):
    """With dropout, the recomputed chunk must draw the masks its first pass drew."""
    import torch.utils.checkpoint

    model, queries, passages = _chunk_case(dropout=0.3)
    loss, grads = _loss_and_gradients(model, queries, passages, 3)
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", lambda fn, *args, use_reentrant: fn(*args))
    kept_loss, kept_grads = _loss_and_gradients(model, queries, passages, 3)  # same chunks, no recompute
    assert loss == pytest.approx(kept_loss, rel=1e-6)
    for name, grad in kept_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-6, rtol=1e-5)
    other_loss, _ = _loss_and_gradients(model, queries, passages, None)
    assert other_loss != pytest.approx(loss, rel=1e-4)  # dropout is on: whole-batch draws differ


def test_training_with_chunk_size_reaches_the_weights_of_training_without(
    tiny_causal_dir, pairs_files, tmp_path, monkeypatch
):
    from dataclasses import replace

    import torch.utils.checkpoint

    options = _options(tiny_causal_dir, tmp_path / "whole", pairs_files)
    options = replace(options, recipe=replace(options.recipe, lora_dropout=0.0))
    train(options)
    calls = []
    original = torch.utils.checkpoint.checkpoint

    def counted(*args, **kwargs):
        calls.append(len(args[1]))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", counted)
    train(replace(options, out=tmp_path / "chunked", chunk_size=3))
    assert calls and max(calls) == 3  # the run really embedded in chunks of 3
    assert json.loads((tmp_path / "chunked" / "training.json").read_text())["chunk_size"] == 3
    whole, chunked = _adapter_tensors(tmp_path / "whole"), _adapter_tensors(tmp_path / "chunked")
    assert whole.keys() == chunked.keys()
    for name, tensor in whole.items():
        torch.testing.assert_close(chunked[name].float(), tensor.float(), atol=1e-3, rtol=0)  # fp16 files


def test_chunk_size_on_the_command_line_is_kept_by_resume(tiny_causal_dir, pairs_files, tmp_path, capsys):
    out = tmp_path / "enc"
    args = ["train", "--backbone", str(tiny_causal_dir), "--stages", "supervised", "--out", str(out), *SMALL]
    for path in pairs_files:
        args += ["--pairs", str(path)]
    code, err = run_cli([*args, "--chunk-size", "0"], capsys)
    assert code != 0 and "--chunk-size" in err and not out.exists()
    code, err = run_cli([*args, "--chunk-size", "2"], capsys)
    assert code == 0, err
    assert json.loads((out / "training.json").read_text())["chunk_size"] == 2
    code, err = run_cli([*args, "--chunk-size", "3", "--resume"], capsys)
    assert code == 1 and "--chunk-size 2" in err and "asks for 3" in err


@pytest.mark.parametrize(
    ("top", "total", "words"),
    [
        (30, 30, "LoRA on all 30 layers"),
        (10, 30, "LoRA on the top 10 layers"),
        (None, 12, "LoRA on all 12 layers"),
    ],
)
def test_the_card_says_all_layers_when_the_top_n_reach_the_bottom(tmp_path, top, total, words):
    """A top-N setting as large as the model is every layer, and the card says so."""
    run = {
        "backbone": "tiny",
        "stages": ["supervised"],
        "recipe": {"name": "quick", "supervised": {"lora_top_layers": top}},
        "model_layers": total,
    }
    (tmp_path / "training.json").write_text(json.dumps(run))
    card = write_card(tmp_path).read_text()
    assert words in card


def test_resume_refuses_other_pairs_and_another_layer_count(tiny_causal_dir, tmp_path, capsys):
    """Continuing a run on other data or another depth would mix two runs under one card."""
    first = _write_pairs(tmp_path / "first.jsonl", _salad_pairs(24, 0))
    other = _write_pairs(tmp_path / "other.jsonl", _salad_pairs(24, 1))
    out = tmp_path / "enc"
    args = ["train", "--backbone", str(tiny_causal_dir), "--stages", "supervised", "--out", str(out), *SMALL]
    code, err = run_cli([*args, "--pairs", str(first)], capsys)
    assert code == 0, err
    stored = {p.name: p.stat().st_mtime_ns for p in (out / "adapters").rglob("*")}
    code, err = run_cli([*args, "--pairs", str(other), "--resume"], capsys)
    assert code == 1 and "different pair set" in err
    code, err = run_cli([*args, "--pairs", str(first), "--layers", "1", "--resume"], capsys)
    assert code == 1 and "different layer count" in err
    assert {p.name: p.stat().st_mtime_ns for p in (out / "adapters").rglob("*")} == stored
    code, err = run_cli([*args, "--pairs", str(first), "--resume"], capsys)
    assert code == 0, err
