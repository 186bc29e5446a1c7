"""``ragkit export``: a merged folder transformers and sentence-transformers read, and LLM2Vec's layout."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_encoder import TEXTS, _encoder_with_adapter

from ragkit import Encoder
from ragkit.encoder.adapters import adapter_from_peft
from ragkit.errors import InvalidInputError


def _two_adapter_encoder(backbone: Path, out: Path) -> Path:
    """An encoder of two stacked adapters on different modules, as a trained one has."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    first = Encoder.from_pretrained(str(_encoder_with_adapter(backbone, out.parent / "one", seed=5)))
    torch.manual_seed(6)
    config = LoraConfig(
        r=2, lora_alpha=8, init_lora_weights=False, target_modules=["k_proj", "q_proj", "up_proj"]
    )
    second = adapter_from_peft(
        "supervised", get_peft_model(AutoModelForCausalLM.from_pretrained(backbone), config)
    )
    return Encoder.from_model(
        first.model,
        first.tokenizer,
        first.config,
        backbone=first.backbone,
        adapters=[*first.adapters, second],
    ).save(out)


def _first_token_moves(model, tokenizer) -> float:
    ids = torch.tensor([tokenizer("alpha beta gamma delta")["input_ids"]])
    changed = ids.clone()
    changed[0, -1] = (int(ids[0, -1]) + 1) % len(tokenizer)
    with torch.inference_mode():
        a, b = (model(input_ids=x).last_hidden_state[0, 0] for x in (ids, changed))
    return float((a - b).norm() / a.norm())


def test_merged_export_reloads_bidirectional_in_transformers_and_sentence_transformers(
    tiny_backbone_dir: Path, tmp_path: Path
):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    from ragkit.encoder.export import export_encoder

    saved = _encoder_with_adapter(tiny_backbone_dir, tmp_path / "enc", seed=1)
    ours = Encoder.from_pretrained(str(saved), instructions={"query": "find relevant document "})
    out = export_encoder(ours, tmp_path / "merged", "merged")

    model, tokenizer = AutoModel.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    assert _first_token_moves(model, tokenizer) > 1e-3  # bidirectional from config.json alone
    causal = AutoModel.from_pretrained(tiny_backbone_dir)
    assert _first_token_moves(causal, tokenizer) < 1e-6  # the same check fails on a causal model

    st = SentenceTransformer(str(out), device="cpu")
    docs = st.encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(docs, ours.encode_documents(TEXTS), atol=1e-5)
    queries = st.encode(TEXTS, prompt_name="query", convert_to_numpy=True)
    cosine = (queries * ours.encode_queries(TEXTS)).sum(1)
    assert (
        cosine.min() > 0.9999
    )  # a whitespace tokenizer: prompt and text tokenize the same together or apart
    assert np.abs(queries - docs).max() > 1e-4  # the prompt is attended to


INSTRUCTION = "Given a question, retrieve passages that answer it: "


