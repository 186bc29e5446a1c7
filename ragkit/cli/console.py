"""Shared terminal plumbing: one stderr console for humans, stdout kept for data."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler

err = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)


def setup_logging(verbose: bool = False) -> None:
    """Route ragkit's warnings (truncation, cache rebuilds) to stderr, prettily."""
    logger = logging.getLogger("ragkit")
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        handler = RichHandler(console=err, show_time=False, show_path=False, markup=False)
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def fail(message: str, code: int = 1) -> None:
    """Print one readable error line and exit non-zero."""
    import typer

    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
