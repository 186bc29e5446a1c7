"""OpenVINO as the CPU engine of the encoder body (``backend="openvino"``).

On a CPU the encoder spends its time in fp32 matrix products and, per query, in reading its
weights; OpenVINO's CPU plugin runs the same graph with fused kernels. The engine takes the
light body (:mod:`ragkit.encoder.light`: the merged weights, already verified against
transformers), converts it once per merged-weights folder into ``$RAGKIT_HOME/engines/``
under a lock with a manifest, and checks the converted model against the torch body on a
probe batch padded on both sides before it is ever used. It computes in fp32 unless bf16 is
asked for (``dtype="bfloat16"``): on CPUs with AMX, bf16 embeds documents about 3.5 times
faster, but its pooled vectors stray from fp32 by up to cosine 0.994 and single token states
far more (BENCHMARKS.md), so the plugin's own choice of bf16 is never left to it. A bf16
engine is held at load to the pooled states of real documentation passages recorded at
build time (``probe_texts.json``, cut by the backbone's tokenizer). Pooling,
instructions and truncation stay ragkit's, so the vectors and the fingerprint are those of
the torch path.

Loading is most of a short command's start-up, so the plugin's compiled form is kept next to
the converted model (``compiled/``, OpenVINO's model cache: 0.4 s to load instead of 1.2 s).
That cache is written after the build's check, so each load compares the probe batch's
states with those recorded at build time (``probe.safetensors``) before the engine is used;
a cache that disagrees is dropped and the model compiled afresh.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

log = logging.getLogger("ragkit")
MODEL_FILE = "encoder.xml"
PROBE_FILE = "probe.safetensors"
COMPILED_DIR = "compiled"
MIN_COSINE = 0.9999
"""Smallest cosine between an engine's token states and torch's accepted at verification."""
BF16_MIN_COSINE = 0.99
"""Smallest cosine between a text probe row's mean state in bf16 and in fp32 accepted at load.
Single token states may differ far more in bf16 (a rare token's state is sensitive to
rounding), so the opt-in bf16 engine is held to its pooled rows, as retrieval uses them, of
real documentation text: rows of random ids are all rare tokens and judge an encoder by
sequences nobody indexes."""
TEXT_PROBE_ROWS = 8
TEXT_PROBE_TOKENS = 48
PRECISIONS = ("f32", "bf16")
_threads: int | None = None


def set_num_threads(threads: int | None) -> None:
    """Threads for engines compiled from now on in this process (None: the plugin's choice),
    as ``torch.set_num_threads`` does for torch: several workers on one machine share it."""
    global _threads
    _threads = threads


def installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


ARTEFACT_FORMAT = 4
"""Bumped whenever the files an artefact holds change, so older ones are rebuilt, not misread."""


def version() -> str:
    """The installed OpenVINO's version: part of the artefact's key, so an upgrade re-verifies."""
    import importlib.metadata

    return importlib.metadata.version("openvino")


def artefact_name() -> str:
    """The engine part of the artefact's cache key (:mod:`ragkit.encoder.cache`)."""
    return f"openvino-{version()}-f{ARTEFACT_FORMAT}"


class _Traceable(nn.Module):
    """The light body with the padding mask always applied: one graph for every batch."""

    def __init__(self, light):
        super().__init__()
        self.light = light

    def forward(self, input_ids, attention_mask, position_ids):
        body = self.light
        hidden = body.embed_tokens(input_ids)
        cos, sin = body.rotary(position_ids, hidden.dtype)
        mask = (attention_mask[:, None, None, :].to(hidden.dtype) - 1.0) * 1e9
        for layer in body.layers:
            hidden = layer(hidden, cos, sin, mask)
        return body.norm(hidden)


def _probe_batch(vocab: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random ids in three rows: unpadded, padded on the right, padded on the left."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (3, 13), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[2, :4] = 0
    return ids, mask, (mask.cumsum(1) - 1).clamp(min=0)


def _compile(folder: Path, cached: bool = True, precision: str = "f32"):
    """Compile for the CPU, through OpenVINO's model cache in ``folder`` unless ``cached`` is off.

    A cache that cannot be written (a read-only home) costs the compile time, not the engine.
    ``bf16`` uses AMX or AVX512-BF16 where the CPU has them (elsewhere the plugin stays fp32).
    """
    import openvino as ov

    core = ov.Core()
    config = {
        "INFERENCE_PRECISION_HINT": precision,
        **({"INFERENCE_NUM_THREADS": _threads} if _threads else {}),
    }
    if cached:
        try:
            return core.compile_model(
                str(folder / MODEL_FILE), "CPU", {**config, "CACHE_DIR": str(folder / COMPILED_DIR)}
            )
        except RuntimeError as exc:
            log.debug("OpenVINO's model cache is unusable (%s); compiling without it", exc)
    return core.compile_model(core.read_model(folder / MODEL_FILE), "CPU", config)


def _min_cosine(
    compiled, probe: tuple[torch.Tensor, ...], expected: torch.Tensor, pooled: bool = False
) -> float:
    """The smallest cosine between the engine's and ``expected``'s state of a real token (or,
    ``pooled``, of a row's mean state)."""
    ids, mask, positions = probe
    ours = torch.from_numpy(compiled([ids.numpy(), mask.numpy(), positions.numpy()])[0])
    if pooled:
        weights = mask[..., None].to(ours.dtype)
        ours, expected = (ours * weights).sum(1), (expected * weights).sum(1)
    else:
        real = mask.bool()
        ours, expected = ours[real], expected[real]
    return float(nn.functional.cosine_similarity(ours, expected, dim=-1).min())


def agreement(compiled, traced: nn.Module) -> float:
    """The smallest cosine between the engine's and torch's state of a real token."""
    probe = _probe_batch(traced.light.embed_tokens.num_embeddings)
    with torch.inference_mode():
        return _min_cosine(compiled, probe, traced(*probe))


def text_probe(rows: list[list[int]], vocab: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Token id rows of real text as one batch padded on both sides: rows are cut to falling
    lengths, the batch is one wider than its longest row, and the last row is aligned right
    (padded on the left). None with fewer than two non-empty rows (ids the model lacks are
    dropped)."""
    kept = [[i for i in row if 0 <= i < vocab] for row in rows]
    kept = [row for row in kept if row][:TEXT_PROBE_ROWS]
    if len(kept) < 2:
        return None
    kept = [row[: max(4, TEXT_PROBE_TOKENS - 5 * n)] for n, row in enumerate(kept)]
    width = max(len(row) for row in kept) + 1
    ids = torch.zeros(len(kept), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for number, row in enumerate(kept):
        start = width - len(row) if number == len(kept) - 1 else 0
        ids[number, start : start + len(row)] = torch.tensor(row)
        mask[number, start : start + len(row)] = 1
    return ids, mask, (mask.cumsum(1) - 1).clamp(min=0)


def build(light, out: Path, text_rows: list[list[int]] | None = None) -> dict:
    """Convert ``light`` into ``out`` and record whether it agrees with torch.

    ``text_rows`` (token ids of real text) are recorded with their fp32 states for the bf16
    load check; without them that check falls back to the random-id probe."""
    import openvino as ov

    traced = _Traceable(light).eval()
    example = _probe_batch(light.embed_tokens.num_embeddings)
    shapes = [ov.PartialShape([-1, -1])] * 3
    with torch.inference_mode():
        model = ov.convert_model(traced, example_input=example, input=shapes)
    ov.save_model(model, out / MODEL_FILE, compress_to_fp16=False)
    with torch.inference_mode():
        expected = traced(*example)
    ids, mask, positions = example
    probe = {
        "hidden": expected.contiguous(),
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": positions,
    }
    text = text_probe(text_rows or [], light.embed_tokens.num_embeddings)
    if text is not None:
        with torch.inference_mode():
            probe["text_hidden"] = traced(*text).contiguous()
        probe |= dict(zip(("text_input_ids", "text_attention_mask", "text_position_ids"), text, strict=True))
    save_file(probe, str(out / PROBE_FILE))
    cosine = _min_cosine(_compile(out, cached=False, precision="f32"), example, expected)
    verified = cosine >= MIN_COSINE
    return {"engine": "openvino", "version": ov.__version__, "min_cosine": cosine, "verified": verified}


class OpenVinoBody:
    """The compiled engine, called like a transformers model by the encoder."""

    backend = "openvino"

    def __init__(self, compiled, config, vocab_size: int, parameter_count: int, folder: Path | None = None):
        self._compiled = compiled
        self.folder = folder
        self.dtype_name = "float32"
        self.config = config
        self.parameter_count = parameter_count
        self._embeddings = SimpleNamespace(num_embeddings=vocab_size)
        self._device = torch.zeros(1)  # where outputs live, for callers that ask a parameter

    def __call__(self, input_ids, attention_mask=None, position_ids=None, **_ignored):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1]).expand_as(input_ids)
        arrays = [np.asarray(t.cpu(), dtype=np.int64) for t in (input_ids, attention_mask, position_ids)]
        hidden = self._compiled(arrays)[0]
        return SimpleNamespace(last_hidden_state=torch.from_numpy(np.ascontiguousarray(hidden)))

    def get_input_embeddings(self):
        return self._embeddings

    def parameters(self):
        yield self._device

    def modules(self):
        return iter(())

    def to(self, *args, **kwargs):
        return self

    def eval(self):
        return self


def _checked_compile(folder: Path, precision: str = "f32"):
    """The compiled engine, once its probe states match those recorded at build time.

    Only fp32 goes through OpenVINO's model cache: a bf16 model read back from it was seen
    to give other states or crash the process, so bf16 is compiled afresh each time.
    """
    recorded = load_file(str(folder / PROBE_FILE))
    prefix = "text_" if precision != "f32" and "text_hidden" in recorded else ""
    probe = tuple(recorded[f"{prefix}{key}"] for key in ("input_ids", "attention_mask", "position_ids"))
    expected = recorded[f"{prefix}hidden"]
    bound, pooled = (MIN_COSINE, False) if precision == "f32" else (BF16_MIN_COSINE, True)
    if precision == "f32":
        compiled = _compile(folder, precision=precision)
        if _min_cosine(compiled, probe, expected, pooled) >= bound:
            return compiled
        log.warning("OpenVINO's compiled copy in %s disagrees with the build; compiling afresh", folder)
        del compiled  # its cached blob goes next
        shutil.rmtree(folder / COMPILED_DIR, ignore_errors=True)
    compiled = _compile(folder, cached=False, precision=precision)
    if _min_cosine(compiled, probe, expected, pooled) < bound:
        raise RuntimeError(f"the compiled engine ({precision}) disagrees with its build-time check")
    return compiled


def load(
    folder: Path, light_config, vocab_size: int, parameter_count: int, precision: str = "f32"
) -> OpenVinoBody:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    compiled = _checked_compile(folder, precision)
    body = OpenVinoBody(compiled, light_config, vocab_size, parameter_count, folder)
    body.dtype_name = "bfloat16" if precision == "bf16" else "float32"
    return body
