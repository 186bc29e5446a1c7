"""``ragkit index``: bring an index in line with a folder, touching only what changed.

Order of work, chosen so a kill -9 at any moment is harmless: documents are replaced in
SQLite transactions (each document entirely old or entirely new), and only then is the FAISS
file rebuilt from the stored vectors and renamed into place. If the process dies in between,
the next open sees FAISS ids that disagree with the chunk ids and repairs from SQLite; the
next run finds the remaining files still changed and finishes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ragkit.documents.discover import Discovery, discover
from ragkit.documents.readers import DEFAULT_MAX_BYTES, PARSER_VERSION, SkipFile, parse_document, read_bytes
from ragkit.encoder.document_precision import document_dtype, load_document_encoder
from ragkit.errors import InvalidInputError
from ragkit.fusion_settings import check_fusion_settings
from ragkit.indexer import folder as index_folder
from ragkit.indexer import store, vectors
from ragkit.indexer.chunking import Chunker, default_overlap, token_chunker
from ragkit.indexer.locking import index_lock
from ragkit.indexer.sources import SourcePlan, Sources, plan_sources, recorded_sources, relabelled

log = logging.getLogger("ragkit")

GROUP_CHUNKS = 256
"""Chunks encoded per group: big enough to batch well, small enough to commit often."""


@dataclass
class IndexOptions:
    """What ``ragkit index`` was asked to do."""

    source: Path | list[Path] | None
    """Folders or files to index; None or empty: every source the index records."""
    index_dir: Path
    encoder: str = "default"
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    chunk_tokens: int = 256
    overlap: int | None = None
    """Tokens shared by consecutive chunks; None: an eighth of ``chunk_tokens``, at most 32."""
    index_type: str | None = None
    """None: what this index was built with (``auto`` for a new one)."""
    fusion: dict | None = None
    """How hybrid search over this index fuses its two rankings (a ``Fusion`` or its
    ``settings()``, :mod:`ragkit.fusion_settings`); None: what this index was told before,
    a rebuild included, else the fusion the encoder states."""
    rebuild: bool = False
    dry_run: bool = False
    follow_symlinks: bool = False
    group_chunks: int = GROUP_CHUNKS
    on_group: Callable[[IndexSummary], None] | None = None
    """Called after each committed group of chunks with the run's summary so far."""
    max_bytes: int = DEFAULT_MAX_BYTES
    device: str | None = None
    dtype: str | None = "auto"
    """Document precision: ``auto`` (bf16 where the CPU has it natively and it passes the
    retrieval check of :mod:`ragkit.encoder.document_precision`, else fp32), or
    ``Encoder.from_pretrained``'s ``dtype`` as asked (None: float32 on a CPU)."""
    wait_seconds: float = 0.0
    show_progress: bool | None = None
    ray: str | None = None
    """Parse, chunk and embed on a Ray cluster: its address, or ``local`` (see
    :mod:`ragkit.indexer.distributed`); None embeds in this process."""
    ray_workers: int | None = None
    """Ray actors, one encoder each; None: one per GPU, else one."""
    ray_inflight_mb: float = 64.0
    """Most MB of file bytes the Ray driver holds and ships at once: its memory stays flat
    however many files change (at least one file is always in flight)."""
    ray_on_batch: Callable[[list[str]], None] | None = None
    """Called inside a Ray worker with each batch's document names, before it is embedded."""

    def __post_init__(self) -> None:
        if self.overlap is None:
            self.overlap = default_overlap(self.chunk_tokens)
        if self.fusion is not None:
            given = self.fusion.settings() if hasattr(self.fusion, "settings") else self.fusion
            self.fusion = check_fusion_settings(given, "IndexOptions.fusion")


@dataclass
class IndexSummary:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    removed_reasons: dict[str, str] = field(default_factory=dict)
    """Why a document left the index when its file is still there (empty, binary, too large)."""
    unchanged: int = 0
    skipped: Counter = field(default_factory=Counter)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    left_out: Counter = field(default_factory=Counter)
    """Parts of indexed files a reader left out on purpose (an include it never reads), by kind."""
    chunks_written: int = 0
    chunks_total: int = 0
    tokens: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: Counter())
    index_spec: dict = field(default_factory=dict)
    would_index: list[str] = field(default_factory=list)
    sources_added: list[str] = field(default_factory=list)
    """New sources this run, as 'label (path)'."""
    document_dtypes: set[str] = field(default_factory=set)
    """The precisions that embedded this run's documents (several workers may differ)."""

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def _sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _paths(options: IndexOptions) -> list[Path]:
    if options.source is None:
        return []
    given = options.source if isinstance(options.source, list) else [options.source]
    return [Path(p).expanduser() for p in given]


