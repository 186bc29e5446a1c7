"""Find the files to index under a folder: supported types, not hidden, not git-ignored.

Walks with ``os.walk`` following symlinks that stay inside the root, and remembers each
directory's (device, inode) so a symlink loop is reported once instead of recursing forever.
A link that leads out of the root (to ``~/.aws/credentials``, say) is skipped unless
``follow_symlinks`` is set: indexing a folder must not publish what lies outside it.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ragkit.documents.readers import SUPPORTED_SUFFIXES
from ragkit.errors import InvalidInputError


@dataclass
class Discovery:
    """The files to read, keyed by their path relative to the root, and what was left out."""

    root: Path
    files: dict[str, Path] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    """Folders (relative to the root) that could not be listed: what they held is unknown."""


def _spec(patterns: list[str]):
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(patterns) if patterns else None


def _gitignore(folder: Path):
    path = folder / ".gitignore"
    try:
        return _spec(path.read_text(encoding="utf-8", errors="replace").splitlines())
    except OSError:
        return None


def discover(
    root: Path,
    *,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    hidden: bool = False,
    gitignore: bool = True,
    follow_symlinks: bool = False,
) -> Discovery:
    """Walk ``root`` (a folder or one file); ``include``/``exclude`` are gitignore-style globs."""
    root = Path(root).expanduser()
    if not root.exists():
        raise InvalidInputError(f"{root} does not exist")
    found = Discovery(root.resolve() if root.is_dir() else root.resolve().parent)
    walker = _Walker(found, _spec(include or []), _spec(exclude or []), hidden, gitignore, follow_symlinks)
    if root.is_file():
        walker.consider(root.resolve(), root.name)
    else:
        walker.walk()
    return found


class _Walker:
    """One walk: the rules (globs, hidden, git-ignore, symlinks) and what they decided."""

    def __init__(self, found: Discovery, includes, excludes, hidden: bool, gitignore: bool, follow: bool):
        self.found = found
        self.includes, self.excludes = includes, excludes
        self.hidden, self.gitignore, self.follow = hidden, gitignore, follow
        self.ignores: dict[str, object] = {}
        self.seen: set[tuple[int, int]] = set()

    def walk(self) -> None:
        base = self.found.root

        def unreadable(error: OSError) -> None:
            relative = Path(error.filename).relative_to(base).as_posix() if error.filename else "."
            self.found.unreadable.append(relative)
            self.found.skipped["unreadable folder"] += 1
            self.found.notes.append(f"{relative}: folder cannot be listed ({error.strerror})")

        for current, dirs, files in os.walk(base, followlinks=True, onerror=unreadable):
            folder = Path(current)
            if not self._enter(folder):
                dirs[:] = []
                continue
            dirs[:] = [name for name in sorted(dirs) if self._keep_folder(folder / name)]
            for name in sorted(files):
                self._file(folder / name)

    def _enter(self, folder: Path) -> bool:
        """Whether to walk ``folder``: once per real folder (a symlink loop is walked once)."""
        try:
            stat = folder.stat()
        except OSError:
            return False
        key = (stat.st_dev, stat.st_ino)
        relative = folder.relative_to(self.found.root).as_posix()
        if key in self.seen:
            self.found.skipped["symlink loop"] += 1
            self.found.notes.append(f"{relative}: symlink loop, not followed")
            return False
        self.seen.add(key)
        if self.gitignore:
            spec = _gitignore(folder)
            if spec is not None:
                self.ignores[relative] = spec
        return True

    def _ignored(self, relative: str, is_dir: bool) -> bool:
        for scope, spec in self.ignores.items():
            prefix = "" if scope == "." else scope + "/"
            if relative.startswith(prefix):
                inner = relative[len(prefix) :] + ("/" if is_dir else "")
                if spec.match_file(inner):
                    return True
        return False

    def _outside(self, path: Path) -> bool:
        if self.follow:
            return False
        real, root = path.resolve(), self.found.root
        return real != root and root not in real.parents

    def _left_out(self, path: Path, relative: str, is_dir: bool) -> str | None:
        """Why a walked entry is left out (None: keep it)."""
        if not self.hidden and path.name.startswith("."):
            return "hidden"
        if self.gitignore and self._ignored(relative, is_dir):
            return "git-ignored"
        if not is_dir and not path.is_file():
            return "not a regular file"
        if self._outside(path):
            return "symlink out of the folder"
        return None

    def _keep_folder(self, path: Path) -> bool:
        reason = self._left_out(path, path.relative_to(self.found.root).as_posix(), True)
        if reason is not None:
            self.found.skipped[reason] += 1
        return reason is None

    def _file(self, path: Path) -> None:
        relative = path.relative_to(self.found.root).as_posix()
        reason = self._left_out(path, relative, False)
        if reason is not None:
            self.found.skipped[reason] += 1
        else:
            self.consider(path, relative)

    def consider(self, path: Path, relative: str) -> None:
        """Keep a readable file that the globs and the supported types allow."""
        found = self.found
        try:
            relative.encode("utf-8")
        except UnicodeEncodeError:
            found.skipped["file name is not valid UTF-8"] += 1
            found.notes.append(f"{os.fsencode(path)!r}: file name is not valid UTF-8, skipped")
            return
        if self.excludes is not None and self.excludes.match_file(relative):
            found.skipped["excluded"] += 1
        elif self.includes is not None and not self.includes.match_file(relative):
            found.skipped["not included"] += 1
        elif path.suffix.lower() not in SUPPORTED_SUFFIXES:
            found.skipped["unsupported file type"] += 1
        else:
            found.files[relative] = path
