"""bench/package_doc_pairs.py: heading pairs from installed READMEs, boilerplate and ragkit left out."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "the words of this section say what it is about and how the library is used in practice. " * 30


def _distribution(site: Path, name: str, body: str, content_type: str = "text/markdown") -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    headers = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\nLicense-Expression: MIT\n"
        f"Description-Content-Type: {content_type}\n\n"
    )
    (info / "METADATA").write_text(headers + body)


def test_pairs_come_from_readme_headings_without_release_notes_or_ragkit(tmp_path):
    site = tmp_path / "site"
    readme = (
        f"# widgets\n\n{SECTION}\n\n## Quickstart\n\n{SECTION} quick\n\n## Changelog\n\n{SECTION} log\n\n"
        f"### 1.2.0\n\n{SECTION} fixed\n\n## Plugins\n\n{SECTION} plugins\n"
    )
    _distribution(site, "widgets", readme)
    _distribution(site, "ragkit", readme.replace("widgets", "ragkit"))
    _distribution(site, "tiny", "# tiny\n\nshort\n")
    out = tmp_path / "data"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "package_doc_pairs.py"),
            "--out",
            str(out),
            "--site-packages",
            str(site),
        ],
        check=True,
        capture_output=True,
    )
    with gzip.open(out / "package-docs.jsonl.gz", "rt") as lines:
        rows = [json.loads(line) for line in lines]
    queries = sorted(row["query"] for row in rows)
    assert queries == ["widgets", "widgets > Plugins", "widgets > Quickstart"], queries
    assert all(row["group"] == next(iter({r["group"] for r in rows})) for row in rows)
    plugins = next(row for row in rows if row["query"] == "widgets > Plugins")
    assert plugins["positive"].endswith("plugins")
    sources = (out / "package-docs" / "SOURCES.tsv").read_text().splitlines()
    assert sources == ["package\tversion\tlicence", "widgets\t1.0\tMIT"]