def _recorded(target: Path, rebuild: bool = False) -> Sources:
    """The index's sources; a rebuild of a damaged database starts from the paths given."""
    if not (target / store.DB_NAME).is_file():
        return Sources([])
    try:
        db = store.connect(target, readonly=True)
    except InvalidInputError:
        if rebuild:
            return Sources([])
        raise
    try:
        return recorded_sources(store.get_meta(db))
    finally:
        db.conn.close()


def _plan(options: IndexOptions, target: Path, recorded: Sources) -> SourcePlan:
    """Every path matched with a source and discovered, before anything is written."""
    paths = _paths(options)
    if not paths and recorded.legacy:
        raise InvalidInputError(
            f"the index at {target} predates recorded sources; name its folder once "
            f"(`ragkit index {recorded.items[0].path}`) and later runs can refresh it without one"
        )
    if options.rebuild or not paths:  # a rebuild re-embeds every recorded source, plus any new path
        kept = [Path(s.path) for s in recorded.items]
        if options.rebuild and paths:  # recorded sources that are gone are dropped, not re-read
            gone = [p for p in kept if not p.exists()]
            for path in gone:
                log.info("source %s no longer exists: the rebuilt index leaves it out", path)
            kept = [p for p in kept if p.exists()]
        paths = kept + paths
    if options.rebuild:
        recorded = Sources([])
    if not paths:
        raise InvalidInputError(f"name a folder or file to index (the index at {target} has no sources yet)")

    def find(path: Path) -> Discovery:
        return discover(
            path, include=options.include, exclude=options.exclude, follow_symlinks=options.follow_symlinks
        )

    plan = plan_sources(recorded, paths, find)
    for scan in plan.scans:
        if scan.source in plan.added and not scan.found.files:
            reasons = ", ".join(f"{n} {why}" for why, n in scan.found.skipped.most_common()) or "it is empty"
            raise InvalidInputError(
                f"nothing to index in {scan.source.path}: no supported documents ({reasons})"
            )
    return plan


def build_index(options: IndexOptions, progress=None) -> IndexSummary:
    """Index ``options.source`` (or every recorded source) into ``options.index_dir``."""
    if options.ray and not options.dry_run:
        from ragkit.indexer import distributed

        with distributed.session(options.ray):  # joined before anything is written
            return _build_index(options, progress)
    return _build_index(options, progress)


def _build_index(options: IndexOptions, progress) -> IndexSummary:
    target = Path(options.index_dir).expanduser()
    if target.is_symlink():  # a rebuild swaps the folder the link points to, never the link
        target = target.resolve()
    for path in _paths(options) or [None]:
        index_folder.claim(target, path, dry_run=True)
    recorded = _recorded(target, options.rebuild)
    plan = _plan(options, target, recorded)
    created = not target.exists()
    for source in plan.sources.items:
        index_folder.claim(target, Path(source.path), dry_run=True)
    index_folder.claim(target)
    locked = False
    try:
        with index_lock(target, options.wait_seconds):
            locked = True
            now = _recorded(target, options.rebuild)
            if recorded != now:  # another run changed the sources meanwhile
                plan = _plan(options, target, now)
            if options.rebuild and not options.dry_run:
                return _rebuild(options, plan, target, progress)
            summary = _update(options, plan, target, progress)
            if created and (options.dry_run or not summary.chunks_total):
                _remove_if_unused(target)  # nothing indexable: leave no empty index behind
    except Exception:
        if created and locked:
            _remove_if_unused(target)  # made by this run, which left nothing usable in it
        raise
    return summary


