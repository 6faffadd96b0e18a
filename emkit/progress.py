"""Progress bars for long stages (rich), switched off with ``--quiet`` or in tests."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_counter(total: int, enabled: bool, label: str) -> Iterator[Callable[[int], None]]:
    """A bar counting ``total`` items; yields ``advance(n)``. When disabled, ``advance`` does nothing."""
    if not enabled:
        yield lambda count: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn()) as progress:
        task = progress.add_task(label, total=total)
        yield lambda count: progress.update(task, advance=count)
