"""Plain text: paragraphs are runs of non-blank lines."""

from __future__ import annotations

from ragkit.documents.blocks import Block, squash


def parse_text(text: str) -> list[Block]:
    blocks: list[Block] = []
    start, lines = None, []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            if start is None:
                start = number
            lines.append(line)
        elif start is not None:
            blocks.append(Block(squash("\n".join(lines)), start, number - 1))
            start, lines = None, []
    if start is not None:
        blocks.append(Block(squash("\n".join(lines)), start, start + len(lines) - 1))
    return blocks
