"""PDF through pypdf (optional extra ``ragkit[pdf]``); a page stands in for a line."""

from __future__ import annotations

import io

from ragkit.documents.blocks import Block
from ragkit.documents.text import parse_text

PDF_HINT = "pip install 'ragkit[pdf]'"


def parse_pdf(raw: bytes) -> list[Block]:
    """One block per paragraph; ``start_line``/``end_line`` are page numbers for PDFs.

    Parsed from the bytes already read and hashed, never from the file again, so what is
    stored is exactly what the hash describes."""
    from pypdf import PdfReader

    blocks: list[Block] = []
    for number, page in enumerate(PdfReader(io.BytesIO(raw)).pages, start=1):
        for block in parse_text(page.extract_text() or ""):
            blocks.append(Block(block.text, number, number, (f"page {number}",)))
    return blocks
