"""Options several commands share, defined once so their help reads the same everywhere."""

from __future__ import annotations

from typing import Annotated

import typer

EncoderOption = Annotated[
    str,
    typer.Option(
        "--encoder",
        "-e",
        help="Encoder to use: 'default', a packaged backbone (smollm2-135m, gemma3-270m), "
        "a Hugging Face id (org/name), a model folder or a saved ragkit encoder folder.",
        envvar="RAGKIT_ENCODER",
    ),
]
DeviceOption = Annotated[
    str | None,
    typer.Option(help="Torch device, e.g. cpu or cuda. Default: cuda when available, else cpu."),
]
CausalOption = Annotated[
    bool,
    typer.Option(
        "--causal",
        help="Use the encoder's backbone, causal and without trained adapters (the paper's baseline).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout, nothing else.")]
