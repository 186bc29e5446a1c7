"""``ragkit.Encoder``: a decoder-only LLM used as a bidirectional text encoder."""

from __future__ import annotations

import copy
import logging
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ragkit.encoder.adapters import Adapter
from ragkit.encoder.attention import ProbeResult, check_attention, probe, set_bidirectional
from ragkit.encoder.backbone import Backbone, backbone_layers
from ragkit.encoder.backends import check_backend, load_backend
from ragkit.encoder.config import EncoderConfig, fingerprint, tokenizer_hash
from ragkit.encoder.folder import save_encoder
from ragkit.encoder.inputs import InputBuilder, collate, count_truncated, plan_batches, validate_texts
from ragkit.encoder.pooling import pool, validate_pooling
from ragkit.encoder.pruning import check_layers, layer_count
from ragkit.encoder.resolve import resolve_encoder
from ragkit.encoder.roles import QueryDocumentRoles
from ragkit.errors import InvalidInputError

log = logging.getLogger("ragkit")

DEFAULT_BATCH_SIZE = 32
CPU_TOKENS_PER_BATCH = 512
"""Default padded-token budget per batch on CPU.

Throughput on a CPU peaks at a few hundred tokens per forward pass and falls with bigger
batches, whose activations spill the caches (bench/encode.py, BENCHMARKS.md).
GPUs are limited by ``batch_size`` alone unless ``max_tokens_per_batch`` is given.
"""


def resolve_device(device: str | None):
    """``None`` picks CUDA when present, else CPU."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidInputError(f"unknown device '{device}'") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("device 'cuda' was requested but no CUDA GPU is available")
    return resolved


def resolve_dtype(dtype: str | None, device):
    """``None`` picks bf16 on CUDA (as the paper trains and evaluates), fp32 on CPU."""
    import torch

    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    choices = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in choices:
        raise InvalidInputError(f"dtype must be one of {', '.join(choices)}, not {dtype!r}")
    return choices[dtype]


def _check_options(pooling, max_length, padding_side, dtype, device) -> None:
    """Check cheap options before the slow load, so a typo fails in milliseconds."""
    if pooling is not None:
        validate_pooling(pooling)
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise InvalidInputError(f"max_length must be a positive integer, got {max_length!r}")
    if padding_side not in (None, "left", "right"):
        raise InvalidInputError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
    resolve_dtype(dtype, resolve_device(device))


def _with_overrides(config: EncoderConfig, **overrides) -> EncoderConfig:
    """The saved settings with the caller's (those not None) in their place."""
    given = {key: value for key, value in overrides.items() if value is not None}
    if "bidirectional" in given:
        given["bidirectional"] = bool(given["bidirectional"])
    if "instructions" in given:
        given["instructions"] = dict(given["instructions"])
    if any(getattr(config, key) != value for key, value in given.items()):
        given["fusion"] = None
    return EncoderConfig(**{**config.__dict__, **given})


def _layers_of(model) -> int | None:
    """How many layers run: from the config, else the layer stack (None for other shapes)."""
    counted = getattr(model.config, "num_hidden_layers", None)
    if isinstance(counted, int):
        return counted
    try:
        return layer_count(model)
    except InvalidInputError:
        return None


