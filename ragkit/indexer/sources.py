"""Where an index's documents come from, and the name each one is stored under.

An index holds one or more *sources*: folders, or single files outside any indexed folder.
With one source a document is stored under its path relative to it (``guide/intro.md``);
with several, under the source's label first (``docs/guide/intro.md``, ``notes/todo.md``),
so names never collide and a hit says where it came from. A file source is stored under its
label alone. When a second source arrives, the first one's documents are renamed in place
(no re-embedding), and the index stays labelled from then on.

A run names paths; each one is matched against the recorded sources: the same folder (update
it, removing what is gone from it), a file or folder inside one (update that part only: a
file run never removes anything), or something new (a new source). Removals are therefore
always scoped to what the run scanned.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ragkit.documents.discover import Discovery
from ragkit.errors import InvalidInputError


@dataclass(frozen=True)
class Source:
    path: str
    """Absolute path of the folder or file."""
    label: str
    kind: str  # "folder" or "file"

    def key(self, relative: str, several: bool) -> str:
        """The stored name of the document at ``relative`` (a path inside a folder source)."""
        if self.kind == "file":
            return self.label
        return f"{self.label}/{relative}" if several else relative

    def scope(self, several: bool) -> str:
        """The prefix every stored name of this folder source starts with."""
        return f"{self.label}/" if several else ""


@dataclass
class Scan:
    """One path of a run: its files under their stored names, and what it may remove."""

    source: Source
    found: Discovery
    scope: str | None
    """Stored names starting with this prefix that the scan did not find leave the index;
    None for a file, which never removes anything."""


@dataclass
class Sources:
    """An index's sources, and whether its stored names carry source labels."""

    items: list[Source]
    labelled: bool = False
    legacy: bool = False
    """Recorded before sources were: one root folder, which may have been a single file's."""

    def to_meta(self) -> dict[str, str]:
        return {
            "sources": json.dumps([asdict(s) for s in self.items], ensure_ascii=False),
            "labelled": "1" if self.labelled else "0",
        }

    def owner(self, name: str) -> Source | None:
        """The source a stored name belongs to."""
        if not self.labelled:
            return self.items[0] if self.items else None
        for source in self.items:
            if name == source.label or name.startswith(f"{source.label}/"):
                return source
        return None


@dataclass
class SourcePlan:
    sources: Sources
    """Every source after this run."""
    scans: list[Scan]
    added: list[Source]
    relabel: Source | None
    """The one earlier source whose documents take its label as a prefix in this run."""


def recorded_sources(meta: dict) -> Sources:
    """The sources an index records; an index from before sources has one folder, its root."""
    if meta.get("sources"):
        items = [Source(**item) for item in json.loads(meta["sources"])]
        return Sources(items, meta.get("labelled") == "1")
    if meta.get("root"):
        root = Path(meta["root"])
        return Sources([Source(str(root), root.name or "root", "folder")], legacy=True)
    return Sources([])


def _label(path: Path, taken: set[str]) -> str:
    base = path.name if path.name not in ("", ".", "..") else "root"
    label, n = base, 2
    while label in taken:
        label, n = f"{base}-{n}", n + 1
    return label


def _match(path: Path, sources: list[Source]) -> tuple[Source | None, str]:
    """The recorded source ``path`` belongs to, and its path inside it ('' for itself)."""
    for source in sources:
        root = Path(source.path)
        if path == root:
            return source, ""
        if source.kind == "folder" and root in path.parents:
            return source, path.relative_to(root).as_posix()
    for source in sources:
        if path in Path(source.path).parents:
            raise InvalidInputError(
                f"{path} contains the indexed source {source.path}; index that folder in a separate "
                "index, or remove the source first (`ragkit remove`)"
            )
    return None, ""


def plan_sources(recorded: Sources, paths: list[Path], discover: Callable[[Path], Discovery]) -> SourcePlan:
    """Match each path with a recorded source (or make it a new one) and name its files."""
    sources = list(recorded.items)
    matched: list[tuple[Path, Source, str]] = []
    added: list[Source] = []
    for given in paths:
        path = Path(given).expanduser().resolve()
        if not path.exists():
            if any(Path(s.path) == path for s in sources):
                if len(sources) == 1:
                    raise InvalidInputError(
                        f"the index's only source {path} no longer exists; restore it, index something "
                        "else in its place with `ragkit index NEWPATH --index DIR --rebuild`, or delete "
                        "the index folder"
                    )
                raise InvalidInputError(
                    f"the indexed source {path} no longer exists; restore it, or drop its documents "
                    f"with `ragkit remove {path}`"
                )
            raise InvalidInputError(f"{given} does not exist")
        source, inner = _match(path, sources)
        if source is None:
            taken = {s.label for s in sources}
            source = Source(str(path), _label(path, taken), "folder" if path.is_dir() else "file")
            sources.append(source)
            added.append(source)
        if all((path, source) != (p, s) for p, s, _ in matched):
            matched.append((path, source, inner))
    labelled = recorded.labelled or len(sources) > 1
    scans = [_scan(path, source, inner, labelled, discover) for path, source, inner in matched]
    relabel = None
    if labelled and not recorded.labelled and recorded.items and recorded.items[0].kind == "folder":
        relabel = recorded.items[0]
    return SourcePlan(Sources(sources, labelled), scans, added, relabel)


def _scan(path: Path, source: Source, inner: str, several: bool, discover) -> Scan:
    if source.kind == "file" or path.is_file():
        found = discover(path)
        within = inner.rsplit("/", 1)[0] + "/" if "/" in inner else ""
        found.files = {source.key(within + name, several): file for name, file in found.files.items()}
        return Scan(source, found, None)
    # A sub-folder is seen as the whole source's walk sees it (its .gitignore files, its
    # symlink boundary), then narrowed: a part never keeps what the whole would drop.
    found = discover(Path(source.path))
    prefix = f"{inner}/" if inner else ""
    found.files = {
        source.key(rel, several): file for rel, file in found.files.items() if rel.startswith(prefix)
    }
    return Scan(source, found, source.scope(several) + prefix)


def relabelled(names: list[str], source: Source) -> dict[str, str]:
    """New stored names for a folder source's documents once the index holds several sources."""
    return {name: f"{source.label}/{name}" for name in names}
