"""HTML through BeautifulSoup (the stdlib parser): visible text only, with source lines."""

from __future__ import annotations

from ragkit.documents.blocks import Block, HeadingTrail, squash

_HEADINGS = {f"h{i}": i for i in range(1, 7)}
_BLOCKS = {"p", "li", "pre", "blockquote", "td", "th", "dd", "dt", "figcaption", "caption"}
_INVISIBLE = {"script", "style", "noscript", "template", "head"}


def parse_html(text: str) -> list[Block]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    for tag in soup.find_all(_INVISIBLE):
        tag.decompose()
    trail = HeadingTrail()
    blocks: list[Block] = []
    for element in soup.find_all(list(_HEADINGS) + list(_BLOCKS) + ["div"]):
        name = element.name
        if name == "div" and element.find(list(_HEADINGS) + list(_BLOCKS) + ["div"]):
            continue  # a container: its children are visited on their own
        if name != "div" and element.find_parent(list(_BLOCKS - {"td", "th"})):
            continue  # nested inside a block already taken whole (li inside li, p in li)
        body = squash(element.get_text(" "))
        if not body:
            continue
        line = element.sourceline or 1
        end = line + max(0, str(element).count("\n"))
        if name in _HEADINGS:
            blocks.append(Block(body, line, end, trail.enter(_HEADINGS[name], body), is_heading=True))
        else:
            blocks.append(Block(body, line, end, trail.path))
    return blocks
