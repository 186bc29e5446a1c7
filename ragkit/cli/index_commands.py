"""``ragkit index`` and ``ragkit status``: build, update and inspect an index folder."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from ragkit.cli.console import err, fail, out, safe
from ragkit.cli.options import (
    DenseWeightOption,
    DeviceOption,
    DocumentDtypeOption,
    EncoderOption,
    JsonOption,
    RayOption,
    RayWorkersOption,
    dense_weight_fusion,
)

IndexDirOption = Annotated[
    Path | None,
    typer.Option(
        "--index",
        "-i",
        help="Index folder. Default: .ragkit in the current directory, or $RAGKIT_INDEX.",
        show_default=False,
    ),
]


class _IndexProgress:
    """Files, chunks, tokens/s and ETA while documents are embedded.

    A live bar on a terminal; on a pipe or a log file, one plain line at most every
    ``every`` seconds (and when done), so a long run is never silent where it is watched.
    """

    def __init__(self, enabled: bool, *, live: bool, every: float = 10.0):
        self.enabled = enabled
        self.live = live
        self.every = every
        self._bar = None
        self._task = None
        self._files = 0
        self._done = 0
        self._tokens = 0
        self._chunks = 0
        self._started = time.perf_counter()
        self._printed = self._started

    def start(self, files: int) -> None:
        self._files, self._started = files, time.perf_counter()
        self._printed = self._started
        if not self.enabled or files == 0:
            return
        if not self.live:
            err.print(f"indexing {files} files", highlight=False)
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("[bold]indexing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files · {task.fields[chunks]} chunks · {task.fields[rate]} tok/s"),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task("index", total=files, chunks=0, rate="-")

    def encoded(self, chunks: int, tokens: int) -> None:
        """Chunks embedded (a big file reports as it goes, not only when it is done)."""
        self._chunks += chunks
        self._tokens += tokens
        self._show(advance=0)

    def advance_file(self) -> None:
        self._done += 1
        self._show(advance=1)

    def _show(self, advance: int) -> None:
        now = time.perf_counter()
        rate = self._tokens / max(now - self._started, 1e-9)
        if self._bar is not None:
            self._bar.update(self._task, advance=advance, chunks=self._chunks, rate=f"{rate:,.0f}")
            return
        due = now - self._printed >= self.every or (advance and self._done == self._files)
        if self.enabled and not self.live and due:
            self._printed = now
            err.print(
                f"indexing: {self._done}/{self._files} files, {self._chunks:,} chunks, {rate:,.0f} tok/s",
                highlight=False,
            )

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()


PathsOption = Annotated[
    list[Path] | None,
    typer.Argument(
        help="Folders or files of documents (.md .txt .rst .html, .pdf with ragkit[pdf]), one or "
        "more. Each new one becomes a source of the index. Default: every source it has.",
        show_default=False,
    ),
]
IncludeOption = Annotated[list[str] | None, typer.Option(help="Only files matching this glob (repeatable).")]
ExcludeOption = Annotated[list[str] | None, typer.Option(help="Skip files matching this glob (repeatable).")]
ChunkTokensOption = Annotated[
    int, typer.Option(min=8, help="Tokens per chunk at most (encoder's tokenizer).")
]
OverlapOption = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="Tokens shared by consecutive chunks of a section, at most half of --chunk-tokens. "
        "Default: an eighth of --chunk-tokens, at most 32.",
    ),
]
IndexTypeOption = Annotated[
    str | None,
    typer.Option(
        help="auto (flat when small, HNSW when large), flat, hnsw or ivfpq (flat below 256 "
        "chunks). Default: what the index was built with, auto for a new one.",
        show_default=False,
    ),
]
RebuildOption = Annotated[
    bool,
    typer.Option("--rebuild", help="Re-embed everything into a fresh index (swapped in at the end)."),
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="List what would be indexed or removed; change nothing.")
]
WaitOption = Annotated[
    float, typer.Option(min=0, help="Seconds to wait for another index run on the same index.")
]
FollowSymlinksOption = Annotated[
    bool,
    typer.Option(
        "--follow-symlinks",
        help="Also index files that symbolic links lead to outside the folder (off: a link to "
        "~/.aws/credentials must not become searchable).",
    ),
]


RayInflightOption = Annotated[
    float,
    typer.Option(
        "--ray-inflight-mb",
        min=0.001,
        help="With --ray: most MB of file bytes the driver holds and ships at once "
        "(its memory stays flat however many files changed).",
    ),
]


def index_command(
    paths: PathsOption = None,
    index_dir: IndexDirOption = None,
    encoder: EncoderOption = "default",
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    chunk_tokens: ChunkTokensOption = 256,
    overlap: OverlapOption = None,
    index_type: IndexTypeOption = None,
    dense_weight: DenseWeightOption = None,
    rebuild: RebuildOption = False,
    dry_run: DryRunOption = False,
    wait: WaitOption = 0.0,
    follow_symlinks: FollowSymlinksOption = False,
    device: DeviceOption = None,
    dtype: DocumentDtypeOption = "auto",
    as_json: JsonOption = False,
    ray: RayOption = None,
    ray_workers: RayWorkersOption = None,
    ray_inflight_mb: RayInflightOption = 64.0,
    group_chunks: Annotated[int, typer.Option(min=1, hidden=True)] = 256,
) -> None:
    """Embed folders of documents into a FAISS index with SQLite metadata.

    An index holds one or more sources (`ragkit index ./docs ./notes`; `ragkit status` lists
    them). Rerunning re-embeds only new or changed files (content hash) and drops files gone
    from the folders it scanned, and files that became unreadable; a run over one file
    updates that file only, and `ragkit index` alone refreshes every source. Hidden and
    git-ignored files are skipped, and so are symbolic links that lead out of the folder.
    The index folder must be new, empty or an index: ragkit never writes among other files.
    Safe to interrupt at any moment: the next run finishes the work.

    Example: `ragkit index ./docs` then `ragkit ask "how do I install it?"`
    """
    import sys

    from ragkit.indexer.builder import IndexOptions, build_index
    from ragkit.search.index import default_index_dir

    if ray_workers is not None and not ray:
        fail("--ray-workers needs --ray")
    options = IndexOptions(
        source=list(paths or []),
        index_dir=index_dir or default_index_dir(),
        encoder=encoder,
        include=include or [],
        exclude=exclude or [],
        chunk_tokens=chunk_tokens,
        overlap=overlap,
        index_type=index_type,
        fusion=dense_weight_fusion(dense_weight),
        rebuild=rebuild,
        dry_run=dry_run,
        device=device,
        dtype=dtype,
        wait_seconds=wait,
        follow_symlinks=follow_symlinks,
        group_chunks=group_chunks,
        ray=ray,
        ray_workers=ray_workers,
        ray_inflight_mb=ray_inflight_mb,
    )
    started = time.perf_counter()
    progress = _IndexProgress(enabled=not as_json, live=sys.stderr.isatty())
    try:
        summary = build_index(options, progress)
    finally:
        progress.stop()
    elapsed = time.perf_counter() - started
    if as_json:
        out.print_json(data=_summary_dict(summary, options, elapsed))
    elif dry_run:
        _print_dry_run(summary)
    else:
        _print_summary(summary, options, elapsed)
    nothing = not summary.chunks_total and not dry_run
    if nothing:
        raise typer.Exit(1)


def _summary_dict(summary, options, elapsed: float) -> dict:
    return {
        "index": str(options.index_dir),
        "added": summary.added,
        "updated": summary.updated,
        "removed": summary.removed,
        "removed_reasons": summary.removed_reasons,
        "unchanged": summary.unchanged,
        "skipped": dict(summary.skipped),
        "skipped_files": [{"path": p, "reason": r} for p, r in summary.skipped_files],
        "left_out": dict(summary.left_out),
        "chunks_written": summary.chunks_written,
        "chunks_total": summary.chunks_total,
        "index_type": summary.index_spec,
        "seconds": {k: round(v, 3) for k, v in {**summary.seconds, "total": elapsed}.items()},
        "would_index": summary.would_index,
        "sources_added": summary.sources_added,
    }


def _print_dry_run(summary) -> None:
    for path in summary.would_index:
        err.print(f"[green]would index[/] {safe(path)}")
    for path in summary.removed:
        err.print(f"[red]would remove[/] {safe(path)}")
    err.print(
        f"{len(summary.would_index)} to index, {len(summary.removed)} to remove, "
        f"{summary.unchanged} unchanged, {sum(summary.skipped.values())} skipped"
    )


def _print_summary(summary, options, elapsed: float) -> None:
    from rich.table import Table

    for path, reason in summary.skipped_files:
        err.print(f"[yellow]skipped[/] {safe(path)}: {safe(reason)}")
    for path, reason in summary.removed_reasons.items():
        err.print(f"[red]removed[/] {safe(path)}: now {safe(reason)}")
    for source in summary.sources_added:
        err.print(f"[green]new source[/] {safe(source)}")
    table = Table(title=f"index {safe(options.index_dir)}", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("added", str(len(summary.added)))
    table.add_row("updated", str(len(summary.updated)))
    table.add_row("removed", str(len(summary.removed)))
    table.add_row("unchanged", str(summary.unchanged))
    for reason, n in summary.skipped.most_common():
        table.add_row(f"skipped: {safe(reason)}", str(n))
    for what, n in summary.left_out.most_common():
        table.add_row(f"left out of files: {safe(what)}", str(n))
    table.add_row("chunks embedded", f"{summary.chunks_written:,}")
    table.add_row("chunks in index", f"{summary.chunks_total:,}")
    table.add_row("index type", str(summary.index_spec.get("kind", "?")))
    table.add_row("time", f"{elapsed:.1f} s")
    err.print(table)
    if not summary.chunks_total:
        err.print("[bold red]error:[/] nothing could be indexed")


def status_command(index_dir: IndexDirOption = None, as_json: JsonOption = False) -> None:
    """Show an index: documents, chunks, dimension, index type, encoder, size, last update."""
    from rich.table import Table

    from ragkit.search.index import Index

    info = Index.open(index_dir).status()
    if as_json:
        out.print_json(data=info)
        return
    table = Table(title=f"ragkit index {safe(info['index'])}", title_justify="left", show_header=False)
    table.add_column("field")
    table.add_column("value")
    rows = {
        "sources": "\n".join(
            f"{s['label']}: {s['path']} ({s['documents']:,} documents)" for s in info["sources"]
        )
        or "(none)",
        "documents": f"{info['documents']:,}",
        "chunks": f"{info['chunks']:,}",
        "dimension": str(info["dimension"]),
        "index type": json.dumps(info["index_type"]),
        "encoder": f"{info['encoder']} ({info['encoder_fingerprint']})",
        "hybrid fusion": _fusion_row(info),
        "precision": _precision_row(info),
        "chunking": f"{info['chunk_tokens']} tokens, {info['overlap']} overlap",
        "size on disk": f"{info['size_bytes'] / 1e6:.1f} MB",
        "last update": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["updated_at"])),
    }
    for key, value in rows.items():
        table.add_row(safe(key), safe(value))
    out.print(table)


def _fusion_row(info: dict) -> str:
    recorded = info.get("fusion")
    if not recorded:
        return "the encoder's own (ragkit index --dense-weight sets one for this index)"
    return f"{recorded['method']}, dense weight {recorded['dense_weight']} (chosen for this index)"


def _precision_row(info: dict) -> str:
    """Documents' precision (and the check behind it), and the queries'."""
    recorded = info.get("document_precision")
    if not recorded:
        return f"documents: not recorded (an older index) · queries {info['query_precision']}"
    last = recorded.get("last_run", {})
    documents = ("mixed: " if recorded.get("mixed") else "") + ", ".join(recorded["dtypes"])
    measured = ""
    if "min_cosine" in last:
        measured = f", probe min cosine {last['min_cosine']:.4f}, top-10 {last['top_agreement']:.3f}"
    reason = f" (last run: {last.get('dtype', '?')}, {last.get('reason', '')}{measured})" if last else ""
    return f"documents {documents or last.get('dtype', '?')}{reason} · queries {info['query_precision']}"


def remove_command(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Documents to drop: paths as stored (see status) or on disk; a folder drops "
            "every document under it.",
            show_default=False,
        ),
    ],
    index_dir: IndexDirOption = None,
    wait: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for another index run on the same index.")
    ] = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Remove documents from the index; the files themselves are never touched.

    Example: `ragkit remove docs/old.md docs/drafts`
    """
    from ragkit.indexer.removal import remove_documents
    from ragkit.search.index import default_index_dir

    removed = remove_documents(index_dir or default_index_dir(), paths, wait_seconds=wait)
    if as_json:
        out.print_json(data={"removed": removed})
        return
    for path in removed:
        err.print(f"[red]removed[/] {safe(path)}")
    err.print(f"{len(removed)} document(s) removed")
