"""The one progress bar of emkit (rich), switched off with ``--quiet`` or in tests."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_counter(total: int, enabled: bool, label: str, completed: int = 0,
                     fields: tuple[str, ...] = ()) -> Iterator[Callable[..., None]]:
    """A bar counting ``total`` items from ``completed``, with a live value per name in ``fields`` (e.g. loss);
    yields ``advance(n, **values)``. When disabled, ``advance`` does nothing."""
    if not enabled:
        yield lambda count, **values: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn(f"{name} {{task.fields[{name}]}}") for name in fields]
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), *columns,
                  TimeElapsedColumn()) as progress:
        task = progress.add_task(label, total=total, completed=completed, **dict.fromkeys(fields, "-"))
        yield lambda count, **values: progress.update(task, advance=count, **values)
