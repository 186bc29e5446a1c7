"""Options several commands share, defined once so their help reads the same everywhere."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ragkit.search.fusion import Fusion

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
DocumentDtypeOption = Annotated[
    str,
    typer.Option(
        "--dtype",
        help="Document precision: auto (bfloat16 on the OpenVINO engine where the CPU has native "
        "bf16, AMX or AVX512-BF16, and bf16 passes a retrieval check on probe texts: vectors within "
        "cosine 0.99 of float32 and top-10 neighbours agreeing at >= 0.95; float32 otherwise), "
        "float32 or bfloat16 (as asked, unchecked). Queries are always float32.",
    ),
]
CausalOption = Annotated[
    bool,
    typer.Option(
        "--causal",
        help="Use the encoder's backbone, causal and without trained adapters (the paper's baseline).",
    ),
]
DenseWeightOption = Annotated[
    float | None,
    typer.Option(
        "--dense-weight",
        min=0.0,
        max=1.0,
        help="Hybrid search's share of the dense ranking: w x dense + (1 - w) x BM25 over min-max "
        "normalised scores. Default: the weight the encoder states (0.4 for the shipped one, chosen "
        "on dev sets), else 0.4. Choose one for another encoder with bench/docs_retrieval.py "
        "--dense-weights on questions of your own.",
        show_default=False,
    ),
]


def dense_weight_fusion(weight: float | None) -> Fusion | None:
    """``--dense-weight`` as a convex fusion, or None when not given."""
    if weight is None:
        return None
    from ragkit.search.fusion import Fusion

    return Fusion("convex", weight)


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout, nothing else.")]
RayOption = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="[ADDRESS]",
        help="Parse, chunk and embed on a Ray cluster (pip install 'ragkit[ray]'). Alone: "
        "$RAY_ADDRESS if set, else a local cluster; or the cluster's HOST:PORT or "
        "ray://HOST:PORT. See docs/distributed.md.",
        show_default=False,
    ),
]
RayWorkersOption = Annotated[
    int | None,
    typer.Option(
        "--ray-workers",
        min=1,
        help="Ray actors, one encoder each. Default: one per GPU of the cluster, else one.",
        show_default=False,
    ),
]


def ray_flag_values(args: list[str]) -> list[str]:
    """Give a bare ``--ray`` of ``index`` or ``eval`` its value ``local``: the next word is its
    address only when it looks like one (``auto``, ``local``, ``HOST:PORT``, ``ray://...``),
    so that ``ragkit index --ray ./docs`` indexes ./docs on a local cluster."""
    if not args or args[0] not in ("index", "eval"):
        return args
    fixed: list[str] = []
    for i, arg in enumerate(args):
        fixed.append(arg)
        if arg == "--":
            return fixed + args[i + 1 :]
        if arg == "--ray":
            following = args[i + 1] if i + 1 < len(args) else ""
            if not _looks_like_address(following):
                fixed.append("local")
    return fixed


def _looks_like_address(word: str) -> bool:
    import re

    if word in ("auto", "local") or word.startswith(("ray://", "http://", "https://")):
        return True
    return re.fullmatch(r"[\w.\-\[\]:]+:\d+", word) is not None and not word.startswith("-")


def require_utf8(value: str, what: str) -> str:
    """Refuse a command-line string holding bytes that are not UTF-8 (kept as surrogates)."""
    from ragkit.errors import InvalidInputError

    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(f"{what} is not valid UTF-8 (byte {exc.start}); pass UTF-8 text") from None
    return value


def read_lines(stream) -> list[str]:
    """Every line of a binary stream as UTF-8 text, blank lines kept; one clear error otherwise."""
    from ragkit.errors import InvalidInputError

    lines = []
    for number, raw in enumerate(stream, start=1):
        try:
            lines.append(raw.decode("utf-8").rstrip("\r\n"))
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"line {number} of stdin is not valid UTF-8 (byte {exc.start})") from None
    return lines