class Encoder(QueryDocumentRoles):
    """Embeds texts with a (by default bidirectional) decoder-only LLM.

    Build one with :meth:`from_pretrained`. ``encode`` has the same knobs as
    sentence-transformers' (``batch_size``, ``normalize``, ``show_progress``), and
    ``encode_queries`` / ``encode_documents`` add the query instruction or leave it out.
    """

    def __init__(
        self,
        model,
        tokenizer,
        config: EncoderConfig,
        *,
        backbone: Backbone,
        adapters: list[Adapter] | None = None,
        padding_side: str | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.backbone = backbone
        self.adapters = list(adapters or [])
        self.padding_side = padding_side or getattr(tokenizer, "padding_side", "right") or "right"
        if self.padding_side not in ("left", "right"):
            raise InvalidInputError(f"padding_side must be 'left' or 'right', not {self.padding_side!r}")
        self._inputs = InputBuilder(tokenizer, config.max_length)
        self._tokenizer_hash = tokenizer_hash(tokenizer)
        self._adapter_hashes = [a.content_hash() for a in self.adapters]
        self.fingerprint = fingerprint(
            config, tokenizer_hash=self._tokenizer_hash, adapter_hashes=self._adapter_hashes
        )
        self.probe_result: ProbeResult | None = None
        self.precision_choice = None
        """Set where documents are embedded (:mod:`ragkit.encoder.document_precision`)."""
        self.last_truncated = 0
        self.load_seconds = 0.0

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = "default",
        *,
        bidirectional: bool | None = None,
        pooling: str | None = None,
        max_length: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
        instructions: dict[str, str] | None = None,
        padding_side: str | None = None,
        attn_implementation: str | None = None,
        layers: int | None = None,
        backend: str = "torch",
    ) -> Encoder:
        """Load an encoder from a packaged name, hub id, model folder or saved encoder.

        ``bidirectional`` (default True), ``pooling`` (default "mean") and ``max_length``
        (default 512) override a saved encoder's settings when given. On load the attention
        is measured (:mod:`ragkit.encoder.attention`) and a mismatch raises.

        ``layers`` keeps the bottom N layers of the backbone (:mod:`ragkit.encoder.pruning`);
        a saved encoder trained pruned records its own count.

        ``backend`` chooses what runs the model (:mod:`ragkit.encoder.backends`): ``torch``
        (transformers, the default), ``light`` (ragkit's own torch modules, no transformers
        import), ``openvino``, or ``auto``, the fastest that applies. The fast ones apply to
        a saved encoder with verified merged weights on a CPU; elsewhere torch runs. The
        vectors and the fingerprint are the same whichever runs.
        """
        started = time.perf_counter()
        _check_options(pooling, max_length, padding_side, dtype, device)
        check_backend(backend)
        resolved = resolve_encoder(name_or_path)
        config = _with_overrides(
            resolved.config,
            bidirectional=bidirectional,
            pooling=pooling,
            max_length=max_length,
            instructions=instructions,
            layers=layers,
        )
        # A pruned encoder's adapters were trained on its kept layers only: never more.
        check_layers(config.layers, resolved.config.layers or backbone_layers(resolved.backbone))
        model, tokenizer = load_backend(
            backend,
            resolved,
            config,
            cpu=resolve_device(device).type == "cpu",
            dtype=dtype,
            attn_implementation=attn_implementation,
        )
        encoder = cls.from_model(
            model,
            tokenizer,
            config,
            backbone=resolved.backbone,
            adapters=resolved.adapters,
            device=device,
            dtype=dtype,
            padding_side=padding_side,
        )
        encoder.load_seconds = time.perf_counter() - started
        return encoder

    @classmethod
    def from_model(
        cls,
        model,
        tokenizer,
        config: EncoderConfig,
        *,
        backbone: Backbone,
        adapters: list[Adapter] | None = None,
        device: str | None = None,
        dtype: str | None = None,
        padding_side: str | None = None,
    ) -> Encoder:
        """Wrap an already loaded model (tests, the trainer): set attention, move, verify."""
        target = resolve_device(device)
        model = model.to(device=target, dtype=resolve_dtype(dtype, target)).eval()
        set_bidirectional(model, config.bidirectional)
        encoder = cls(
            model, tokenizer, config, backbone=backbone, adapters=adapters, padding_side=padding_side
        )
        vocab_size = model.get_input_embeddings().num_embeddings
        encoder.probe_result = probe(model, vocab_size=vocab_size, pad_id=encoder._inputs.pad_id)
        check_attention(model, encoder.probe_result, bidirectional=config.bidirectional)
        return encoder

    # --------------------------------------------------------------- properties
    @property
    def dimension(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def max_length(self) -> int:
        return self.config.max_length

    def describe(self) -> dict:
        """A JSON-ready summary for ``ragkit info`` and model cards."""
        probe_result = self.probe_result
        return {
            "backbone": self.config.backbone,
            "backbone_source": self.backbone.source,
            "architecture": getattr(self.model.config, "model_type", "?"),
            "parameters": getattr(self.model, "parameter_count", None)
            or sum(p.numel() for p in self.model.parameters()),
            "backend": getattr(self.model, "backend", "torch"),
            "dimension": self.dimension,
            "layers": _layers_of(self.model),
            "pooling": self.config.pooling,
            "max_length": self.config.max_length,
            "document_max_length": self.config.document_max_length,
            "bidirectional": self.config.bidirectional,
            "attention_check": None
            if probe_result is None
            else {
                "passed": True,
                "first_token_change_min": probe_result.smallest,
                "first_token_change_max": probe_result.largest,
            },
            "instructions": self.config.instructions,
            "fusion": self.config.fusion,
            "adapters": [a.name for a in self.adapters],
            "device": str(self.device),
            "dtype": getattr(self.model, "dtype_name", None)
            or str(next(self.model.parameters()).dtype).removeprefix("torch."),
            "padding_side": self.padding_side,
            **({"precision_choice": self.precision_choice.to_dict()} if self.precision_choice else {}),
            "fingerprint": self.fingerprint,
            "folder": str(self.backbone.folder),
            "load_seconds": round(self.load_seconds, 2),
        }

    # ---------------------------------------------------------------- encoding
    def encode(
        self,
        texts: Iterable[str] | str,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        normalize: bool = True,
        show_progress: bool | None = None,
        instruction: str = "",
        max_tokens_per_batch: int | None = None,
        warn_truncated: bool = True,
        max_length: int | None = None,
    ) -> np.ndarray:
        """Embed texts; returns float32 ``[len(texts), dimension]`` in input order.

        Texts are sorted by length and batched under a padded-token budget (default 512 on
        CPU, ``batch_size * max_length`` on GPU), so little compute goes to padding. Texts
        longer than ``max_length`` tokens are truncated, counted in ``last_truncated`` and
        logged; ``max_length`` cuts shorter for this call. ``instruction`` is prepended and
        attended to but excluded from pooling.
        """
        single = isinstance(texts, str)
        pooled = self.encode_pooled(
            [texts] if single else texts,
            [self.config.pooling],
            batch_size=batch_size,
            normalize=normalize,
            show_progress=show_progress,
            instruction=instruction,
            max_tokens_per_batch=max_tokens_per_batch,
            warn_truncated=warn_truncated,
            max_length=max_length,
        )[self.config.pooling]
        return pooled[0] if single else pooled

    def encode_pooled(
        self,
        texts: Iterable[str],
        poolings: list[str],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        normalize: bool = True,
        show_progress: bool | None = None,
        instruction: str = "",
        max_tokens_per_batch: int | None = None,
        warn_truncated: bool = True,
        max_length: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Like :meth:`encode`, but read out several poolings from one forward pass.

        Evaluation compares mean and last-token pooling of the same causal model; sharing
        the forward pass halves that cost. ``encode`` is this with the configured pooling.
        """
        import torch

        poolings = [validate_pooling(p) for p in dict.fromkeys(poolings)]
        items = validate_texts(texts)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        encoded = self._inputs.build(items, instruction or "", max_length)
        limit = min(self.config.max_length, max_length or self.config.max_length)
        self.last_truncated = count_truncated(encoded, limit, warn=warn_truncated)
        device = self.device
        if max_tokens_per_batch is None:
            cpu = device.type == "cpu"
            max_tokens_per_batch = CPU_TOKENS_PER_BATCH if cpu else batch_size * self.config.max_length
        batches = plan_batches([len(e.ids) for e in encoded], batch_size, max_tokens_per_batch)
        out = {p: np.empty((len(items), self.dimension), dtype=np.float32) for p in poolings}
        progress = _progress(show_progress, len(batches), sum(len(e.ids) for e in encoded))
        with progress as advance, torch.inference_mode():
            for indices in batches:
                batch = collate([encoded[i] for i in indices], self._inputs.pad_id, self.padding_side)
                hidden = self.model(
                    input_ids=batch["input_ids"].to(device),
                    attention_mask=batch["attention_mask"].to(device),
                    position_ids=batch["position_ids"].to(device),
                    use_cache=False,
                ).last_hidden_state
                mask = batch["pool_mask"].to(device)
                for mode in poolings:
                    vectors = pool(hidden, mask, mode)
                    if normalize:
                        vectors = torch.nn.functional.normalize(vectors, dim=-1)
                    out[mode][indices] = vectors.float().cpu().numpy()
                advance(int(batch["attention_mask"].sum()))
        return out

    def with_pooling(self, pooling: str) -> Encoder:
        """The same loaded model read out with another pooling: no reload, its own fingerprint."""
        view = copy.copy(self)
        pooling = validate_pooling(pooling)
        kept = self.config.fusion if pooling == self.config.pooling else None
        view.config = EncoderConfig(**{**self.config.__dict__, "pooling": pooling, "fusion": kept})
        view.fingerprint = fingerprint(
            view.config, tokenizer_hash=self._tokenizer_hash, adapter_hashes=self._adapter_hashes
        )
        return view

    # ------------------------------------------------------------------ saving
    def save(self, path: str | os.PathLike) -> Path:
        """Write config, tokenizer and adapters to ``path`` atomically (no pickle)."""
        return save_encoder(Path(path).expanduser(), self.config, self.tokenizer, self.adapters)


class _progress:
    """A rich progress bar with tokens/s and ETA, or a no-op when not wanted."""

    def __init__(self, show: bool | None, batches: int, tokens: int):
        if show is None:
            show = batches > 1 and sys.stderr.isatty()
        self.show, self.total = show, tokens
        self._bar = None

    def __enter__(self):
        if not self.show:
            return lambda n: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("[bold]encoding"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("tokens · {task.fields[rate]} tok/s"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._bar.start()
        task = self._bar.add_task("encode", total=self.total, rate="-")
        start = time.perf_counter()

        def advance(n: int) -> None:
            done = self._bar.tasks[0].completed + n
            rate = done / max(time.perf_counter() - start, 1e-9)
            self._bar.update(task, advance=n, rate=f"{rate:,.0f}")

        return advance

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
