"""Write an encoder in layouts other tools read: a merged model folder, or LLM2Vec's layout.

``merged``: a plain transformers model folder (merged weights, tokenizer) whose
``config.json`` carries ``is_causal: false``, plus a sentence-transformers configuration
(modules.json, the pooling without the prompt, normalisation, the query prompt), so
``SentenceTransformer(folder)`` embeds as ragkit does. sentence-transformers tokenizes prompt
and text as one string, where ragkit tokenizes them apart; the exported tokenizer therefore
cuts at each instruction before its own pre-tokenizer runs, and the export checks that the
joined string gives ragkit's ids. The export is reloaded with
``AutoModel.from_pretrained`` and probed before it is kept: a folder that would silently run
causal is refused.

``llm2vec``: McGill-NLP's layout, read by llm2vec's loader and by ragkit's
(:mod:`ragkit.encoder.llm2vec`): the folder holds the last adapter and
``llm2vec_config.json``; ``mntp/`` inside it holds every earlier adapter as one exact LoRA
(LoRA deltas add, so stacked adapters are one adapter of their summed rank) and the base
model's ``config.json`` naming it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ragkit.atomic import atomic_folder, is_free_folder
from ragkit.encoder.adapters import Adapter
from ragkit.encoder.attention import probe
from ragkit.encoder.llm2vec import LLM2VEC_CONFIG
from ragkit.encoder.quiet import quiet_transformers
from ragkit.errors import EncoderFormatError, InvalidInputError

logger = logging.getLogger(__name__)

FORMATS = ("merged", "llm2vec")
_ST_POOLING = {
    "mean": "pooling_mode_mean_tokens",
    "first_token": "pooling_mode_cls_token",
    "last_token": "pooling_mode_lasttoken",
    "weighted_mean": "pooling_mode_weightedmean_tokens",
}
_LLM2VEC_POOLING = {
    "mean": "mean",
    "weighted_mean": "weighted_mean",
    "last_token": "eos_token",
    "first_token": "bos_token",
}


def export_encoder(encoder, out: Path, fmt: str) -> Path:
    """Write ``encoder`` to ``out`` in ``fmt``; ``out`` must not hold anything yet."""
    if fmt not in FORMATS:
        raise InvalidInputError(f"unknown export format {fmt!r}: use {', '.join(FORMATS)}")
    if not is_free_folder(out):
        raise InvalidInputError(f"{out} already exists and is not empty; choose a new folder")
    with atomic_folder(out) as tmp:
        (_write_merged if fmt == "merged" else _write_llm2vec)(encoder, tmp)
    return out


def _write_merged(encoder, folder: Path) -> None:
    if getattr(encoder.model, "backend", "torch") != "torch" or not hasattr(encoder.model, "save_pretrained"):
        raise InvalidInputError("export needs the encoder loaded with backend='torch'")
    encoder.model.save_pretrained(folder, safe_serialization=True)
    encoder.tokenizer.save_pretrained(folder)
    _write_sentence_transformers(encoder, folder)
    query = encoder.config.instructions.get("query", "")
    if query and not cut_at_instructions(folder, [query], encoder):
        logger.warning(
            "sentence-transformers will not tokenize prompt and text of this export as ragkit "
            "does; its query vectors will differ slightly from ragkit's"
        )
    if encoder.config.bidirectional:
        _check_reloads_bidirectional(folder, encoder)


def _write_sentence_transformers(encoder, folder: Path) -> None:
    config = encoder.config
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    _json(folder / "modules.json", modules)
    _json(folder / "sentence_bert_config.json", {"max_seq_length": config.max_length, "do_lower_case": False})
    pooling = {mode: False for mode in _ST_POOLING.values()}
    pooling[_ST_POOLING[config.pooling]] = True
    pooling.update({"word_embedding_dimension": encoder.dimension, "include_prompt": False})
    (folder / "1_Pooling").mkdir()
    _json(folder / "1_Pooling" / "config.json", pooling)
    (folder / "2_Normalize").mkdir()
    prompts = {"query": config.instructions.get("query", ""), "document": ""}
    _json(
        folder / "config_sentence_transformers.json",
        {"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"},
    )


def cut_at_instructions(folder: Path, instructions: list[str], encoder) -> bool:
    """Make ``folder``'s tokenizer split at each instruction; True if ids then match ragkit's.

    A byte-level BPE merges the instruction's trailing space into the text's first word when
    the two are tokenized as one string. A literal ``Split`` pre-tokenizer placed ahead of the
    tokenizer's own isolates the instruction, so the joined string tokenizes as its two parts
    did apart; a text that does not contain an instruction tokenizes exactly as before.
    """
    path = folder / "tokenizer.json"
    if not path.is_file():
        return _checked(folder, instructions, encoder)
    original = path.read_text(encoding="utf-8")
    body = json.loads(original)
    normalize = _normalizer(body)
    splits = [
        {"type": "Split", "pattern": {"String": normalize(text)}, "behavior": "Isolated", "invert": False}
        for text in instructions
    ]
    own = [body["pre_tokenizer"]] if body.get("pre_tokenizer") else []
    body["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [*splits, *own]}
    path.write_text(json.dumps(body, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if _checked(folder, instructions, encoder):
        return True
    path.write_text(original, encoding="utf-8")
    return False


def _checked(folder: Path, instructions: list[str], encoder) -> bool:
    """:func:`_same_ids_as_ragkit`, with a tokenizer that fails to load or build counted as no."""
    try:
        return _same_ids_as_ragkit(folder, instructions, encoder)
    except Exception as exc:
        logger.debug("the exported tokenizer could not be checked: %s", exc)
        return False


def _normalizer(body: dict):
    """The tokenizer's normalizer as a function: the Split pattern must match normalized text."""
    if not body.get("normalizer"):
        return lambda text: text
    from tokenizers import Tokenizer

    normalizer = Tokenizer.from_str(json.dumps(body)).normalizer
    return normalizer.normalize_str


