"""LLM2Vec's published layout: an adapter chain (last adapter -> -mntp -> base) loads as an encoder."""

import json
from pathlib import Path

import numpy as np
import pytest
from test_encoder import TEXTS

from conftest import make_model, make_tokenizer
from ragkit import Encoder
from ragkit.encoder.backbone import Backbone
from ragkit.encoder.config import EncoderConfig
from ragkit.errors import EncoderFormatError, ModelNotFoundError


def _lora(seed: int, targets=("q_proj", "v_proj", "down_proj")):
    from peft import LoraConfig

    del seed
    return LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=list(targets))


def _save_adapter(model, out: Path, base_link: str, seed: int) -> None:
    """Train nothing: a seeded random LoRA on ``model``, saved by peft itself."""
    import torch
    from peft import get_peft_model

    torch.manual_seed(seed)
    peft_model = get_peft_model(model, _lora(seed))
    peft_model.save_pretrained(out)
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base_link
    (out / "adapter_config.json").write_text(json.dumps(config))


def _published(root: Path, *, hub_style_links: bool = True, family: str = "llama") -> dict:
    """base/, org--tiny-mntp/ (MNTP adapter + config.json) and the supervised adapter."""
    from transformers import AutoModel

    base = root / "tiny-base"
    make_model(family).save_pretrained(base, safe_serialization=True)
    make_tokenizer().save_pretrained(base)
    mntp = root / "tiny-mntp"
    _save_adapter(AutoModel.from_pretrained(base), mntp, str(base), seed=1)
    config = json.loads((base / "config.json").read_text())
    (mntp / "config.json").write_text(json.dumps({**config, "_name_or_path": str(base)}))
    make_tokenizer().save_pretrained(mntp)

    from peft import PeftModel

    merged_mntp = PeftModel.from_pretrained(AutoModel.from_pretrained(base), mntp).merge_and_unload()
    supervised = root / "tiny-mntp-supervised"
    link = "example-org/tiny-mntp" if hub_style_links else str(mntp)
    _save_adapter(merged_mntp, supervised, link, seed=2)
    settings = {"pooling_mode": "mean", "max_length": 48, "doc_max_length": 12, "skip_instruction": True}
    (supervised / "llm2vec_config.json").write_text(json.dumps(settings))
    return {"base": base, "mntp": mntp, "supervised": supervised}


def _reference(paths: dict, *, with_supervised: bool) -> Encoder:
    """peft's own merge of the chain, encoded by ragkit's pooling: the vectors to match."""
    from peft import PeftModel
    from transformers import AutoModel

    model = PeftModel.from_pretrained(
        AutoModel.from_pretrained(paths["base"]), paths["mntp"]
    ).merge_and_unload()
    if with_supervised:
        model = PeftModel.from_pretrained(model, paths["supervised"]).merge_and_unload()
    config = EncoderConfig(backbone="x", backbone_identity="x", pooling="mean", max_length=48)
    return Encoder.from_model(
        model, make_tokenizer(), config, backbone=Backbone("x", Path("."), "x", "folder")
    )


@pytest.mark.parametrize("family", ["llama", "mistral"])
@pytest.mark.parametrize("hub_style_links", [True, False], ids=["sibling-hub-ids", "paths"])
def test_the_published_chain_loads_and_matches_peft_s_merge(
    tmp_path: Path, hub_style_links: bool, family: str
):
    paths = _published(tmp_path, hub_style_links=hub_style_links, family=family)
    encoder = Encoder.from_pretrained(str(paths["supervised"]))
    assert encoder.config.bidirectional and encoder.probe_result is not None
    assert [a.name for a in encoder.adapters] == ["tiny-mntp", "tiny-mntp-supervised"]
    assert encoder.config.max_length == 48 and encoder.config.document_max_length == 12
    reference = _reference(paths, with_supervised=True)
    np.testing.assert_allclose(encoder.encode(TEXTS), reference.encode(TEXTS), atol=1e-5)
    # Documents are cut at doc_max_length; queries are not.
    long_text = " ".join(["alpha beta gamma"] * 20)
    np.testing.assert_allclose(
        encoder.encode_documents(long_text), reference.encode(long_text, max_length=12), atol=1e-5
    )
    assert np.abs(encoder.encode_documents(long_text) - encoder.encode(long_text)).max() > 1e-4


def test_the_mntp_model_alone_loads_and_every_part_is_in_the_fingerprint(tmp_path: Path):
    paths = _published(tmp_path)
    mntp_only = Encoder.from_pretrained(str(paths["mntp"]))
    np.testing.assert_allclose(
        mntp_only.encode(TEXTS), _reference(paths, with_supervised=False).encode(TEXTS), atol=1e-5
    )
    full = Encoder.from_pretrained(str(paths["supervised"]))
    assert mntp_only.fingerprint != full.fingerprint

    from safetensors.torch import load_file, save_file

    weights = paths["mntp"] / "adapter_model.safetensors"
    tensors = load_file(weights)
    first = sorted(tensors)[0]
    tensors[first] = tensors[first] * 1.5
    save_file(tensors, str(weights))
    assert Encoder.from_pretrained(str(paths["supervised"])).fingerprint != full.fingerprint


def test_instruction_is_attended_but_not_pooled(tmp_path: Path):
    paths = _published(tmp_path)
    encoder = Encoder.from_pretrained(
        str(paths["supervised"]), instructions={"query": "Given a claim, retrieve documents: "}
    )
    with_instruction = encoder.encode_queries(TEXTS)
    assert np.abs(with_instruction - encoder.encode(TEXTS)).max() > 1e-4


def test_a_missing_link_is_one_clear_error_naming_it(tmp_path: Path):
    paths = _published(tmp_path)
    config = json.loads((paths["supervised"] / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "nowhere-mntp")
    (paths["supervised"] / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelNotFoundError, match="nowhere-mntp"):
        Encoder.from_pretrained(str(paths["supervised"]))


def test_an_adapter_for_another_architecture_is_refused(tmp_path: Path):
    import transformers as tf

    from conftest import TINY_CONFIG

    paths = _published(tmp_path)
    other = tf.AutoModel.from_config(tf.LlamaConfig(**{**TINY_CONFIG, "hidden_size": 48}))
    foreign = tmp_path / "foreign"
    _save_adapter(other, foreign, str(paths["base"]), seed=3)
    with pytest.raises(EncoderFormatError, match="does not fit this backbone"):
        Encoder.from_pretrained(str(foreign))


def test_ragkit_info_reads_the_chain(tmp_path: Path):
    from typer.testing import CliRunner

    from ragkit.cli.app import app

    paths = _published(tmp_path)
    result = CliRunner().invoke(app, ["info", str(paths["supervised"]), "--json"])
    assert result.exit_code == 0, result.output
    described = json.loads(result.output)
    assert described["adapters"] == ["tiny-mntp", "tiny-mntp-supervised"]
    assert described["document_max_length"] == 12
