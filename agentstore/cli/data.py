"""Moving and keeping data: ``agentstore stats``, ``export``, ``import``, ``copy``, ``prune``.

Long work shows a progress bar on standard error when it is a terminal, nothing otherwise.
``export`` writes its JSON Lines to ``-o FILE`` (mode 0600) or to standard output; what it
wrote is summed up on standard error when the data goes to standard output, on standard
output otherwise. Ages are a whole number and a unit: ``30d``, ``12h``, ``2w`` (also ``s``
and ``m`` for seconds and minutes).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from agentstore import transfer
from agentstore.cli.base import (
    cli,
    database_option,
    database_target,
    describe,
    json_option,
    open_store,
    run,
)
from agentstore.cli.output import emit_json, progress, status, table
from agentstore.errors import StoreError

__all__ = ["Age", "copy", "export", "import_", "prune", "stats"]

# How a count reads in a sentence: (one, many).
_NOUNS: dict[str, tuple[str, str]] = {
    "settings": ("settings row", "settings rows"),
    "session": ("session", "sessions"),
    "event": ("event", "events"),
    "approval": ("approval", "approvals"),
    "mcp_server": ("MCP server", "MCP servers"),
    "raw_event": ("raw event", "raw events"),
    "snapshot": ("file snapshot", "file snapshots"),
}


def _size(count: int | None) -> str:
    if count is None:
        return ""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(count)  # pragma: no cover


def _counted(counts: dict[str, int]) -> str:
    """``3 sessions, 1 approval, 0 events…`` in the export's order, zeros left out."""
    parts = []
    for kind, count in counts.items():
        one, many = _NOUNS.get(kind, (kind, kind))
        if count:
            parts.append(f"{count:,} {one if count == 1 else many}")
    return ", ".join(parts) or "nothing"


@contextmanager
def _bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """``progress(done, total)`` for the library's calls, drawn as a bar on a terminal."""
    with progress(description) as advance:

        def update(done: int, total: int) -> None:
            advance(done, total or None)

        yield update


@cli.command()
@database_option
@json_option
@click.pass_context
def stats(ctx: click.Context, db: str | None, as_json: bool) -> None:
    """Rows per table, and the size of the database file."""

    async def work() -> None:
        async with open_store(database_target(ctx, db)) as store:
            found = await store.stats()
        if as_json:
            emit_json(found.to_dict())
            return
        rows: list[tuple[object, ...]] = [(name, count) for name, count in found.rows.items()]
        if found.file_bytes is not None:
            rows.append(("(file size)", _size(found.file_bytes)))
            rows.append(("(write-ahead log)", _size(found.wal_bytes)))
        table(["TABLE", "ROWS"], rows)

    run(work())


# --- export and import ------------------------------------------------------------------------


@cli.command()
@click.option(
    "-o",
    "--output",
    "output",
    metavar="FILE",
    default=None,
    help="Write to FILE (created with mode 0600; replaced only once complete) instead of "
    "standard output.",
)
@click.option(
    "--session",
    "sessions",
    metavar="ID",
    multiple=True,
    help="Only this session, its ancestors and everything of theirs (repeat for more).",
)
@click.option(
    "--include-secrets",
    is_flag=True,
    help="Write proxy API keys and MCP server env/header values (blanked by default).",
)
@database_option
@click.pass_context
def export(
    ctx: click.Context,
    output: str | None,
    sessions: tuple[str, ...],
    include_secrets: bool,
    db: str | None,
) -> None:
    """Write the store (or some sessions) as JSON Lines, for `agentstore import`."""
    if output is not None and not output.strip():
        raise click.UsageError("-o FILE is empty")
    if any(not session.strip() for session in sessions):
        raise click.UsageError("--session ID is empty")
    to_stdout = output is None or output == "-"
    dest: str | BinaryIO = sys.stdout.buffer if to_stdout else str(output)

    async def work() -> dict[str, int]:
        async with open_store(database_target(ctx, db)) as store:
            with _bar("Exporting") as update:
                return await transfer.export_jsonl(
                    store,
                    dest,
                    session_ids=list(sessions) or None,
                    include_secrets=include_secrets,
                    progress=update,
                )

    counts = run(work())
    where = "standard output" if to_stdout else str(Path(str(output)).expanduser().absolute())
    secrets = "included" if include_secrets else "redacted"
    message = f"exported {_counted(counts)} to {where} (secrets {secrets})"
    click.echo(message, err=to_stdout)


@cli.command("import")
@click.argument("file", metavar="FILE")
@click.option(
    "--skip-existing",
    is_flag=True,
    help="Leave sessions that already exist, and everything of theirs, as they are (by "
    "default any of them refuses the whole file).",
)
@database_option
@json_option
@click.pass_context
def import_(
    ctx: click.Context, file: str, skip_existing: bool, db: str | None, as_json: bool
) -> None:
    """Read a file `agentstore export` wrote (FILE, or - for standard input), in one
    transaction: all of it, or nothing."""
    if not file.strip():
        raise click.UsageError("FILE is empty")
    source: str | BinaryIO = sys.stdin.buffer if file == "-" else file
    if isinstance(source, str) and not Path(source).expanduser().exists():
        raise StoreError(f"{Path(source).expanduser().absolute()} does not exist")

    async def work() -> dict[str, int]:
        async with open_store(database_target(ctx, db), create=True) as store:
            with _bar("Importing") as update:
                return await transfer.import_jsonl(
                    store,
                    source,
                    on_conflict="skip" if skip_existing else "error",
                    progress=update,
                )

    counts = run(work())
    if as_json:
        emit_json({"imported": counts})
        return
    click.echo(f"imported {_counted(counts)}")


