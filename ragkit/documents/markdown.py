"""Markdown through markdown-it-py (CommonMark): its tokens carry source line maps."""

from __future__ import annotations

from ragkit.documents.blocks import Block, HeadingTrail, squash

_LEAF_BLOCKS = {"paragraph_open", "fence", "code_block", "html_block", "table_open"}


def parse_markdown(text: str) -> list[Block]:
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark").enable("table")
    tokens = parser.parse(text)
    lines = text.split("\n")
    trail = HeadingTrail()
    blocks: list[Block] = []
    depth_in_list = 0
    for index, token in enumerate(tokens):
        if token.type in ("bullet_list_open", "ordered_list_open", "blockquote_open"):
            # A whole list (or quote) is one block: its items rarely stand alone.
            if depth_in_list == 0 and token.map:
                start, end = _trim(lines, *token.map)
                body = squash("\n".join(lines[start:end]))
                if body:
                    blocks.append(Block(body, start + 1, end, trail.path))
            depth_in_list += 1
        elif token.type in ("bullet_list_close", "ordered_list_close", "blockquote_close"):
            depth_in_list -= 1
        elif depth_in_list:
            continue
        elif token.type == "heading_open" and token.map:
            title = squash(tokens[index + 1].content)
            level = int(token.tag[1:])
            path = trail.enter(level, title)
            start, end = token.map
            if title:
                blocks.append(Block(title, start + 1, end, path, is_heading=True))
        elif token.type in _LEAF_BLOCKS and token.map:
            start, end = _trim(lines, *token.map)
            if token.type == "paragraph_open":
                body = squash(tokens[index + 1].content)
            elif token.type in ("fence", "code_block"):
                body = token.content.strip()
            else:
                body = squash("\n".join(lines[start:end]))
            if body:
                blocks.append(Block(body, start + 1, end, trail.path))
    return blocks


def _trim(lines: list[str], start: int, end: int) -> tuple[int, int]:
    """markdown-it's line maps include trailing blank lines; a source range should not."""
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return start, end
