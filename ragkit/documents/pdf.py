"""PDF through pypdf (optional extra ``ragkit[pdf]``); a page stands in for a line."""

from __future__ import annotations

import io
import time

from ragkit.documents.blocks import Block
from ragkit.documents.text import parse_text

PDF_HINT = "pip install 'ragkit[pdf]'"
MAX_CONTENT_BYTES = 256 * 1024 * 1024
"""Decompressed page content a PDF may hold: a few KB of compressed zeros can inflate to GBs."""
MAX_SECONDS = 60.0
"""Time one PDF may take to read; a pathological file is skipped rather than stall a run."""


class PdfTooCostly(Exception):
    """The PDF's content exceeds the size or time a single document may cost."""


def parse_pdf(
    raw: bytes, *, max_content_bytes: int = MAX_CONTENT_BYTES, max_seconds: float = MAX_SECONDS
) -> list[Block]:
    """One block per paragraph; ``start_line``/``end_line`` are page numbers for PDFs.

    Parsed from the bytes already read and hashed, never from the file again, so what is
    stored is exactly what the hash describes. The decompressed content of all pages and
    the time spent are bounded, checked page by page."""
    from pypdf import PdfReader

    started = time.monotonic()
    content = 0
    blocks: list[Block] = []
    for number, page in enumerate(PdfReader(io.BytesIO(raw)).pages, start=1):
        streams = page.get_contents()
        content += len(streams.get_data()) if streams is not None else 0
        if content > max_content_bytes:
            raise PdfTooCostly(f"more than {max_content_bytes // 2**20} MB of page content")
        for block in parse_text(page.extract_text() or ""):
            blocks.append(Block(block.text, number, number, (f"page {number}",)))
        if time.monotonic() - started > max_seconds:
            raise PdfTooCostly(f"took over {max_seconds:.0f} s to read")
    return blocks
