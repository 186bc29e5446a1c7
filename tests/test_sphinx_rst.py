"""Sphinx-flavoured reStructuredText: roles and directives as text, never a docutils diagnostic."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from ragkit.documents.readers import parse_document
from ragkit.documents.rst import looks_like_rst, parse_rst
from ragkit.documents.sphinx import role_text

SPHINX = Path(__file__).parent / "data" / "sphinx"
DIAGNOSTICS = (
    "Unknown interpreted text role",
    "No role entry",
    "Unknown directive type",
    "No directive entry",
    "Trying ",
    "System Message",
    "ERROR/3",
    "WARNING/2",
    "INFO/1",
    "SEVERE/4",
    "Undefined substitution",
    "Unknown target name",
    "Problem retrieving",
    "directive disabled",
    "Error in ",
    "Inline emphasis start-string without end-string",
    "Inline literal start-string without end-string",
)


def _clean(texts) -> None:
    for text in texts:
        for diagnostic in DIAGNOSTICS:
            assert diagnostic not in text, (diagnostic, text)


@pytest.mark.parametrize(
    ("role", "text", "shown"),
    [
        ("func", "os.path.join", "os.path.join"),
        ("func", "~os.path.join", "join"),
        ("meth", "!str.join", "str.join"),
        ("ref", "Title <label>", "Title"),
        ("ref", "label", "label"),
        ("doc", "Guide </guide/index>", "Guide"),
        ("pep", "8", "PEP 8"),
        ("rfc", "2616", "RFC 2616"),
        ("guilabel", "&Cancel", "Cancel"),
        ("menuselection", "File --> Quit", "File > Quit"),
        ("abbr", "LIFO (last-in, first-out)", "LIFO (last-in, first-out)"),
    ],
)
def test_role_text_reads_as_sphinx_renders(role, text, shown):
    assert role_text(role, text) == shown


def test_the_sphinx_corpus_reads_as_text_with_its_sections():
    for path in sorted(SPHINX.iterdir()):
        if path.name == "notes.txt":
            continue
        notes: list[str] = []
        blocks = parse_document(path, path.read_bytes(), notes)
        _clean(b.text for b in blocks)
        _clean(b.heading_path for b in blocks)
        text = "\n".join(b.text for b in blocks)
        assert ":func:" not in text and ":ref:" not in text and ".. " not in text
        assert len({b.heading for b in blocks}) >= 3, path.name
        assert any("not read" in note for note in notes)  # the include, noted rather than read


def test_roles_directives_and_admonitions_keep_their_content():
    blocks = parse_rst((SPHINX / "library-os.rst.txt").read_text())
    text = "\n".join(b.text for b in blocks)
    assert "os.path --- Common pathname manipulations" in text
    assert "see open, and for accessing the filesystem see the os module" in text
    assert "All of these functions accept either only bytes" in text  # note body kept
    assert "See also: The pathlib module offers high-level path objects." in text
    assert "Changed in version 3.6: Accepts a path-like object" in text
    assert "New in version 3.4: The strict flag." in text
    assert "See Normalising paths for cleaning" in text  # :ref:`Title <label>` → Title
    assert "maxdepth" not in text and "pathlib\nshutil" not in text  # toctree leaves nothing
    code = [b for b in blocks if b.text.startswith(">>> os.path.join")]
    assert code and "\n" in code[0].text  # code kept verbatim as a block
    headings = {b.heading[-1] for b in blocks if b.heading}
    assert {"Joining paths", "Splitting paths", "Normalising paths"} <= headings


def test_tutorial_directives():
    text = "\n".join(b.text for b in parse_rst((SPHINX / "tutorial.rst").read_text()))
    assert "$ pip install example" in text
    assert "Never run the installer as root. See security and 42." in text
    assert "Its body is still text." in text and "unknown-option" not in text
    assert "raw html is never read" not in text
    assert r"e^{i\pi} + 1 = 0" in text
    assert "Where the cache lives." in text and ":type:" not in text


def test_txt_is_rest_only_when_clearly_rest():
    assert not looks_like_rst((SPHINX / "notes.txt").read_text())
    assert looks_like_rst("Title\n=====\n\nSee :func:`os.path.join`.\n")
    assert looks_like_rst("One\n===\n\ntext\n\nTwo\n---\n\nmore\n")
    assert not looks_like_rst("just a line\nand :func:`x` in plain notes\n")
    assert not looks_like_rst("=====\n=====\n")
    plain = parse_document(Path("notes.txt"), (SPHINX / "notes.txt").read_bytes())
    assert {b.heading for b in plain} == {()}
    assert "-----" in "\n".join(b.text for b in plain)  # plain text is left as written
    rest = parse_document(Path("guide.txt"), b"Guide\n=====\n\nUse :func:`open`.\n\nMore\n----\n\nText.\n")
    assert {b.heading for b in rest} >= {("Guide",), ("Guide", "More")}


FRAGMENTS = [
    ":func:`os.path.join`",
    ":ref:`Title <label>`",
    ":unknownrole:`x`",
    ":py:class:`a.B`",
    ":c:func:`malloc`",
    "|undefined|",
    "`dangling`_",
    "*open emphasis",
    "``open literal",
    "`interpreted",
    "[#]_",
    "a_ b__",
    ".. _target:",
    ".. note:: body",
    ".. versionadded:: 1.0",
    ".. code-block:: python\n\n   x = 1",
    ".. literalinclude:: missing.py",
    ".. include:: /etc/passwd",
    ".. raw:: html\n\n   <b>x</b>",
    ".. image:: missing.png",
    ".. figure:: missing.png\n\n   Caption text",
    ".. unknown:: arg\n   :opt: 1\n\n   body",
    ".. csv-table:: T\n\n   a, b\n   c",
    ".. list-table::\n\n   * - a\n   * - b\n     - c",
    ".. math::\n\n   x^2",
    ".. toctree::\n\n   a\n   b",
    ".. automodule:: pkg\n   :members:",
    ".. |sub| replace:: text",
    ".. [1] A footnote.",
    "Title\n=====",
    "Short\n==",
    "=====\nOver\n=====",
    "::\n\n   literal",
    "* item\n* item2\n\n  - nested",
    "+---+---+\n| a | b |\n+---+",
    "term\n   definition",
    ">>> print(1)\n1",
    ".. py:function:: f(x)\n\n   .. deprecated:: 2.0\n      Use g.",
    "\t\tindented with tabs",
    ".. admonition::\n\n   no title",
    ".. note::",
    ".. code-block::",
    ":func:``",
]


def test_no_system_message_reaches_a_block_whatever_the_input():
    rng = random.Random(7)
    for _ in range(300):
        parts = [rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 8))]
        text = "\n\n".join(parts) if rng.random() < 0.8 else "\n".join(parts)
        blocks = parse_rst(text)
        _clean(b.text for b in blocks)
        _clean(b.heading_path for b in blocks)


@pytest.mark.parametrize("suffix", [".rst", ".rst.txt"])
def test_indexed_sphinx_sources_keep_sections_as_headings(suffix, tiny_backbone_dir, tmp_path):
    from conftest import build_tiny_index
    from ragkit.search.index import Index

    files = {
        f"library-os{suffix}": (SPHINX / "library-os.rst.txt").read_text(),
        f"tutorial{suffix}": (SPHINX / "tutorial.rst").read_text(),
    }
    index_dir = build_tiny_index(tmp_path, tiny_backbone_dir, files, chunk_tokens=24, overlap=4)
    with Index.open(index_dir) as index:
        chunks = [
            {"text": text, "heading": heading}
            for text, heading in index.db.execute("SELECT text, heading FROM chunks")
        ]
        assert index.search("join path segments", k=3)
    headings = {c["heading"] for c in chunks}
    assert len(headings) >= 6
    assert "os.path --- Common pathname manipulations > Joining paths" in headings
    _clean(c["text"] for c in chunks)


def test_a_txt_copy_of_sphinx_sources_is_found_as_rest(tmp_path):
    folder = tmp_path / "_sources" / "library"
    folder.mkdir(parents=True)
    shutil.copy(SPHINX / "library-os.rst.txt", folder / "os.path.rst.txt")
    blocks = parse_document(folder / "os.path.rst.txt", (folder / "os.path.rst.txt").read_bytes())
    assert len({b.heading for b in blocks}) >= 4
