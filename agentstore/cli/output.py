"""How the command line writes: tables for people, JSON for scripts, one-line errors.

A table fits the terminal (long cells are cut with an ellipsis) when standard output is a
terminal, and is plain tab-separated text otherwise, with no colour and nothing cut, so
that ``cut``, ``awk`` and ``grep`` work on it. ``--json`` prints one JSON document. Progress
bars go to standard error, and only when it is a terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

__all__ = ["emit_json", "progress", "short_time", "status", "table", "text_cell"]


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def emit_json(document: Any) -> None:
    """One JSON document on standard output (times already ISO 8601 UTC text)."""
    sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=2, default=str))
    sys.stdout.write("\n")


def text_cell(value: Any, width: int | None = None) -> str:
    """A value as one line of text (newlines shown as spaces), optionally cut."""
    text = "" if value is None else str(value)
    text = " ".join(text.split())
    if width is not None and len(text) > width:
        text = text[: max(0, width - 1)] + "…"
    return text


def short_time(value: datetime | None) -> str:
    """A time for a table: UTC, to the second."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None
) -> None:
    """Rows for people: a table fitted to the terminal, or tab-separated lines."""
    if not stdout_is_terminal():
        if title:
            sys.stdout.write(f"# {title}\n")
        sys.stdout.write("\t".join(columns) + "\n")
        for row in rows:
            sys.stdout.write("\t".join(text_cell(cell) for cell in row) + "\n")
        return
    console = Console()
    cells = [[text_cell(cell) for cell in row] for row in rows]
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(columns)]
    grid = Table(title=title, header_style="bold")
    for name, width in zip(
        columns, _fit(widths, console.width - 3 * len(columns) - 1), strict=True
    ):
        grid.add_column(name, overflow="ellipsis", no_wrap=True, width=width)
    for row in cells:
        grid.add_row(*row)
    console.print(grid)


def _fit(widths: list[int], room: int) -> list[int]:
    """Column widths within ``room``: the widest column gives way first (cut with an
    ellipsis), then every column shares what is left, none narrower than 3."""
    fitted = list(widths)
    while sum(fitted) > room:
        widest = max(range(len(fitted)), key=lambda i: fitted[i])
        others = sum(fitted) - fitted[widest]
        if room - others >= 8:
            fitted[widest] = room - others
            break
        if fitted[widest] <= 3:
            break
        fitted[widest] -= 1
    return fitted


def key_values(pairs: Sequence[tuple[str, Any]]) -> None:
    """A record for people: one ``key  value`` line each (plain text, never cut)."""
    width = max((len(key) for key, _ in pairs), default=0)
    for key, value in pairs:
        sys.stdout.write(f"{key:<{width}}  {text_cell(value)}\n")


@contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Any]:
    """A progress bar on standard error when it is a terminal; yields ``advance(done, total)``."""
    if not sys.stderr.isatty():
        yield lambda done, total=None: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)

        def advance(done: int, total: int | None = None) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


@contextmanager
def status(description: str) -> Iterator[None]:
    """A spinner on standard error while long work runs (only on a terminal)."""
    if not sys.stderr.isatty():
        yield
        return
    with Console(stderr=True).status(description):
        yield
