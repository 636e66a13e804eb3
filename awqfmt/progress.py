"""Progress bars for long commands, on stderr and only on a terminal (quiet under --json or in pipes).

Library functions take a plain `progress(done, total)` callback; these context managers turn it into a bar.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn, TransferSpeedColumn)

ProgressFn = Callable[[int, int], None]


@contextmanager
def _bar(console: Console, label: str, *columns) -> Iterator[ProgressFn]:
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), *columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def bytes_bar(console: Console, label: str):
    """Bytes written, rate and ETA (convert)."""
    return _bar(console, label, DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())


def count_bar(console: Console, label: str):
    """Modules done out of all, elapsed time and ETA (verify, check --deep)."""
    return _bar(console, label, MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())


def maybe(bar, console: Console, label: str, enabled: bool):
    """`bar(console, label)` when enabled and stderr is a terminal, else a context yielding None."""
    return bar(console, label) if enabled and console.is_terminal else nullcontext(None)
