"""A per-epoch progress bar with live loss and ETA (only on a terminal)."""

from __future__ import annotations

import sys
from types import TracebackType

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class EpochProgress:
    def __init__(self, epoch: int, steps: int) -> None:
        self.epoch, self.steps = epoch, steps
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(),
            transient=True, disable=not sys.stderr.isatty())
        self.task = self.progress.add_task("train", total=steps, epoch=epoch, loss=0.0)
        self.mean = 0.0
        self.count = 0

    def __enter__(self) -> EpochProgress:
        self.progress.start()
        return self

    def advance(self, loss: float) -> None:
        self.count += 1
        self.mean += (loss - self.mean) / self.count
        self.progress.update(self.task, advance=1, loss=self.mean)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.stop()