# --- copy -------------------------------------------------------------------------------------


@cli.command()
@click.argument("source", metavar="SOURCE")
@click.argument("dest", metavar="DEST")
@json_option
def copy(source: str, dest: str, as_json: bool) -> None:
    """Copy a whole database (a path or a URL) into an empty one, any backend to any backend.

    DEST is created and migrated if it does not exist or holds nothing; one that holds
    data is refused and left as it was. Every table is verified (row counts and checksums)
    before the copy commits: a copy is whole, or not there at all.
    """
    for name, value in (("SOURCE", source), ("DEST", dest)):
        if not value.strip():
            raise click.UsageError(f"{name} is empty")
    if source != ":memory:" and "://" not in source and not Path(source).expanduser().exists():
        raise StoreError(f"{describe(source)} does not exist")

    async def work() -> dict[str, int]:
        with _bar("Copying") as update:
            return await transfer.copy_database(source, dest, progress=update)

    counts = run(work())
    if as_json:
        emit_json({"source": describe(source), "dest": describe(dest), "rows": counts})
        return
    table(["TABLE", "ROWS"], [(name, count) for name, count in counts.items()])
    click.echo(
        f"copied {sum(counts.values()):,} rows from {describe(source)} to {describe(dest)}; "
        "every table verified (row counts and checksums)"
    )


# --- prune ------------------------------------------------------------------------------------

_AGE = re.compile(r"^\s*(\d{1,9})\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}


if TYPE_CHECKING:  # click 8.2+ types ParamType by its value; older clicks cannot subscript it
    _AgeType = click.ParamType[timedelta, Any]
else:
    _AgeType = click.ParamType


class Age(_AgeType):
    """An age such as ``30d``, ``12h`` or ``2w`` (units s, m, h, d, w) as a timedelta."""

    name = "AGE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        found = _AGE.match(str(value))
        if found is None:
            self.fail(
                f"{value!r} is not an age such as 30d, 12h or 2w (a whole number, then s, m, "
                "h, d or w)",
                param,
                ctx,
            )
        age = timedelta(seconds=int(found[1]) * _UNITS[found[2].lower()])
        try:
            datetime.now(UTC) - age
        except OverflowError:
            self.fail(f"{value!r} reaches back before year 1", param, ctx)
        return age


@cli.command()
@click.option(
    "--raw-events-older-than",
    "raw_age",
    type=Age(),
    default=None,
    help="Delete raw events created longer ago than AGE (any session's).",
)
@click.option(
    "--snapshots-older-than",
    "snapshot_age",
    type=Age(),
    default=None,
    help="Delete file snapshots created longer ago than AGE (any session's).",
)
@click.option(
    "--archived-sessions-older-than",
    "session_age",
    type=Age(),
    default=None,
    help="Delete archived sessions whose last activity is older than AGE, with all their "
    "rows (never one with a pending approval, nor the ancestor of a kept session).",
)
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@click.option(
    "--vacuum", is_flag=True, help="Then give the space back to the file system (SQLite)."
)
@database_option
@json_option
@click.pass_context
def prune(
    ctx: click.Context,
    raw_age: timedelta | None,
    snapshot_age: timedelta | None,
    session_age: timedelta | None,
    dry_run: bool,
    vacuum: bool,
    db: str | None,
    as_json: bool,
) -> None:
    """Delete old raw events, file snapshots and archived sessions, in one transaction.

    AGE is a whole number and a unit: 30d, 12h, 2w (s, m, h, d, w).
    """
    if raw_age is None and snapshot_age is None and session_age is None:
        raise click.UsageError(
            "nothing to prune: give --raw-events-older-than, --snapshots-older-than or "
            "--archived-sessions-older-than"
        )
    now = datetime.now(UTC)

    def before(age: timedelta | None) -> datetime | None:
        return None if age is None else now - age

    async def work() -> tuple[dict[str, int], int | None, int | None]:
        async with open_store(database_target(ctx, db)) as store:
            size_before = (await store.stats()).file_bytes if vacuum else None
            with status("Pruning (a dry run)" if dry_run else "Pruning"):
                counts = await store.prune(
                    raw_events_before=before(raw_age),
                    snapshots_before=before(snapshot_age),
                    archived_sessions_before=before(session_age),
                    dry_run=dry_run,
                    vacuum=vacuum,
                )
            size_after = (await store.stats()).file_bytes if vacuum else None
        return counts, size_before, size_after

    counts, size_before, size_after = run(work())
    vacuumed = vacuum and not dry_run
    if as_json:
        emit_json(
            {
                "dry_run": dry_run,
                "deleted": counts,
                "vacuumed": vacuumed,
                "file_bytes_before": size_before,
                "file_bytes_after": size_after,
            }
        )
        return
    if dry_run:
        click.echo(f"would delete {_counted(counts)} (dry run: nothing was deleted)")
    else:
        click.echo(f"deleted {_counted(counts)}")
    if vacuumed and size_before is not None and size_after is not None:
        click.echo(f"vacuumed: the file went from {_size(size_before)} to {_size(size_after)}")
    elif vacuumed:
        click.echo("vacuumed")
