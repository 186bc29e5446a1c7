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
    includes, excludes = _spec(include or []), _spec(exclude or [])

    def outside(path: Path) -> bool:
        if follow_symlinks:
            return False
        real = path.resolve()
        return real != found.root and found.root not in real.parents

    def consider(path: Path, relative: str) -> None:
        try:
            relative.encode("utf-8")
        except UnicodeEncodeError:
            found.skipped["file name is not valid UTF-8"] += 1
            found.notes.append(f"{os.fsencode(path)!r}: file name is not valid UTF-8, skipped")
            return
        if excludes is not None and excludes.match_file(relative):
            found.skipped["excluded"] += 1
        elif includes is not None and not includes.match_file(relative):
            found.skipped["not included"] += 1
        elif path.suffix.lower() not in SUPPORTED_SUFFIXES:
            found.skipped["unsupported file type"] += 1
        else:
            found.files[relative] = path

    if root.is_file():
        consider(root.resolve(), root.name)
        return found

    seen: set[tuple[int, int]] = set()
    ignores: dict[str, object] = {}
    base = found.root
    for current, dirs, files in os.walk(base, followlinks=True):
        folder = Path(current)
        try:
            stat = folder.stat()
        except OSError:
            dirs[:] = []
            continue
        key = (stat.st_dev, stat.st_ino)
        relative_folder = folder.relative_to(base).as_posix()
        if key in seen:
            found.skipped["symlink loop"] += 1
            found.notes.append(f"{relative_folder}: symlink loop, not followed")
            dirs[:] = []
            continue
        seen.add(key)
        if gitignore:
            spec = _gitignore(folder)
            if spec is not None:
                ignores[relative_folder] = spec

        def ignored(relative: str, is_dir: bool) -> bool:
            for scope, spec in ignores.items():
                prefix = "" if scope == "." else scope + "/"
                if relative.startswith(prefix):
                    inner = relative[len(prefix) :] + ("/" if is_dir else "")
                    if spec.match_file(inner):
                        return True
            return False

        kept_dirs = []
        for name in sorted(dirs):
            relative = (folder / name).relative_to(base).as_posix()
            if not hidden and name.startswith("."):
                found.skipped["hidden"] += 1
            elif gitignore and ignored(relative, True):
                found.skipped["git-ignored"] += 1
            elif outside(folder / name):
                found.skipped["symlink out of the folder"] += 1
            else:
                kept_dirs.append(name)
        dirs[:] = kept_dirs
        for name in sorted(files):
            path = folder / name
            relative = path.relative_to(base).as_posix()
            if not hidden and name.startswith("."):
                found.skipped["hidden"] += 1
            elif gitignore and ignored(relative, False):
                found.skipped["git-ignored"] += 1
            elif not path.is_file():
                found.skipped["not a regular file"] += 1
            elif outside(path):
                found.skipped["symlink out of the folder"] += 1
            else:
                consider(path, relative)
    return found
