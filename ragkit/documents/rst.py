"""reStructuredText through docutils' own parser: sections give the heading path."""

from __future__ import annotations

from ragkit.documents.blocks import Block, squash

_SETTINGS = {
    "report_level": 5,  # never print parser warnings into the user's terminal
    "halt_level": 5,
    "file_insertion_enabled": False,  # `.. include::` must not read other files
    "raw_enabled": False,
    "output_encoding": "unicode",
}


def parse_rst(text: str) -> list[Block]:
    from docutils import nodes
    from docutils.core import publish_doctree

    tree = publish_doctree(text, settings_overrides=_SETTINGS)
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
        body = squash(node.astext()) if not isinstance(node, nodes.literal_block) else node.astext().strip()
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
