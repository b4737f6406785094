"""``agentstore stats`` (and the commands that move and keep data)."""

from __future__ import annotations

import click

from agentstore.cli.base import cli, database_option, database_target, json_option, open_store, run
from agentstore.cli.output import emit_json, table

__all__ = ["stats"]


def _size(count: int | None) -> str:
    if count is None:
        return ""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(count)  # pragma: no cover


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
