"""``ragkit info`` and ``ragkit embed``: look at an encoder, and use it from scripts."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ragkit.atomic import is_free_folder
from ragkit.cli.console import err, fail, out, safe
from ragkit.cli.options import CausalOption, DeviceOption, EncoderOption, JsonOption, read_lines, require_utf8


def load_encoder(name: str, *, device: str | None, causal: bool = False, pooling: str | None = None):
    """Load with a spinner, since the very first load converts the packaged model (~30 s)."""
    from ragkit.encoder import Encoder
    from ragkit.encoder.resolve import backbone_of

    if causal:
        # The paper's baseline is the untrained backbone used causally, not the adapters.
        name = backbone_of(name)
    with err.status(f"loading encoder [bold]{safe(name)}[/] (the first use converts it once, ~30 s)"):
        return Encoder.from_pretrained(
            name, device=device, bidirectional=False if causal else None, pooling=pooling
        )


def info(
    name: Annotated[
        str | None,
        typer.Argument(
            metavar="[ENCODER]",
            help="The encoder to describe (the same as --encoder): 'default', a saved encoder, an "
            "LLM2Vec encoder (Hub id or folder of its last adapter), a backbone.",
            show_default=False,
        ),
    ] = None,
    encoder: EncoderOption = "default",
    device: DeviceOption = None,
    causal: CausalOption = False,
    as_json: JsonOption = False,
) -> None:
    """Show an encoder's backbone, dimension, device and the bidirectional-attention check."""
    if name is not None and encoder != "default" and name != encoder:
        fail(f"two encoders given ({name!r} and --encoder {encoder!r}); give one")
    encoder = name or encoder
    from ragkit.encoder.document_precision import expected_choice

    enc = load_encoder(encoder, device=device, causal=causal)
    details = enc.describe()
    details["document_precision"] = expected_choice(enc).summary()
    if as_json:
        out.print_json(json.dumps(details))
        return
    from rich.table import Table

    table = Table(show_header=False, title=f"ragkit encoder · {safe(encoder)}", title_justify="left")
    table.add_column(style="bold cyan")
    table.add_column()
    check = details["attention_check"]
    mode = "bidirectional" if details["bidirectional"] else "causal"
    verdict = (
        f"[green]passed[/]: {mode} (first-token change when the last token changes: "
        f"{check['first_token_change_min']:.3g}..{check['first_token_change_max']:.3g})"
    )
    rows = [
        ("backbone", f"{details['backbone']} ({details['backbone_source']}, {details['architecture']})"),
        ("parameters", f"{details['parameters'] / 1e6:.1f} M"),
        ("dimension", str(details["dimension"])),
        ("pooling", details["pooling"]),
        ("max length", f"{details['max_length']} tokens"),
        ("attention", verdict),
        ("query instruction", details["instructions"].get("query") or "(none)"),
        ("adapters", ", ".join(details["adapters"]) or "(none)"),
        ("hybrid fusion", _fusion_text(details.get("fusion"))),
        ("device", f"{details['device']} · {details['dtype']}"),
        ("documents", details["document_precision"]),
        ("fingerprint", details["fingerprint"]),
        ("weights", details["folder"]),
        ("load time", f"{details['load_seconds']:.1f} s"),
    ]
    for key, value in rows:
        table.add_row(key, value if key == "attention" else safe(value))
    out.print(table)


def _fusion_text(stated: dict | None) -> str:
    from ragkit.search.fusion import DEFAULT_FUSION

    if stated is None:
        default = DEFAULT_FUSION
        return f"not stated (hybrid search uses {default.method}, dense weight {default.dense_weight})"
    return f"{stated['method']}, dense weight {stated['dense_weight']} (stated in ragkit.json)"


def embed(
    texts: Annotated[
        list[str],
        typer.Argument(
            help="Texts to embed. Use '-' to read one text per line from stdin (a blank line gets "
            "a null vector, so rows line up with lines)."
        ),
    ],
    encoder: EncoderOption = "default",
    query: Annotated[
        bool, typer.Option("--query", help="Embed as queries: prepend the encoder's query instruction.")
    ] = False,
    instruction: Annotated[
        str | None, typer.Option(help="Instruction to prepend (attended to, not pooled). Implies --query.")
    ] = None,
    normalize: Annotated[bool, typer.Option(help="L2-normalise the vectors.")] = True,
    pooling: Annotated[
        str | None, typer.Option(help="Override pooling: mean, weighted_mean, last_token, first_token.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per batch at most.")] = 32,
    device: DeviceOption = None,
    causal: CausalOption = False,
) -> None:
    """Print embeddings as JSON on stdout, for scripts: {"vectors": [[...], ...], ...}."""
    lines: list[str] | None = None
    if texts == ["-"]:
        lines = read_lines(sys.stdin.buffer)
        texts = [line for line in lines if line.strip()]
        if not texts:
            fail("stdin held no text to embed")
    from ragkit.encoder.inputs import validate_texts

    for text in texts:
        require_utf8(text, "a text to embed")
    validate_texts(texts)  # fail before the slow model load
    enc = load_encoder(encoder, device=device, causal=causal, pooling=pooling)
    kwargs = {"batch_size": batch_size, "normalize": normalize}
    if query or instruction is not None:
        vectors = enc.encode_queries(texts, instruction=instruction, **kwargs)
    else:
        vectors = enc.encode_documents(texts, **kwargs)
    rows = vectors.tolist()
    if lines is not None:  # one row per input line, null for a blank one
        filled = iter(rows)
        rows = [next(filled) if line.strip() else None for line in lines]
    payload = {
        "encoder": encoder,
        "fingerprint": enc.fingerprint,
        "dimension": enc.dimension,
        "normalized": normalize,
        "truncated": enc.last_truncated,
        "vectors": rows,
    }
    sys.stdout.write(json.dumps(payload) + "\n")


def export(
    encoder: Annotated[
        str,
        typer.Argument(help="The encoder to export: 'default', a saved encoder, an LLM2Vec encoder."),
    ],
    out: Annotated[Path, typer.Argument(help="A new folder to write.", show_default=False)],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="merged: a transformers model folder with merged weights that sentence-transformers "
            "also loads; llm2vec: McGill-NLP's adapter layout (llm2vec and ragkit read it).",
        ),
    ] = "merged",
) -> None:
    """Write an encoder in a layout other tools read (the encoder itself is left as it is)."""
    from ragkit.encoder.export import FORMATS, export_encoder

    if fmt not in FORMATS:
        fail(f"unknown --format {fmt!r}: use {', '.join(FORMATS)}")
    out = out.expanduser()
    if not is_free_folder(out):
        fail(f"{out} already exists and is not empty; choose a new folder")
    enc = load_encoder(encoder, device="cpu")
    with err.status(f"writing {fmt} export to {safe(str(out))}"):
        written = export_encoder(enc, out, fmt)
    err.print(f"[green]exported[/] {safe(encoder)} as {fmt} to {safe(str(written))}", highlight=False)