def _unreadable_prefixes(plan: SourcePlan) -> tuple[str, ...]:
    """Stored-name prefixes of folders that could not be listed: their documents are kept."""
    prefixes = []
    for scan in plan.scans:
        labelled = plan.sources.labelled
        for folder in scan.found.unreadable:
            inner = "" if folder == "." else f"{folder}/"
            prefixes.append((f"{scan.source.label}/" if labelled else "") + inner)
    return tuple(prefixes)


def _carried_settings(options: IndexOptions, before: dict) -> IndexOptions:
    """What a rebuild keeps of the old index's own choices, where this run names none."""
    import json

    index_type = options.index_type or before.get("index_type_requested")
    fusion = options.fusion
    if fusion is None and before.get("fusion"):
        try:
            fusion = json.loads(before["fusion"])
        except ValueError:
            fusion = None  # unreadable: the rebuild falls back to the encoder's own
    try:
        return dataclasses.replace(options, index_type=index_type, fusion=fusion)
    except InvalidInputError:
        return dataclasses.replace(options, index_type=index_type)


def _remove_if_unused(target: Path) -> None:
    """Delete an index folder this run created if it holds no document and nothing foreign."""
    if index_folder.foreign_files(target) or index_folder.has_documents(target):
        return
    shutil.rmtree(target, ignore_errors=True)


def _rebuild(options: IndexOptions, plan: SourcePlan, target: Path, progress) -> IndexSummary:
    """Build a complete new index beside the old one, then swap: the old one stays usable."""
    index_folder.check_swappable(target)
    fresh = index_folder.fresh_sibling(target)
    if (target / store.DB_NAME).is_file():
        try:
            before = store.get_meta(store.connect(target, readonly=True))
        except InvalidInputError:
            before = {}  # a damaged database: the rebuild starts from defaults
        options = _carried_settings(options, before)
    try:
        summary = _update(options, plan, fresh, progress, fresh_root=True)
        index_folder.swap_in(fresh, target)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return summary


def _load_encoder(options: IndexOptions):
    # The fastest verified way to run this encoder here (the OpenVINO engine where it
    # applies, bf16 where it passes the retrieval check); the fingerprint is the torch model's.
    return load_document_encoder(options.encoder, device=options.device, dtype=options.dtype)


def _document_precision(meta: dict, encoder, summary: IndexSummary, fresh_root: bool) -> str:
    """The index's record of what embedded its documents: every precision seen since the
    last full build (more than one: the index mixes them), and this run's choice."""
    import json

    recorded = json.loads(meta.get("document_precision") or "{}")
    dtypes = set(summary.document_dtypes)
    if not fresh_root:
        dtypes |= set(recorded.get("dtypes", []))
    choice = encoder.precision_choice
    choice = choice.to_dict() if choice is not None else {"dtype": document_dtype(encoder)}
    return json.dumps({"dtypes": sorted(dtypes), "mixed": len(dtypes) > 1, "last_run": choice})


def _update(
    options: IndexOptions, plan: SourcePlan, target: Path, progress, fresh_root: bool = False
) -> IndexSummary:
    """Plan (what changed), apply (embed and store it), finish (vectors and settings)."""
    summary = IndexSummary()
    files: dict[str, Path] = {}
    for scan in plan.scans:
        summary.skipped.update(scan.found.skipped)
        files.update(scan.found.files)
    summary.sources_added = [f"{s.label} ({s.path})" for s in plan.added]
    started = time.perf_counter()
    db = store.connect(target)
    if not fresh_root:
        store.check_integrity(db, target)
    store.create_schema(db)
    meta = store.get_meta(db)
    encoder = _load_encoder(options)
    summary.seconds["loading the encoder"] = time.perf_counter() - started
    if meta.get("encoder_fingerprint") and meta["encoder_fingerprint"] != encoder.fingerprint:
        raise InvalidInputError(
            f"the index at {target} was built with encoder {meta.get('encoder', '?')} "
            f"(fingerprint {meta['encoder_fingerprint']}); this run uses {options.encoder} "
            f"({encoder.fingerprint}). Use --rebuild to re-embed everything, or the original --encoder"
        )
    _check_settings(options, meta, encoder, target, fresh_root)
    chunker = _chunker(encoder, options)
    stored = _record_sources(db, plan, options.dry_run)
    pending = _scan(db, files, stored, options, summary)
    # A run over one file never removes other documents; a folder run removes what is gone from it.
    scopes = [scan.scope for scan in plan.scans if scan.scope is not None]
    unknown = _unreadable_prefixes(plan)
    removed = sorted(
        n
        for n in stored
        if n not in files and any(n.startswith(p) for p in scopes) and not n.startswith(unknown or ("\x00",))
    )
    if options.dry_run:
        summary.would_index = [p[0] for p in pending]
        summary.removed = sorted({*removed, *summary.removed_reasons})
        return summary
    embed = _embed_on_ray if options.ray else _embed
    embed(db, encoder, chunker, pending, stored, options, summary, progress)
    removed += [r for r in summary.removed_reasons if r not in removed]
    if removed:
        with db.atomic():
            for relative in removed:
                store.remove_document(db, relative)
        summary.removed = sorted(removed)
    _finish(db, target, options, meta, encoder, chunker, summary, fresh_root)
    db.conn.close()
    return summary


