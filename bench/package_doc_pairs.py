"""Heading-to-section training pairs from the READMEs of installed Python packages.

Technical documentation is what ragkit indexes most, and the question-answer sets teach
it least. Every installed distribution carries its README as the long description in its
``METADATA``; those are real documentation pages (Markdown or reStructuredText) under
their packages' own licences, readable offline. They are written out as files, read with
the same reader and heading-pair builder as ``ragkit train --corpus`` (so the pairs match
what a user's own folder gives), and saved for ``ragkit train --pairs``:

    python bench/package_doc_pairs.py --out data/

writes ``package-docs.jsonl.gz`` (and the READMEs under ``data/package-docs/``, with a
``SOURCES.tsv`` naming each package, version and licence). Sections that are release
notes, tables of contents or licence text are left out: their headings are version
numbers or boilerplate, not a description of what follows.
"""

from __future__ import annotations

import argparse
import email
import gzip
import json
import re
import sysconfig
from pathlib import Path

from ragkit.trainer.corpus import corpus_pairs, load_corpus

MIN_CHARS = 1500
SKIPPED_HEADING = re.compile(
    r"change ?log|changes|release notes|release history|history|what'?s new|news|"
    r"table of contents|contents|licen[cs]e|copyright|contribut|"
    r"acknowledg|sponsors?|badges?|\d+\.\d+",
    re.IGNORECASE,
)


def write_readmes(site: Path, folder: Path, exclude: set[str]) -> list[tuple[str, str, str]]:
    """Each distribution's long description as ``name.md`` / ``name.rst``; (name, version, licence)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for meta in sorted(site.glob("*.dist-info/METADATA")):
        message = email.message_from_string(meta.read_text(encoding="utf-8", errors="replace"))
        body = message.get_payload() or message.get("Description") or ""
        if not isinstance(body, str) or len(body) < MIN_CHARS:
            continue
        kind = (message.get("Description-Content-Type") or "").lower()
        suffix = ".md" if "markdown" in kind else ".rst"
        name = re.sub(r"[^a-z0-9._-]+", "-", str(message.get("Name", meta.parent.stem)).lower())
        if name in exclude:
            continue
        (folder / f"{name}{suffix}").write_text(body, encoding="utf-8")
        licence = message.get("License-Expression") or message.get("License") or "not stated"
        written.append((name, str(message.get("Version", "")), " ".join(str(licence).split())[:80]))
    return written


def _kept(query: str) -> bool:
    """Leave out sections whose heading path names release notes or boilerplate."""
    return not any(SKIPPED_HEADING.search(part) for part in query.split(" > "))


def doc_pairs(folder: Path) -> list[dict]:
    corpus = load_corpus(folder)
    return [
        {"query": pair.query, "positive": pair.positive, "group": pair.group}
        for pair in corpus_pairs(corpus).pairs
        if _kept(pair.query)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for package-docs.jsonl.gz")
    parser.add_argument(
        "--site-packages",
        type=Path,
        default=Path(sysconfig.get_paths()["purelib"]),
        help="where the installed distributions are (default: this interpreter's)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=["ragkit"],
        help="a distribution to leave out (repeatable); ragkit's own README is always left out, "
        "since it overlaps the docs/ questions the encoder is evaluated on",
    )
    args = parser.parse_args()
    folder = args.out / "package-docs"
    sources = write_readmes(args.site_packages, folder, set(args.exclude))
    (folder / "SOURCES.tsv").write_text(
        "package\tversion\tlicence\n" + "".join("\t".join(row) + "\n" for row in sources), encoding="utf-8"
    )
    rows = doc_pairs(folder)
    path = args.out / "package-docs.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(sources)} READMEs -> {folder}; {len(rows):,} pairs -> {path}")


if __name__ == "__main__":
    main()