def _byte_level_backbone(folder: Path, prepend: bool = False) -> Path:
    """A tiny Llama with a byte-level BPE (as SmolLM2, Llama 3 and Qwen have), trained on WORDS.

    With ``prepend`` the tokenizer is SentencePiece-like instead (Metaspace, prefix "first"):
    a text alone starts with a word-boundary piece that it does not get after the prompt.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from conftest import WORDS, make_model

    backend = Tokenizer(models.BPE(unk_token=None if not prepend else "<unk>"))
    if prepend:
        backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
        backend.decoder = decoders.Metaspace(prepend_scheme="first")
    else:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
    sentences = [" ".join(WORDS[i : i + 7]) + ": " + " ".join(WORDS[i + 3 : i + 9]) for i in range(60)]
    sentences += [INSTRUCTION + text for text in TEXTS]
    alphabet = pre_tokenizers.ByteLevel.alphabet() if not prepend else []
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "<unk>", "</s>"], initial_alphabet=alphabet
    )
    backend.train_from_iterator(sentences * 5, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", eos_token="</s>"
    )
    make_model("llama", vocab_size=len(tokenizer), seed=3).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def test_merged_export_gives_ragkit_query_vectors_with_a_byte_level_tokenizer(tmp_path: Path):
    """Joined, the instruction's trailing space merges into the text's first word; the export's
    tokenizer cuts at the instruction, so sentence-transformers sees ragkit's ids."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from ragkit.encoder.export import export_encoder

    backbone = _byte_level_backbone(tmp_path / "bpe")
    saved = _encoder_with_adapter(backbone, tmp_path / "enc", seed=4)
    ours = Encoder.from_pretrained(str(saved), instructions={"query": INSTRUCTION})
    original = AutoTokenizer.from_pretrained(backbone)
    joined = original([INSTRUCTION + t for t in TEXTS])["input_ids"]
    apart = [item.ids for item in ours._inputs.build(TEXTS, INSTRUCTION)]
    assert sum(a != b for a, b in zip(joined, apart, strict=True)) >= len(TEXTS) - 1  # the seam merges

    out = export_encoder(ours, tmp_path / "merged", "merged")
    exported = AutoTokenizer.from_pretrained(out)
    assert exported([INSTRUCTION + t for t in TEXTS])["input_ids"] == apart
    assert exported(TEXTS)["input_ids"] == original(TEXTS)["input_ids"]  # texts without it: as before

    st = SentenceTransformer(str(out), device="cpu")
    queries = st.encode(TEXTS, prompt_name="query", convert_to_numpy=True, batch_size=3)
    np.testing.assert_allclose(queries, ours.encode_queries(TEXTS), atol=1e-5)
    docs = st.encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(docs, ours.encode_documents(TEXTS), atol=1e-5)


def test_merged_export_warns_when_the_tokenizer_cannot_be_cut_to_match(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    from ragkit.encoder.export import export_encoder

    backbone = _byte_level_backbone(tmp_path / "sp", prepend=True)
    saved = _encoder_with_adapter(backbone, tmp_path / "enc", seed=4)
    ours = Encoder.from_pretrained(str(saved), instructions={"query": INSTRUCTION})
    with caplog.at_level("WARNING", logger="ragkit.encoder.export"):
        out = export_encoder(ours, tmp_path / "merged", "merged")
    assert "query vectors will differ slightly" in caplog.text
    assert (out / "tokenizer.json").read_text() == (backbone / "tokenizer.json").read_text()


def test_llm2vec_export_reloads_in_ragkit_and_peft_with_the_same_vectors(
    tiny_backbone_dir: Path, tmp_path: Path
):
    from peft import PeftModel
    from transformers import AutoModel

    from ragkit.encoder.export import export_encoder

    saved = _two_adapter_encoder(tiny_backbone_dir, tmp_path / "enc")
    ours = Encoder.from_pretrained(str(saved))
    out = export_encoder(ours, tmp_path / "llm2vec", "llm2vec")
    assert (out / "adapter_config.json").is_file() and (out / "llm2vec_config.json").is_file()
    assert json.loads((out / "mntp" / "config.json").read_text())["_name_or_path"] == str(
        tiny_backbone_dir.resolve()
    )

    again = Encoder.from_pretrained(str(out))
    np.testing.assert_allclose(again.encode(TEXTS), ours.encode(TEXTS), atol=1e-5)

    model = PeftModel.from_pretrained(
        AutoModel.from_pretrained(tiny_backbone_dir), out / "mntp"
    ).merge_and_unload()
    model = PeftModel.from_pretrained(model, out).merge_and_unload()
    expected = ours.model.state_dict()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], atol=1e-5, rtol=1e-4)


def test_export_refuses_a_non_empty_folder_and_unknown_formats(tiny_backbone_dir: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from ragkit.cli.app import app
    from ragkit.encoder.export import export_encoder

    saved = _encoder_with_adapter(tiny_backbone_dir, tmp_path / "enc", seed=2)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    result = CliRunner().invoke(app, ["export", str(saved), str(taken)])
    assert result.exit_code == 1 and "not empty" in result.output
    assert (taken / "keep.txt").read_text() == "mine"
    result = CliRunner().invoke(app, ["export", str(saved), str(tmp_path / "new"), "--format", "onnx"])
    assert result.exit_code == 1 and "unknown --format" in result.output
    with pytest.raises(InvalidInputError, match="nothing to export"):
        export_encoder(Encoder.from_pretrained(str(tiny_backbone_dir)), tmp_path / "bare", "llm2vec")