def _record_sources(db, plan: SourcePlan, dry_run: bool) -> dict:
    """Record this run's sources (renaming the first one's documents when a second arrives)
    in one transaction, so an interrupted run leaves names and sources in agreement."""
    stored = store.documents(db)
    names = relabelled(list(stored), plan.relabel) if plan.relabel is not None else {}
    if not dry_run:
        with db.atomic():
            store.rename_documents(db, names)
            store.set_meta(db, plan.sources.to_meta())
    return {names.get(name, name): document for name, document in stored.items()}


def _chunker(encoder, options: IndexOptions) -> Chunker:
    return token_chunker(encoder, options.chunk_tokens, options.overlap)


def _scan(db, files: dict[str, Path], stored: dict, options: IndexOptions, summary) -> list[tuple]:
    """Files to (re-)embed: size+mtime first, the content hash when those differ."""
    phase = time.perf_counter()
    pending: list[tuple[str, Path, str, os.stat_result]] = []
    for relative, path in files.items():
        try:
            stat = path.stat()
        except OSError:
            summary.skipped["vanished while indexing"] += 1
            continue
        old = stored.get(relative)
        if not os.access(path, os.R_OK):
            _skip(summary, relative, "permission denied", relative in stored)
            continue
        if old is not None and old.size == stat.st_size and old.mtime == stat.st_mtime:
            summary.unchanged += 1
            continue
        try:
            raw = read_bytes(path, options.max_bytes)
        except SkipFile as skip:
            _skip(summary, relative, skip.reason, relative in stored)
            continue
        digest = _sha256(raw)
        if old is not None and old.hash == digest:
            if not options.dry_run:
                with db.atomic():
                    store.touch_document(db, relative, stat.st_mtime)
            summary.unchanged += 1
            continue
        pending.append((relative, path, digest, stat))  # bytes are read again when embedded
    summary.seconds["scanning"] = time.perf_counter() - phase
    return pending


def _read_pending(entry: tuple, options: IndexOptions) -> tuple[bytes, str, os.stat_result]:
    """A pending file's bytes, digest and stat as they are now (raises SkipFile).

    The scan keeps only digests, so memory does not grow with what a run embeds; a file
    that changed since it was scanned is embedded as it is now, under its new digest.
    """
    path = entry[1]
    try:
        stat = path.stat()
    except OSError:
        raise SkipFile("vanished while indexing") from None
    raw = read_bytes(path, options.max_bytes)
    return raw, _sha256(raw), stat


def _embed(db, encoder, chunker, pending, stored, options: IndexOptions, summary, progress) -> None:
    """Parse, chunk, embed and store the pending files, a group of chunks per transaction."""
    if progress is not None:
        progress.start(len(pending))
    group: list[tuple] = []
    group_chunks = 0
    for entry in pending:
        relative, path = entry[0], entry[1]
        phase = time.perf_counter()
        notes: list[str] = []
        try:
            raw, digest, stat = _read_pending(entry, options)
            chunks = chunker.split(parse_document(path, raw, notes))
            summary.left_out.update(f"{note.split(' ', 1)[0]} not read" for note in notes)
            for note in notes:
                log.info("%s: %s", relative, note)
            if not chunks:
                raise SkipFile("no text")
        except SkipFile as skip:
            _skip(summary, relative, skip.reason, relative in stored)
            if progress is not None:
                progress.advance_file()
            continue
        finally:
            summary.seconds["parsing and chunking"] += time.perf_counter() - phase
        group.append((relative, digest, stat, chunks, relative in stored))
        group_chunks += len(chunks)
        if group_chunks >= options.group_chunks:
            _write_group(db, encoder, group, summary, progress, options.on_group)
            group, group_chunks = [], 0
    if group:
        _write_group(db, encoder, group, summary, progress, options.on_group)


