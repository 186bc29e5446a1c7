"""Shared terminal plumbing: one stderr console for humans, stdout kept for data."""

from __future__ import annotations

import logging
import re

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

_INVISIBLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _shown(match: re.Match) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: object) -> str:
    """``text`` with every control character, direction override and undecodable byte shown
    as an escape (``\\x1b``), so a document or file name can never drive the terminal."""
    return _INVISIBLE.sub(_shown, str(text))


def safe(text: object) -> str:
    """:func:`visible`, then escaped for Rich markup: for user strings inside markup."""
    return escape(visible(text))


err = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)


def setup_logging(verbose: bool = False) -> None:
    """Route ragkit's warnings (truncation, cache rebuilds) to stderr, prettily."""
    logger = logging.getLogger("ragkit")
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        handler = RichHandler(console=err, show_time=False, show_path=False, markup=False)
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def quiet_dependencies() -> None:
    """What the terminal program silences once at start: notices users cannot act on."""
    import warnings

    # peft asks transformers for a deprecated attribute during training.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def fail(message: str, code: int = 1) -> None:
    """Print one readable error line and exit non-zero."""
    import typer

    err.print(f"[bold red]error:[/] {safe(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
