"""``agentstore sessions …``: sessions and their conversations."""

from __future__ import annotations

import sys

import click

from agentstore.cli.base import cli, database_option, database_target, json_option, open_store, run
from agentstore.cli.output import emit_json, key_values, short_time, table, text_cell
from agentstore.models import ConversationEvent, SessionStatus

__all__ = ["sessions"]

_STATUSES = [status.value for status in SessionStatus]


@cli.group()
def sessions() -> None:
    """Sessions and their conversations."""


@sessions.command("list")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="At most this many, newest activity first (0: all).",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(_STATUSES),
    help="Only sessions in this status (repeatable).",
)
@click.option(
    "--archived/--no-archived", default=True, show_default=True, help="Include archived sessions."
)
@database_option
@json_option
@click.pass_context
def list_sessions(
    ctx: click.Context,
    limit: int,
    statuses: tuple[str, ...],
    archived: bool,
    db: str | None,
    as_json: bool,
) -> None:
    """List sessions, newest activity first."""

    async def work() -> None:
        async with open_store(database_target(ctx, db)) as store:
            found = await store.list_sessions(
                limit=limit or None,
                include_archived=archived,
                statuses=list(statuses) or None,
            )
        if as_json:
            emit_json([s.to_dict() for s in found])
            return
        table(
            ["ID", "STATUS", "LAST ACTIVITY (UTC)", "TITLE", "COST", "CLAUDE SESSION"],
            [
                (
                    s.id,
                    s.status,
                    short_time(s.last_activity_at),
                    s.title or s.summary or s.query,
                    "" if s.cost_usd is None else f"${s.cost_usd:.4f}",
                    s.claude_session_id,
                )
                for s in found
            ],
        )

    run(work())


def _event_rows(events: list[ConversationEvent]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for e in events:
        if e.event_type == "tool_call":
            text = f"{e.tool_name} {e.tool_input_json}"
        elif e.event_type == "tool_result":
            text = e.tool_result_content
        else:
            text = e.content
        extra = f" [approval {e.approval_status}]" if e.approval_status else ""
        rows.append(
            (
                e.claude_session_id,
                e.sequence,
                short_time(e.created_at),
                e.event_type,
                e.role,
                text_cell(text) + extra,
            )
        )
    return rows


_EVENT_COLUMNS = ["CLAUDE SESSION", "SEQ", "TIME (UTC)", "TYPE", "ROLE", "TEXT"]


@sessions.command()
@click.argument("session_id")
@click.option(
    "--last",
    type=click.IntRange(min=0),
    default=None,
    help="Only the last N events of the conversation.",
)
@database_option
@json_option
@click.pass_context
def show(
    ctx: click.Context, session_id: str, last: int | None, db: str | None, as_json: bool
) -> None:
    """Show a session, then its conversation (its ancestors' events first)."""

    async def work() -> None:
        async with open_store(database_target(ctx, db)) as store:
            session = await store.get_session(session_id)
            events = await store.get_session_conversation(session_id)
        if last is not None:
            events = events[-last:] if last else []
        if as_json:
            emit_json({"session": session.to_dict(), "events": [e.to_dict() for e in events]})
            return
        shown = session.to_dict()
        key_values([(key, value) for key, value in shown.items() if value not in ("", None)])
        click.echo("")
        table(_EVENT_COLUMNS, _event_rows(events), title=f"conversation ({len(events)} events)")

    run(work())


@sessions.command()
@click.argument("claude_session_id")
@click.option(
    "--last",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many of the latest events to print first.",
)
@click.option("--follow", "-f", is_flag=True, help="Then print new events as they arrive.")
@database_option
@json_option
@click.pass_context
def tail(
    ctx: click.Context,
    claude_session_id: str,
    last: int,
    follow: bool,
    db: str | None,
    as_json: bool,
) -> None:
    """Print the latest events of a Claude session (with --follow, then new ones as they come)."""

    async def work() -> None:
        async with open_store(database_target(ctx, db)) as store:
            events = await store.get_conversation(claude_session_id, limit=last)
            if as_json and not follow:
                emit_json([e.to_dict() for e in events])
                return
            _print_events(events, as_json)
            if not follow:
                return
            after = events[-1].sequence if events else 0
            # New events as they are committed, by any process, until interrupted (Ctrl-C).
            async for new in store.watch_conversation(claude_session_id, after_sequence=after):
                _print_events([new], as_json)
                sys.stdout.flush()

    run(work())


def _print_events(events: list[ConversationEvent], as_json: bool) -> None:
    import json

    if as_json:  # with --follow: one JSON document per line, as they come
        for e in events:
            click.echo(json.dumps(e.to_dict(), ensure_ascii=False))
        return
    for _, sequence, time, kind, role, text in _event_rows(events):
        click.echo(f"{time}  #{sequence:<5} {kind:<11} {role or '-':<9} {text}")