def _finish(db, target, options, meta, encoder, chunker, summary, fresh_root: bool) -> None:
    """Rebuild the vector file when anything changed, then record the index's settings."""
    import json

    phase = time.perf_counter()
    count_chunks = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
    requested = options.index_type or meta.get("index_type_requested") or "auto"
    spec = vectors.choose(requested, count_chunks, encoder.dimension)
    recorded = meta.get("index_spec")
    generation = int(meta.get("generation", 0) or 0)
    if summary.changed or fresh_root or recorded is None or _spec_changed(recorded, spec, requested):
        index = vectors.from_store(db, spec, encoder.dimension)
        vectors.write_atomic(index, target)
        recorded_spec = spec.to_dict()
        generation += 1
    else:
        recorded_spec = json.loads(recorded)
    fusion = json.dumps(options.fusion) if options.fusion is not None else meta.get("fusion", "")
    if fusion != meta.get("fusion", ""):
        generation += 1  # open indexes (a server, a retriever) reopen and fuse the new way
    with db.atomic():
        store.set_meta(
            db,
            {
                "schema_version": str(store.SCHEMA_VERSION),
                "encoder": _encoder_reference(options.encoder),
                "encoder_fingerprint": encoder.fingerprint,
                "index_type_requested": requested,
                "dimension": str(encoder.dimension),
                "index_spec": recorded_spec,
                "chunk_tokens": str(chunker.max_tokens),
                "parser_version": str(PARSER_VERSION),
                "overlap": str(chunker.overlap),
                "updated_at": str(time.time()),
                "generation": str(generation),
                "document_precision": _document_precision(meta, encoder, summary, fresh_root),
                "fusion": fusion,
            },
        )
    summary.seconds["storing"] += time.perf_counter() - phase
    summary.index_spec = recorded_spec
    summary.chunks_total = count_chunks


def _encoder_reference(spec: str) -> str:
    """A local encoder folder as an absolute path, so searches from any folder find it."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def _check_settings(options: IndexOptions, meta: dict, encoder, target: Path, fresh_root: bool) -> None:
    """Chunking and parsing must match what the stored chunks were made with: never a silent mix."""
    if fresh_root or "chunk_tokens" not in meta:
        return
    recorded_parser = meta.get("parser_version", str(PARSER_VERSION))
    if recorded_parser != str(PARSER_VERSION):
        raise InvalidInputError(
            f"the index at {target} was parsed by ragkit's document readers version {recorded_parser}, "
            f"these are version {PARSER_VERSION}; re-read every document with --rebuild"
        )
    wanted = {"chunk_tokens": min(options.chunk_tokens, encoder.max_length), "overlap": options.overlap}
    for key, value in wanted.items():
        if str(value) != meta[key]:
            flag = key.replace("_", "-")
            raise InvalidInputError(
                f"the index at {target} was chunked with --{flag} {meta[key]}, not {value}; pass "
                f"--{flag} {meta[key]}, or --rebuild to re-chunk every document"
            )


def _skip(summary: IndexSummary, relative: str, reason: str, stored: bool) -> None:
    """A file that cannot be read now: counted, and removed if an old version is indexed."""
    summary.skipped[reason] += 1
    summary.skipped_files.append((relative, reason))
    if stored:
        summary.removed_reasons[relative] = reason


def _spec_changed(recorded: str, spec, requested: str) -> bool:

    if requested == "auto":
        return False
    return vectors.IndexSpec.from_dict(recorded).kind != spec.kind


def _write_group(db, encoder, group, summary: IndexSummary, progress, on_group=None) -> None:
    """Encode a group's chunks (in slices, reporting progress), then store it."""
    phase = time.perf_counter()
    chunks_ = [chunk for *_, chunks, _ in group for chunk in chunks]
    parts = []
    for start in range(0, len(chunks_), GROUP_CHUNKS):
        piece = chunks_[start : start + GROUP_CHUNKS]
        texts = [chunk.text for chunk in piece]
        parts.append(encoder.encode_documents(texts, show_progress=False, warn_truncated=False))
        if progress is not None:
            progress.encoded(len(piece), sum(chunk.tokens for chunk in piece))
    vectors_ = np.concatenate(parts) if parts else np.zeros((0, encoder.dimension), dtype=np.float32)
    if parts:
        summary.document_dtypes.add(document_dtype(encoder))
    summary.seconds["encoding"] += time.perf_counter() - phase
    _store_group(db, group, vectors_, summary, progress, on_group)


