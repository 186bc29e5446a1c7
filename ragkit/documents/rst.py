"""reStructuredText through docutils' own parser: sections give the heading path.

Sphinx's roles and directives are read as their text (:mod:`ragkit.documents.sphinx`), and
no docutils diagnostic ever reaches a block. ``looks_like_rst`` decides whether a ``.txt``
file is reST: Sphinx ships sources as ``*.rst.txt``, but plenty of plain notes end in ``.txt``.
"""

from __future__ import annotations

import itertools
import re

from ragkit.documents.blocks import Block, squash
from ragkit.documents.sphinx import sphinx_markup, strip_diagnostics

_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+:._<>!$%&,;?@\\|/])\1{2,}\s*$")
_EXPLICIT = re.compile(r"^\.\. [\w:-]+::|:[\w:+-]+:`[^`]+`", re.MULTILINE)


def adorned_titles(text: str) -> int:
    """Section titles underlined (or over- and underlined) as reST requires."""
    lines = text.split("\n")
    count = 0
    for above, line in itertools.pairwise(lines):
        title = above.strip()
        if (
            title
            and not _ADORNMENT.match(above)
            and _ADORNMENT.match(line)
            and len(line.rstrip()) >= len(title)
        ):
            count += 1
    return count


def looks_like_rst(text: str) -> bool:
    """Clearly reST: two underlined section titles, or one and a directive or role."""
    titles = adorned_titles(text)
    return titles >= 2 or (titles >= 1 and _EXPLICIT.search(text) is not None)


_SETTINGS = {
    "report_level": 5,  # never print parser warnings into the user's terminal
    "halt_level": 5,
    "file_insertion_enabled": False,  # `.. include::` must not read other files
    "raw_enabled": False,
    "output_encoding": "unicode",
}


def parse_rst(text: str, notes: list[str] | None = None) -> list[Block]:
    """Blocks of a reST document; what was left out (an include, say) is added to ``notes``."""
    from docutils import nodes
    from docutils.core import publish_doctree

    with sphinx_markup():
        tree = publish_doctree(text, settings_overrides={**_SETTINGS, "ragkit_notes": notes})
    strip_diagnostics(tree)
    total = max(1, len(text.split("\n")))
    blocks: list[Block] = []

    def heading_of(node) -> tuple[str, ...]:
        titles = []
        parent = node.parent
        while parent is not None:
            if isinstance(parent, nodes.section) and parent.children and isinstance(parent[0], nodes.title):
                titles.append(squash(parent[0].astext()))
            parent = parent.parent
        if isinstance(tree.children[0] if tree.children else None, nodes.title):
            titles.append(squash(tree[0].astext()))
        return tuple(reversed(titles))

    kinds = (
        nodes.paragraph,
        nodes.literal_block,
        nodes.math_block,
        nodes.title,
        nodes.bullet_list,
        nodes.enumerated_list,
        nodes.definition_list,
        nodes.table,
    )
    for node in tree.findall(lambda n: isinstance(n, kinds)):
        if any(
            isinstance(p, (nodes.bullet_list, nodes.enumerated_list, nodes.definition_list, nodes.table))
            for p in _ancestors(node)
        ):
            continue  # lists and tables are taken whole
        verbatim = isinstance(node, (nodes.literal_block, nodes.math_block))
        body = node.astext().strip() if verbatim else squash(node.astext())
        if not body:
            continue
        newlines = node.astext().count("\n")
        if isinstance(node, nodes.title):
            end = node.line or 1  # docutils reports a title at its underline
            start = max(1, end - 1)
        else:
            start = node.line or _first_line(node) or 1
            end = start + newlines
        start, end = min(start, total), min(max(start, end), total)
        if isinstance(node, nodes.title):
            path = heading_of(node.parent) + ((body,) if not isinstance(node.parent, nodes.document) else ())
            if isinstance(node.parent, nodes.document):
                path = (body,)
            blocks.append(Block(body, start, end, path, is_heading=True))
        else:
            blocks.append(Block(body, start, end, heading_of(node)))
    return blocks


def _ancestors(node):
    parent = node.parent
    while parent is not None:
        yield parent
        parent = parent.parent


def _first_line(node) -> int | None:
    for child in node.findall():
        if getattr(child, "line", None):
            return child.line
    return None
