"""The live training display: stage, step, loss, learning rate, tokens/s and ETA."""

from __future__ import annotations

import sys


class TrainDisplay:
    """A rich progress bar per stage, or nothing when stderr is not a terminal."""

    def __init__(self, enabled: bool | None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress = None
        self._task = None

    def __enter__(self) -> TrainDisplay:
        if self.enabled:
            self._progress = _started_bar(
                "[bold]{task.description}",
                "loss {task.fields[loss]} · lr {task.fields[lr]} · {task.fields[rate]} tok/s",
            )
        return self

    def start_stage(self, stage: str, total: int, done: int) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task(
                stage, total=total, completed=done, loss="-", lr="-", rate="-"
            )

    def update(self, step: int, loss: float, lr: float, tokens_per_s: float) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task, completed=step, loss=f"{loss:.4f}", lr=f"{lr:.2e}", rate=f"{tokens_per_s:,.0f}"
            )

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()


class MiningDisplay:
    """A rich progress bar while the teacher encodes what it mines from, or nothing when stderr
    is not a terminal; ``advance`` is the miner's ``on_progress``."""

    def __init__(self, enabled: bool | None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress = None
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> MiningDisplay:
        if self.enabled:
            self._progress = _started_bar("[bold]teacher mining · {task.description}")
        return self

    def advance(self, what: str, done: int, total: int) -> None:
        if self._progress is None:
            return
        if what not in self._tasks:
            self._tasks[what] = self._progress.add_task(what, total=total)
        self._progress.update(self._tasks[what], completed=done)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()


def _started_bar(label: str, fields: str | None = None):
    """A started rich progress bar on stderr: label, bar, count, ``fields``, time left."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn(label), BarColumn(), MofNCompleteColumn()]
    columns += [TextColumn(fields)] if fields else []
    progress = Progress(*columns, TimeRemainingColumn(), console=Console(stderr=True))
    progress.start()
    return progress
