"""``agentstore search``: full-text search over sessions and their conversations."""

from __future__ import annotations

import re

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agentstore.cli.base import cli, database_option, database_target, json_option, open_store, run
from agentstore.cli.output import emit_json, short_time, stdout_is_terminal, table, text_cell

__all__ = ["search"]

_MATCH = re.compile(r"\[([^\[\]]*)\]")


@cli.command()
@click.argument("query")
@click.option("--session", "session_id", default=None, help="Only this session's hits.")
@click.option(
    "--limit",
    type=click.IntRange(min=1, max=200),
    default=20,
    show_default=True,
    help="At most this many hits.",
)
@database_option
@json_option
@click.pass_context
def search(
    ctx: click.Context,
    query: str,
    session_id: str | None,
    limit: int,
    db: str | None,
    as_json: bool,
) -> None:
    """Search session titles, summaries and queries, and what was said and done in them.

    Words must all match; "a quoted phrase"; prefix* — every other character is taken
    literally. Best match first.
    """

    async def work() -> None:
        async with open_store(database_target(ctx, db)) as store:
            hits = await store.search(query, limit=limit, session_id=session_id)
        if as_json:
            emit_json([hit.to_dict() for hit in hits])
            return
        rows = [
            (
                hit.session_id,
                "" if hit.sequence is None else hit.sequence,
                hit.field,
                short_time(hit.created_at),
                hit.snippet,
            )
            for hit in hits
        ]
        columns = ["SESSION", "SEQ", "FIELD", "TIME (UTC)", "SNIPPET"]
        if not stdout_is_terminal():
            table(columns, rows)
            return
        grid = Table(header_style="bold")
        for name in columns:
            grid.add_column(name, overflow="fold" if name == "SNIPPET" else "ellipsis")
        for *cells, snippet in rows:
            # The matched words, which the snippet wraps in [ ], in bold.
            marked = _MATCH.sub(
                r"[bold yellow]\1[/]", escape(text_cell(snippet)).replace("\\[", "[")
            )
            grid.add_row(*(text_cell(cell) for cell in cells), marked)
        Console().print(grid)

    run(work())
