"""Public BEIR sets by name: ``ragkit eval scifact`` downloads, checks and caches the archive.

A dataset argument that is an existing folder is used as it is. A BEIR set's name is looked
up in ``$RAGKIT_HOME/datasets/<name>`` and, when missing or damaged, downloaded from the BEIR
authors' public server, checked (a zip whose every member passes its CRC, no path leaving
the folder, a corpus, queries and qrels inside), unpacked and recorded with a manifest under
a lock, like the model caches. Offline, the failure is one line that says what to do.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

from ragkit.encoder.cache import ragkit_home
from ragkit.evaluation.beir import DatasetError

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
BEIR_NAMES = (
    "arguana",
    "climate-fever",
    "cqadupstack",
    "dbpedia-entity",
    "fever",
    "fiqa",
    "hotpotqa",
    "msmarco",
    "nfcorpus",
    "nq",
    "quora",
    "scidocs",
    "scifact",
    "trec-covid",
    "webis-touche2020",
)
_TIMEOUT_S = 60


def resolve_dataset(spec: str | Path, *, url: str = BEIR_URL) -> Path:
    """A local BEIR folder for ``spec``: the folder itself, or a named set's cached copy."""
    path = Path(spec).expanduser()
    if path.exists():
        return path
    name = str(spec).strip().lower()
    if name not in BEIR_NAMES:
        raise DatasetError(
            f"{spec} is neither a dataset folder nor a BEIR set name ({', '.join(BEIR_NAMES)})"
        )
    from ragkit.encoder.converted import ensure_built

    folder = ragkit_home() / "datasets" / name
    source = url.format(name=name)
    ensure_built(folder, lambda out: _download(name, source, out), label=f"the BEIR set {name}")
    return folder


def _download(name: str, source: str, out: Path) -> dict:
    """Fetch the archive into a temporary file, check it, unpack its dataset folder into ``out``."""
    import urllib.error
    import urllib.request

    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        archive = Path(scratch) / f"{name}.zip"
        try:
            with (
                urllib.request.urlopen(source, timeout=_TIMEOUT_S) as response,
                open(archive, "wb") as handle,
            ):
                shutil.copyfileobj(response, handle)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DatasetError(
                f"could not download {name} from {source} ({reason}); without internet, give a "
                "local BEIR folder (corpus.jsonl, queries.jsonl, qrels/)"
            ) from None
        _unpack(archive, Path(scratch) / "unpacked", source)
        root = _dataset_root(Path(scratch) / "unpacked", source)
        for item in root.iterdir():
            shutil.move(str(item), out / item.name)
    return {"dataset": name, "source": source}


def _unpack(archive: Path, target: Path, source: str) -> None:
    """Extract a checked zip: every member's CRC passes and no member leaves ``target``."""
    damaged = DatasetError(f"the archive downloaded from {source} is damaged; nothing was kept")
    if not zipfile.is_zipfile(archive):
        raise damaged
    try:
        with zipfile.ZipFile(archive) as zipped:
            if zipped.testzip() is not None:
                raise damaged
            base = target.resolve()
            for member in zipped.namelist():
                if base not in (target / member).resolve().parents and (target / member).resolve() != base:
                    raise DatasetError(f"the archive from {source} holds a path outside its folder: {member}")
            zipped.extractall(target)
    except (zipfile.BadZipFile, OSError, EOFError):
        raise damaged from None


def _dataset_root(unpacked: Path, source: str) -> Path:
    """The folder inside the archive with the corpus, queries and qrels."""
    for corpus in sorted(unpacked.rglob("corpus.jsonl*")):
        root = corpus.parent
        if any(root.glob("queries.jsonl*")) and (root / "qrels").is_dir():
            return root
    raise DatasetError(f"the archive from {source} has no BEIR dataset (corpus.jsonl, queries.jsonl, qrels/)")
