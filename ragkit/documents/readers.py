"""Turn one file into blocks, or say in a few words why it cannot be read.

Every failure is a :class:`SkipFile` with a short reason that the indexer counts and shows,
so one odd file never stops a run and never produces garbage chunks.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from ragkit.documents.blocks import Block
from ragkit.documents.html import parse_html
from ragkit.documents.markdown import parse_markdown
from ragkit.documents.pdf import PDF_HINT, PdfTooCostly, parse_pdf
from ragkit.documents.rst import looks_like_rst, parse_rst
from ragkit.documents.text import parse_text

TEXT_PARSERS: dict[str, Callable[[str], list[Block]]] = {
    ".md": parse_markdown,
    ".markdown": parse_markdown,
    ".txt": parse_text,
    ".text": parse_text,
    ".rst": parse_rst,
    ".rest": parse_rst,
    ".html": parse_html,
    ".htm": parse_html,
}
SUPPORTED_SUFFIXES = frozenset(TEXT_PARSERS) | {".pdf"}
RST_TEXT_SUFFIXES = (".rst.txt", ".rest.txt")
"""What Sphinx names the sources it ships beside its HTML (``_sources/``): reST, always."""
PARSER_VERSION = 3
"""Raised whenever a parser change alters the blocks of some file: an index records the
version its chunks were made with and refuses to mix in chunks of another."""
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
"""Bigger files are skipped: a 50 MB log would take hours to embed and drown real documents."""


class SkipFile(Exception):
    """This file is not indexed; ``reason`` says why in a few words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def read_bytes(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    try:
        size = path.stat().st_size
        if size == 0:
            raise SkipFile("empty file")
        if size > max_bytes:
            raise SkipFile(f"too large ({size / 1e6:.0f} MB > {max_bytes / 1e6:.0f} MB)")
        return path.read_bytes()
    except FileNotFoundError:
        raise SkipFile("vanished while indexing") from None
    except PermissionError:
        raise SkipFile("permission denied") from None
    except IsADirectoryError:
        raise SkipFile("not a file") from None
    except OSError as exc:
        raise SkipFile(f"unreadable ({exc.strerror or exc})") from None


def decode(raw: bytes) -> str:
    """UTF-8 (with or without BOM), line ends made ``\n``; binary is refused before decoding."""
    if b"\x00" in raw[:8192]:
        raise SkipFile("binary content")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SkipFile(f"not valid UTF-8 (byte {exc.start})") from None
    # Lines end at \n only, as CommonMark and editors count them: a form feed, U+0085 or
    # U+2028 inside a line is text, not a break that would shift every later line number.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _text_parser(path: Path, text: str) -> Callable[..., list[Block]] | None:
    """The parser of a text file: by suffix, except that ``.rst.txt`` is reST and a ``.txt``
    that :func:`looks_like_rst` is read as reST too."""
    name = path.name.lower()
    if name.endswith(RST_TEXT_SUFFIXES):
        return parse_rst
    parser = TEXT_PARSERS.get(path.suffix.lower())
    if parser is parse_text and looks_like_rst(text):
        return parse_rst
    return parser


def parse_document(path: Path, raw: bytes, notes: list[str] | None = None) -> list[Block]:
    """Blocks of a file whose bytes were already read (so hashing and parsing agree); parts a
    reader left out on purpose are described in ``notes``."""
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        if importlib.util.find_spec("pypdf") is None:
            raise SkipFile(f"PDF support is not installed ({PDF_HINT})")
        if not raw.startswith(b"%PDF"):
            raise SkipFile("not a PDF")
        try:
            blocks = parse_pdf(raw)
        except PdfTooCostly as exc:
            raise SkipFile(f"PDF too costly to read ({exc})") from None
        except Exception as exc:  # pypdf raises many kinds on damaged files
            raise SkipFile(f"damaged PDF ({type(exc).__name__})") from None
    else:
        if suffix not in TEXT_PARSERS:
            raise SkipFile("unsupported file type")
        text = decode(raw)
        parser = _text_parser(path, text)
        try:
            blocks = parser(text, notes) if parser is parse_rst else parser(text)
        except RecursionError:
            raise SkipFile("too deeply nested to parse") from None
    if not any(block.text.strip() for block in blocks):
        raise SkipFile("no text")
    return blocks


def read_document(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> list[Block]:
    return parse_document(path, read_bytes(path, max_bytes))
