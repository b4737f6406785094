"""``agentstore approvals …``: pending approvals, and deciding them."""

from __future__ import annotations

import json

import click

from agentstore.cli.base import cli, database_option, database_target, json_option, open_store, run
from agentstore.cli.output import emit_json, short_time, table

__all__ = ["approvals"]


@cli.group()
def approvals() -> None:
    """Pending approvals, and deciding them."""


@approvals.command("list")
@click.option("--session", "session_id", default=None, help="Only this session's approvals.")
@database_option
@json_option
@click.pass_context
def list_approvals(
    ctx: click.Context, session_id: str | None, db: str | None, as_json: bool
) -> None:
    """List pending approvals, oldest first."""

    async def work() -> None:
        async with open_store(database_target(ctx, db)) as store:
            pending = await store.approvals.pending(session_id)
        if as_json:
            emit_json([a.to_dict() for a in pending])
            return
        table(
            ["ID", "SESSION", "TOOL", "REQUESTED (UTC)", "INPUT"],
            [
                (
                    a.id,
                    a.session_id,
                    a.tool_name,
                    short_time(a.created_at),
                    json.dumps(a.tool_input, ensure_ascii=False),
                )
                for a in pending
            ],
        )

    run(work())


def _decide(
    ctx: click.Context, approval_id: str, status: str, comment: str, db: str | None
) -> None:
    async def work() -> None:
        async with open_store(database_target(ctx, db)) as store:
            decided = await store.update_approval_response(approval_id, status, comment)
        click.echo(
            f"{decided.status} {decided.id}" + (f": {decided.comment}" if decided.comment else "")
        )

    run(work())


@approvals.command()
@click.argument("approval_id")
@click.option("--comment", default="", help="Why (optional).")
@database_option
@click.pass_context
def approve(ctx: click.Context, approval_id: str, comment: str, db: str | None) -> None:
    """Approve a pending approval (refused if it was already decided)."""
    _decide(ctx, approval_id, "approved", comment, db)


@approvals.command()
@click.argument("approval_id")
@click.option("--comment", required=True, help="Why (required: the agent reads it).")
@database_option
@click.pass_context
def deny(ctx: click.Context, approval_id: str, comment: str, db: str | None) -> None:
    """Deny a pending approval (refused if it was already decided)."""
    _decide(ctx, approval_id, "denied", comment, db)
