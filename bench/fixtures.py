"""The rows the workloads need, made before any timing starts (never timed)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import cast

import sqlalchemy as sa

from agentstore import ConversationEvent, Session, SessionStatus, Store

SESSIONS = cast(sa.Table, Session.__table__)
SESSION_ID = "bench-session"
CLAUDE_ID = "bench-claude"


def new_event(content: str) -> ConversationEvent:
    """The event W1, W2 and W4 append (built by the caller, inside the timed region)."""
    return ConversationEvent(
        session_id=SESSION_ID,
        claude_session_id=CLAUDE_ID,
        event_type="message",
        role="user",
        content=content,
    )


async def one_session(store: Store) -> None:
    await store.create_session(
        Session(id=SESSION_ID, run_id="bench-run", query="bench", claude_session_id=CLAUDE_ID)
    )


async def prepare(target: str) -> None:
    """Create agentstore's schema (Store.open migrates) and the one session writes go to."""
    store = await Store.open(target)
    try:
        await one_session(store)
    finally:
        await store.close()


async def insert_sessions(store: Store, sessions: Sequence[Session]) -> None:
    """Bulk-insert sessions through ``store.engine`` (setup only, so it may be fast)."""
    rows = [{c.key: getattr(s, c.key) for c in SESSIONS.columns} for s in sessions]
    async with store.engine.begin() as conn:
        for start in range(0, len(rows), 1_000):
            await conn.execute(sa.insert(SESSIONS), rows[start : start + 1_000])


async def add_events(store: Store, session_id: str, claude_id: str, count: int) -> None:
    rng = random.Random(claude_id)
    for start in range(0, count, 1_000):
        batch = []
        for i in range(start, min(count, start + 1_000)):
            kind = rng.choice(("message", "message", "tool_call", "tool_result", "thinking"))
            batch.append(
                ConversationEvent(
                    session_id=session_id,
                    claude_session_id=claude_id,
                    event_type=kind,
                    role="assistant" if i % 2 else "user",
                    content=f"event {i}: " + "lorem ipsum dolor sit amet " * rng.randint(1, 6),
                    tool_id=f"toolu_{i}" if kind == "tool_call" else "",
                    tool_name="Bash" if kind == "tool_call" else "",
                    tool_input_json='{"command": "ls -la"}' if kind == "tool_call" else "",
                )
            )
        await store.add_conversation_events(batch)


def activity(rng: random.Random, base: datetime) -> datetime:
    moment = base - timedelta(seconds=rng.randint(0, 90 * 86_400))
    if rng.random() < 0.8:
        moment = moment.replace(microsecond=rng.randint(0, 999_999))
    else:
        moment = moment.replace(microsecond=0)
    return moment


def newest_first(sessions: Sequence[Session]) -> list[str]:
    """The ids in agentstore's order: most recent activity first, then id descending."""
    ordered = sorted(sessions, key=lambda s: (s.last_activity_at, s.id), reverse=True)
    return [s.id for s in ordered]


def list_sessions_fixture(count: int) -> list[Session]:
    rng = random.Random(5)
    base = datetime(2025, 6, 1, tzinfo=UTC)
    statuses = [s.value for s in SessionStatus]
    sessions = []
    for i in range(count):
        at = activity(rng, base)
        sessions.append(
            Session(
                id=f"sess-{i:06d}",
                run_id=f"run-{i:06d}",
                query=f"fix bug #{i} in module {rng.randint(1, 400)}",
                claude_session_id=f"claude-{i:06d}",
                title=f"Session {i}",
                summary="summary " * rng.randint(0, 8),
                model="sonnet",
                working_dir=f"/home/dev/project{rng.randint(1, 40)}",
                status=rng.choice(statuses),
                created_at=at - timedelta(minutes=rng.randint(1, 600)),
                last_activity_at=at,
                archived=rng.random() < 0.1,
                cost_usd=round(rng.random(), 4),
                input_tokens=rng.randint(0, 100_000),
                output_tokens=rng.randint(0, 20_000),
            )
        )
    return sessions


def search_fixture(count: int) -> list[Session]:
    """Sessions of which a few percent match "needle" in title, summary or query.

    Some matches are archived, draft or discarded, and some are parents of a resumed session;
    none of those may be returned.
    """
    rng = random.Random(7)
    base = datetime(2025, 6, 1, tzinfo=UTC)
    sessions = []
    for i in range(count):
        at = activity(rng, base)
        roll = rng.random()
        title, summary, query = f"Refactor module {i}", f"summary of {i}", f"make tests pass {i}"
        if roll < 0.04:
            title = f"Find the Needle in module {i}"
        elif roll < 0.06:
            summary = f"looked for a NEEDLE ({i})"
        elif roll < 0.08:
            query = f"thread the needle_{i}"
        status_roll = rng.random()
        status = (
            SessionStatus.DRAFT
            if status_roll < 0.05
            else SessionStatus.DISCARDED
            if status_roll < 0.08
            else rng.choice((SessionStatus.COMPLETED, SessionStatus.RUNNING, SessionStatus.FAILED))
        )
        sessions.append(
            Session(
                id=f"sess-{i:06d}",
                run_id=f"run-{i:06d}",
                query=query,
                claude_session_id=f"claude-{i:06d}",
                title=title,
                summary=summary,
                status=status.value,
                created_at=at - timedelta(minutes=5),
                last_activity_at=at,
                archived=rng.random() < 0.1,
            )
        )
    # A few resumed sessions: their parents (often matches) are no longer leaves.
    for k in range(max(1, count // 100)):
        parent = sessions[rng.randrange(count)]
        sessions.append(
            Session(
                id=f"resumed-{k:05d}",
                run_id=f"resumed-run-{k:05d}",
                query="continue",
                claude_session_id=f"resumed-claude-{k:05d}",
                parent_session_id=parent.id,
                title=f"Resumed {k}",
                status=SessionStatus.COMPLETED.value,
                last_activity_at=activity(rng, base),
            )
        )
    return sessions


def search_expected(sessions: Sequence[Session], text: str, limit: int) -> list[str]:
    """The ids ``search_sessions_by_title(text, limit)`` must return, worked out in Python."""
    parents = {s.parent_session_id for s in sessions if s.parent_session_id}
    hidden = {SessionStatus.DRAFT.value, SessionStatus.DISCARDED.value}
    needle = text.lower()
    found = [
        s
        for s in sessions
        if s.id not in parents
        and not s.archived
        and s.status not in hidden
        and any(needle in (value or "").lower() for value in (s.title, s.summary, s.query))
    ]
    return newest_first(found)[:limit]
