"""Which parts of a folder of documents are held out for ``ragkit eval FOLDER``.

Training (``ragkit train --corpus``) and evaluation both read this, from below both, so the
two always agree on which sections are test material. A *unit* is what a test query points
at: a titled section, or, in a document without headings, a run of consecutive paragraphs.
"""

from __future__ import annotations

import hashlib

EVAL_SHARE = 0.2
"""The share of units held out for evaluation."""
UNIT_WORDS = 120
"""A heading-less document is cut into runs of paragraphs of about this many words."""


def held_out(document: str, heading: str, seed: int = 0) -> bool:
    """Whether the unit ``heading`` of ``document`` belongs to the evaluation."""
    digest = hashlib.sha256(f"{seed}\x00{document}\x00{heading}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < EVAL_SHARE


def paragraph_units(blocks) -> list[tuple[str, list[int]]]:
    """(key, block indices) of each run of heading-less paragraphs of about UNIT_WORDS words.

    The key (``¶1``, ``¶2``...) names the run inside its document the way a heading path
    names a section, so :func:`held_out` decides both alike.
    """
    units: list[tuple[str, list[int]]] = []
    current: list[int] = []
    words = 0
    for index, block in enumerate(blocks):
        if block.heading or block.is_heading:
            continue
        current.append(index)
        words += len(block.text.split())
        if words >= UNIT_WORDS:
            units.append((f"¶{len(units) + 1}", current))
            current, words = [], 0
    if current:
        units.append((f"¶{len(units) + 1}", current))
    return units
