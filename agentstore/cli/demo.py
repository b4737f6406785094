"""``agentstore demo``: record a realistic resumed agent session, and print it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import click

from agentstore.cli.base import cli, describe, open_store, run
from agentstore.models import (
    Approval,
    ApprovalStatus,
    ConversationEvent,
    EventType,
    FileSnapshot,
    MCPServerConfig,
    Session,
    SessionConfig,
    SessionStatus,
    SessionUpdate,
    mcp_servers_from_config,
)
from agentstore.store import Store

__all__ = ["DEFAULT_DEMO_DB", "record_demo"]

DEFAULT_DEMO_DB = "agentstore-demo.db"


async def record_demo(store: Store) -> tuple[str, str]:
    """Record a resumed agent session with everything a daemon stores; returns both ids."""
    run = uuid.uuid4().hex[:8]
    start = datetime.now(UTC) - timedelta(minutes=30)
    config = SessionConfig(
        query="Fix the flaky test in tests/test_sync.py",
        model="sonnet",
        working_dir="/home/alice/src/acme-api",
        max_turns=20,
        allowed_tools=["Read", "Grep", "Edit", "Bash"],
        mcp_servers={
            "codelayer": MCPServerConfig(
                command="hlyr", args=["mcp", "claude_approvals"], env={"HUMANLAYER_RUN_ID": run}
            ),
            "linear": MCPServerConfig(
                type="http",
                url="https://mcp.linear.app/mcp?team=acme&beta=1",
                headers={"Authorization": "Bearer <redacted>"},
            ),
        },
    )
    parent = Session.from_config(f"sess-{run}-1", f"run-{run}-1", config)
    parent.claude_session_id = f"claude-{run}-1"
    parent.created_at = parent.last_activity_at = start
    parent.title = "Fix flaky sync test"
    await store.create_session(parent)
    await store.store_mcp_servers(parent.id, mcp_servers_from_config(parent.id, config))
    await store.store_raw_event(parent.id, '{"type":"system","subtype":"init","model":"sonnet"}')

    def event(session: Session, kind: EventType, **fields: str | bool) -> ConversationEvent:
        return ConversationEvent(
            session_id=session.id,
            claude_session_id=session.claude_session_id,
            event_type=kind,
            **fields,  # type: ignore[arg-type]
        )

    await store.add_conversation_events(
        [
            event(parent, EventType.MESSAGE, role="user", content=config.query),
            event(parent, EventType.THINKING, role="assistant", content="Read the test first."),
            event(
                parent,
                EventType.TOOL_CALL,
                tool_id="toolu_read_1",
                tool_name="Read",
                tool_input_json='{"file_path":"tests/test_sync.py"}',
            ),
        ]
    )
    await store.create_file_snapshot(
        FileSnapshot(
            tool_id="toolu_read_1",
            session_id=parent.id,
            file_path="tests/test_sync.py",
            content="def test_sync():\n    assert sync(timeout=0.01)\n",
        )
    )
    await store.add_conversation_event(
        event(
            parent,
            EventType.TOOL_RESULT,
            role="user",
            tool_result_for_id="toolu_read_1",
            tool_result_content="def test_sync(): ...",
        )
    )
    await store.mark_tool_call_completed("toolu_read_1", parent.id)
    await store.add_conversation_event(
        event(
            parent,
            EventType.MESSAGE,
            role="assistant",
            content="The timeout is too short for CI; I'll raise it when you resume.",
        )
    )
    await store.update_session(
        parent.id,
        SessionUpdate(
            status=SessionStatus.COMPLETED,
            completed_at=start + timedelta(minutes=5),
            last_activity_at=start + timedelta(minutes=5),
            cost_usd=0.0421,
            num_turns=3,
            input_tokens=5120,
            output_tokens=830,
            duration_ms=300_000,
            summary="Found the cause: a 10 ms timeout",
        ),
    )

    child = Session(
        id=f"sess-{run}-2",
        run_id=f"run-{run}-2",
        query="Go ahead and fix it",
        parent_session_id=parent.id,
        claude_session_id=f"claude-{run}-2",
        model="sonnet",
        working_dir=config.working_dir,
        title=parent.title,
        created_at=start + timedelta(minutes=10),
        last_activity_at=start + timedelta(minutes=10),
    )
    await store.create_session(child)
    await store.add_conversation_event(
        event(child, EventType.MESSAGE, role="user", content=child.query)
    )
    await store.add_conversation_event(
        event(
            child,
            EventType.TOOL_CALL,
            tool_id="toolu_edit_1",
            tool_name="Edit",
            tool_input_json='{"file_path":"tests/test_sync.py","old":"0.01","new":"1.0"}',
        )
    )
    approval = await store.create_approval(
        Approval(
            id=f"local-{uuid.uuid4()}",
            run_id=child.run_id,
            session_id=child.id,
            tool_name="Edit",
            tool_use_id="toolu_edit_1",
            tool_input={"file_path": "tests/test_sync.py", "old": "0.01", "new": "1.0"},
        )
    )
    await store.link_conversation_event_to_approval_using_tool_id(
        child.id, "toolu_edit_1", approval.id
    )
    await store.update_approval_response(approval.id, ApprovalStatus.APPROVED, "ship it")
    await store.update_approval_status(approval.id, ApprovalStatus.APPROVED)
    await store.add_conversation_event(
        event(
            child,
            EventType.TOOL_RESULT,
            role="user",
            tool_result_for_id="toolu_edit_1",
            tool_result_content="Edited 1 line",
        )
    )
    await store.mark_tool_call_completed("toolu_edit_1", child.id)
    await store.add_conversation_event(
        event(
            child,
            EventType.MESSAGE,
            role="assistant",
            content="Raised the timeout to 1 s; the test passes.",
        )
    )
    await store.update_session(
        child.id,
        SessionUpdate(
            status=SessionStatus.COMPLETED,
            completed_at=start + timedelta(minutes=14),
            last_activity_at=start + timedelta(minutes=14),
            cost_usd=0.0187,
            num_turns=2,
        ),
    )
    return parent.id, child.id


async def _demo(target: str) -> None:
    async with open_store(target, create=True) as store:
        parent_id, child_id = await record_demo(store)
        click.echo(f"Recorded a resumed agent session into {describe(target)}\n")
        for session_id in (parent_id, child_id):
            s = await store.get_session(session_id)
            cost = f"${s.cost_usd:.4f}" if s.cost_usd is not None else "-"
            click.echo(
                f"session {s.id}  status={s.status}  cost={cost}  "
                f"parent={s.parent_session_id or '-'}  claude={s.claude_session_id}"
            )
            click.echo(f"  query: {s.query}")
        click.echo("\nconversation of the resumed session (ancestor first):")
        for e in await store.get_session_conversation(child_id):
            text = e.content or e.tool_name or e.tool_result_content
            extra = f" approval={e.approval_status}" if e.approval_status else ""
            done = " completed" if e.is_completed else ""
            click.echo(
                f"  {e.claude_session_id}#{e.sequence:<2} {e.event_type:<11} {e.role or '-':<9} "
                f"{text[:60]}{extra}{done}"
            )
        click.echo("\nMCP servers:")
        for m in await store.get_mcp_servers(parent_id):
            names = ", ".join(sorted(json.loads(m.env_json or "null") or {}))
            click.echo(f"  {m.name:<10} {m.command:<5} args={m.args_json} env keys: {names or '-'}")
        click.echo("\nfile snapshots:")
        for f in await store.get_file_snapshots(parent_id):
            click.echo(f"  {f.file_path} ({len(f.content)} chars, tool {f.tool_id})")
        click.echo(
            "\ncounts: "
            f"sessions={await store.get_session_count()} "
            f"events={await store.get_event_count()} "
            f"approvals={await store.get_approval_count()}"
        )


@cli.command()
@click.option(
    "--db",
    "db",
    metavar="TARGET",
    default=None,
    help=f"Where to record (default: {DEFAULT_DEMO_DB} in the current folder).",
)
def demo(db: str | None) -> None:
    """Record a realistic resumed agent session, then print what was stored.

    Writes agentstore-demo.db in the current folder unless --db names another database
    (the demo never writes to $AGENTSTORE_DATABASE_URL unless you pass it as --db).
    """
    target = db if db is not None else DEFAULT_DEMO_DB
    if not target.strip():
        raise click.UsageError("--db is empty")
    run(_demo(target))