def _store_group(db, group, vectors_: np.ndarray, summary: IndexSummary, progress, on_group=None) -> None:
    """Store each document of ``group`` (its chunks' vectors in order) in one transaction."""
    phase = time.perf_counter()
    chunks_ = [chunk for *_, chunks, _ in group for chunk in chunks]
    summary.tokens += sum(chunk.tokens for chunk in chunks_)
    offset = 0
    with db.atomic():
        for relative, digest, stat, chunks, existed in group:
            store.replace_document(
                db,
                path=relative,
                hash=digest,
                mtime=stat.st_mtime,
                size=stat.st_size,
                metadata={"suffix": Path(relative).suffix.lower()},
                chunks=chunks,
                vectors=vectors_[offset : offset + len(chunks)],
            )
            offset += len(chunks)
            (summary.updated if existed else summary.added).append(relative)
    summary.chunks_written += len(chunks_)
    summary.seconds["storing"] += time.perf_counter() - phase
    if on_group is not None:
        on_group(summary)
    if progress is not None:
        for _ in group:
            progress.advance_file()


def _embed_on_ray(db, encoder, chunker, pending, stored, options: IndexOptions, summary, progress) -> None:
    """The pending files parsed, chunked and embedded by Ray workers, stored here as they
    come back, a group of chunks per transaction as in a local run."""
    from ragkit.indexer import distributed

    if progress is not None:
        progress.start(len(pending))
    encoder_spec = _encoder_reference(options.encoder)  # a folder as workers must find it
    settings = distributed.StageSettings(
        encoder_spec, options.device, options.dtype, options.chunk_tokens, options.overlap, threads=1
    )
    sizes = [stat.st_size for *_, stat in pending]
    batch = distributed.documents_per_batch(sizes, chunker.max_tokens, options.group_chunks)
    found: dict[str, tuple[str, os.stat_result]] = {}

    def read_all():
        """The pending files' bytes, read as the plan ships them (never all at once)."""
        for entry in pending:
            try:
                raw, digest, stat = _read_pending(entry, options)
            except SkipFile as skip:
                _skip(summary, entry[0], skip.reason, entry[0] in stored)
                if progress is not None:
                    progress.advance_file()
                continue
            found[entry[0]] = (digest, stat)
            yield entry[0], entry[1], raw

    results = distributed.embed(
        read_all(),
        settings,
        workers=options.ray_workers,
        batch_documents=batch,
        dimension=encoder.dimension,
        fingerprint=encoder.fingerprint,
        on_batch=options.ray_on_batch,
        max_bytes_in_flight=int(options.ray_inflight_mb * 1024 * 1024),
        documents=len(pending),
    )
    group, vectors_, waited = [], [], time.perf_counter()
    for document in results:
        summary.seconds["encoding"] += time.perf_counter() - waited
        if document.skipped:
            _skip(summary, document.relative, document.skipped, document.relative in stored)
            if progress is not None:
                progress.advance_file()
        else:
            digest, stat = found[document.relative]
            group.append((document.relative, digest, stat, document.chunks, document.relative in stored))
            vectors_.append(document.vectors)
            summary.document_dtypes.add(document.dtype)
            if progress is not None:
                progress.encoded(len(document.chunks), sum(c.tokens for c in document.chunks))
        if sum(len(v) for v in vectors_) >= options.group_chunks:
            _store_group(db, group, np.concatenate(vectors_), summary, progress, options.on_group)
            group, vectors_ = [], []
        waited = time.perf_counter()
    if group:
        _store_group(db, group, np.concatenate(vectors_), summary, progress, options.on_group)
