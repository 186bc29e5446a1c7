"""Document readers: each format's blocks, line ranges and heading paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragkit.documents.readers import SkipFile, parse_document, read_document


def _make_pdf(path: Path, pages: list[str]) -> None:
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    for text in pages:
        page = writer.add_blank_page(612, 792)
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode())
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
    with open(path, "wb") as handle:
        writer.write(handle)


def test_markdown_blocks_lines_and_headings(tmp_path):
    path = tmp_path / "a.md"
    path.write_text("# Install\n\nRun pip.\n\n## GPU\n\n- one\n- two\n\n```\ncode here\n```\n")
    blocks = read_document(path)
    assert [(b.text, b.start_line, b.end_line, b.heading_path, b.is_heading) for b in blocks] == [
        ("Install", 1, 1, "Install", True),
        ("Run pip.", 3, 3, "Install", False),
        ("GPU", 5, 5, "Install > GPU", True),
        ("- one - two", 7, 8, "Install > GPU", False),
        ("code here", 10, 12, "Install > GPU", False),
    ]


def test_rst_and_html_headings(tmp_path):
    rst = tmp_path / "a.rst"
    rst.write_text("Title\n=====\n\nIntro text\non two lines.\n\nInstall\n-------\n\nRun pip.\n")
    assert [(b.text, b.start_line, b.heading_path) for b in read_document(rst) if not b.is_heading] == [
        ("Intro text on two lines.", 4, "Title"),
        ("Run pip.", 10, "Title > Install"),
    ]
    html = tmp_path / "a.html"
    html.write_text(
        "<html><body>\n<h1>Top</h1>\n<p>first &amp; only</p>\n"
        "<style>x{}</style>\n<h2>Sub</h2>\n<li>item</li>\n</body></html>"
    )
    assert [(b.text, b.start_line, b.heading_path) for b in read_document(html)] == [
        ("Top", 2, "Top"),
        ("first & only", 3, "Top"),
        ("Sub", 5, "Top > Sub"),
        ("item", 6, "Top > Sub"),
    ]


def test_pdf_pages_become_lines(tmp_path):
    path = tmp_path / "a.pdf"
    _make_pdf(path, ["the cat sat on the mat", "stock market fell"])
    blocks = read_document(path)
    assert [(b.text, b.start_line, b.heading_path) for b in blocks] == [
        ("the cat sat on the mat", 1, "page 1"),
        ("stock market fell", 2, "page 2"),
    ]
    # The bytes read (and hashed) are what is parsed, even if the file changes meanwhile.
    raw = path.read_bytes()
    _make_pdf(path, ["something else entirely"])
    assert [b.text for b in parse_document(path, raw)] == ["the cat sat on the mat", "stock market fell"]
    fake = tmp_path / "fake.pdf"
    fake.write_text("not a pdf at all")
    with pytest.raises(SkipFile, match="not a PDF"):
        read_document(fake)