def _same_ids_as_ragkit(folder: Path, instructions: list[str], encoder) -> bool:
    """Tokenize as sentence-transformers does (prompt + text, pooled after the prompt's length)."""
    from transformers import AutoTokenizer

    from ragkit.encoder.probe_texts import probe_texts

    passages, queries = probe_texts()
    texts = [*queries, *(p.split(". ")[0] for p in passages)]
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(folder)
    specials = set(tokenizer.all_special_ids)
    for instruction in instructions:
        prompt = tokenizer(instruction)["input_ids"]
        prompt_length = len(prompt) - (1 if prompt and prompt[-1] in specials else 0)
        joined = tokenizer([instruction + text for text in texts])["input_ids"]
        ours = encoder._inputs.build(texts, instruction)
        for ids, item in zip(joined, ours, strict=True):
            if ids != item.ids or prompt_length != item.pool_start:
                return False
    return True


def _check_reloads_bidirectional(folder: Path, encoder) -> None:
    """Reload the folder as a stranger would and measure its attention."""
    from transformers import AutoModel

    with quiet_transformers():
        reloaded = AutoModel.from_pretrained(folder)
    result = probe(reloaded, vocab_size=len(encoder.tokenizer), pad_id=encoder._inputs.pad_id)
    if not result.is_bidirectional():
        raise EncoderFormatError(
            f"the exported {reloaded.config.model_type} model runs causal when transformers reloads "
            "it (is_causal in config.json is not honoured for this architecture); use --format llm2vec"
        )


def combine_adapters(adapters: list[Adapter], name: str) -> Adapter:
    """One LoRA whose delta is exactly the sum of the given adapters' deltas.

    Each adapter adds ``scale * B @ A`` to a weight, whatever the weight is, so stacking
    them is ``[s1*B1, s2*B2] @ [A1; A2]``: rank r1 + r2, scale 1. A module one adapter
    leaves alone gets zero rows from it.
    """
    import torch

    for adapter in adapters:
        if adapter.config.get("use_rslora") or adapter.config.get("use_dora"):
            raise EncoderFormatError(f"adapter '{adapter.name}' uses rsLoRA or DoRA; it cannot be combined")
    modules = sorted({k.rsplit(".lora_", 1)[0] for a in adapters for k in a.tensors if ".lora_A." in k})
    ranks = [int(a.config["r"]) for a in adapters]
    tensors = {}
    for module in modules:
        downs, ups = [], []
        shape = next(
            (a.tensors[f"{module}.lora_A.weight"].shape[1], a.tensors[f"{module}.lora_B.weight"].shape[0])
            for a in adapters
            if f"{module}.lora_A.weight" in a.tensors
        )
        for adapter, rank in zip(adapters, ranks, strict=True):
            down, up = (
                adapter.tensors.get(f"{module}.lora_A.weight"),
                adapter.tensors.get(f"{module}.lora_B.weight"),
            )
            if down is None:
                down, up = torch.zeros(rank, shape[0]), torch.zeros(shape[1], rank)
            scale = float(adapter.config["lora_alpha"]) / rank
            downs.append(down.float())
            ups.append(up.float() * scale)
        tensors[f"{module}.lora_A.weight"] = torch.cat(downs, 0)
        tensors[f"{module}.lora_B.weight"] = torch.cat(ups, 1)
    config = {**adapters[-1].config, "r": sum(ranks), "lora_alpha": sum(ranks), "lora_dropout": 0.0}
    config.update({"target_modules": modules, "rank_pattern": {}, "alpha_pattern": {}})
    return Adapter(name, config, tensors)


def _write_llm2vec(encoder, folder: Path) -> None:
    if not encoder.adapters:
        raise InvalidInputError("an encoder without adapters has nothing to export in the LLM2Vec layout")
    if encoder.config.layers is not None:
        raise InvalidInputError(
            "a pruned encoder cannot be written in the LLM2Vec layout (its base is not pruned)"
        )
    backbone = encoder.backbone
    base_link = str(backbone.folder) if backbone.source == "packaged" else backbone.name
    earlier, last = encoder.adapters[:-1], encoder.adapters[-1]
    mntp = folder / "mntp"
    if earlier:
        combine_adapters(earlier, "mntp").save(mntp)
        _set_base(mntp, base_link)
        base_config = json.loads((backbone.folder / "config.json").read_text())
        _json(mntp / "config.json", {**base_config, "_name_or_path": base_link})
        encoder.tokenizer.save_pretrained(mntp)
    last.save(folder)
    _set_base(folder, str(mntp.name) if earlier else base_link)
    encoder.tokenizer.save_pretrained(folder)
    config = encoder.config
    settings = {
        "pooling_mode": _LLM2VEC_POOLING[config.pooling],
        "max_length": config.max_length,
        "doc_max_length": config.document_max_length or config.max_length,
        "skip_instruction": True,
    }
    _json(folder / LLM2VEC_CONFIG, settings)


def _set_base(folder: Path, link: str) -> None:
    path = folder / "adapter_config.json"
    _json(path, {**json.loads(path.read_text()), "base_model_name_or_path": link})


def _json(path: Path, body) -> None:
    path.write_text(json.dumps(body, indent=2) + "\n")
