"""The unit every parser produces: a block of text, where it came from, under which heading."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Block:
    """A paragraph-sized piece of a document.

    ``start_line``/``end_line`` are 1-based and inclusive, so ``path:start-end`` points an
    editor at the source; ``heading`` is the path of section titles above the block, e.g.
    ``("Install", "GPU")``. ``is_heading`` marks a title itself, where chunks prefer to break.
    """

    text: str
    start_line: int
    end_line: int
    heading: tuple[str, ...] = ()
    is_heading: bool = False

    @property
    def heading_path(self) -> str:
        return " > ".join(self.heading)


def squash(text: str) -> str:
    """Collapse runs of whitespace, so token counts and snippets do not depend on layout."""
    return " ".join(text.split())


class HeadingTrail:
    """Tracks the current heading path as titles of various levels go by."""

    def __init__(self) -> None:
        self._levels: list[tuple[int, str]] = []

    def enter(self, level: int, title: str) -> tuple[str, ...]:
        while self._levels and self._levels[-1][0] >= level:
            self._levels.pop()
        self._levels.append((level, title))
        return self.path

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(title for _, title in self._levels)
