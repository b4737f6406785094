"""Looking after the store as a whole: how much it holds, and pruning what is old.

Pruning (:meth:`MaintenanceRepo.prune`, SPEC §10) is one write transaction:

* raw events and file snapshots created before their instants are deleted, whichever
  session they belong to (they are kept for debugging and for diffs; age alone decides);
* an archived session whose last activity is before its instant is deleted with every row
  that belongs to it (events, approvals, MCP servers, raw events, snapshots) — never a
  session that is not archived, never a session with a pending approval, and never a
  session that a kept session descends from: a resumed session reads its ancestors'
  conversation (``get_session_conversation``), so a parent goes only together with all of
  its descendants. A session whose ``last_activity_at`` is not a time is kept.

Times are compared by instant on both backends (whatever form hld stored them in). On
PostgreSQL the candidate sessions are locked (``FOR UPDATE``) before the sessions to take
are decided, so a concurrent un-archive, approval or append waits and then finds the
session kept or gone, never half-deleted. ``dry_run`` runs the very same deletions and
rolls them back: its counts are exactly what a real prune would take at that moment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from agentstore.db import Conn, Statement
from agentstore.errors import InvalidValueError
from agentstore.models import (
    Approval,
    ApprovalStatus,
    Base,
    ConversationEvent,
    FileSnapshot,
    MCPServer,
    RawEvent,
    Session,
)
from agentstore.repos._base import Database
from agentstore.types import instant, instant_key
from agentstore.validation import check_datetime

__all__ = ["DATA_TABLES", "PRUNED", "TABLES", "MaintenanceRepo", "StoreStats"]

DATA_TABLES: Final[tuple[str, ...]] = (
    "sessions",
    "conversation_events",
    "approvals",
    "mcp_servers",
    "raw_events",
    "file_snapshots",
)
"""The tables that hold data (a copy's destination must have none of their rows)."""
TABLES: Final[tuple[str, ...]] = (*DATA_TABLES, "user_settings", "schema_version")
"""The store's tables (hld's), in the order reports list them."""


@dataclass(frozen=True)
class StoreStats:
    """Rows per table and, on SQLite, the size of the file (and of its write-ahead log)."""

    rows: dict[str, int] = field(default_factory=dict)
    file_bytes: int | None = None
    wal_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"rows": dict(self.rows), "file_bytes": self.file_bytes, "wal_bytes": self.wal_bytes}


def _count_all() -> Statement:
    tables = [Base.metadata.tables[name] for name in TABLES]
    counts = [
        sa.select(sa.literal(table.name).label("name"), sa.func.count().label("rows")).select_from(
            table
        )
        for table in tables
    ]
    return Statement(sa.union_all(*counts))


_COUNT_ALL = _count_all()

PRUNED: tuple[str, ...] = ("session", "event", "approval", "mcp_server", "raw_event", "snapshot")
"""The keys of :meth:`MaintenanceRepo.prune`'s counts (the export's line types)."""

_SESSIONS = cast(sa.Table, Session.__table__)
_APPROVALS = cast(sa.Table, Approval.__table__)
_RAW = cast(sa.Table, RawEvent.__table__)
_SNAPSHOTS = cast(sa.Table, FileSnapshot.__table__)
_BEFORE: sa.BindParameter[Any] = sa.bindparam("before")  # instant_key(): text or timestamptz

# Rows that belong to a session, in the order they are deleted (the session last).
_BELONGING: tuple[tuple[str, sa.Table], ...] = (
    ("event", cast(sa.Table, ConversationEvent.__table__)),
    ("approval", _APPROVALS),
    ("mcp_server", cast(sa.Table, MCPServer.__table__)),
    ("raw_event", _RAW),
    ("snapshot", _SNAPSHOTS),
    ("session", _SESSIONS),
)


def _key_column(table: sa.Table) -> sa.ColumnElement[Any]:
    return table.c.id if table is _SESSIONS else table.c.session_id


_DELETE_ONE: tuple[tuple[str, Statement], ...] = tuple(
    (kind, Statement(sa.delete(t).where(_key_column(t) == sa.bindparam("id", type_=sa.Text()))))
    for kind, t in _BELONGING
)
"""SQLite: one session at a time (each an index lookup in the writer's thread)."""
_DELETE_ANY: tuple[tuple[str, Statement], ...] = tuple(
    (
        kind,
        Statement(
            sa.delete(t).where(
                _key_column(t) == sa.any_(sa.bindparam("ids", type_=postgresql.ARRAY(sa.Text())))
            )
        ),
    )
    for kind, t in _BELONGING
)
"""PostgreSQL: every session to take, in one statement per table."""

_DELETE_OLD_RAW = Statement(sa.delete(_RAW).where(instant(_RAW.c.created_at) < _BEFORE))
_DELETE_OLD_SNAPSHOTS = Statement(
    sa.delete(_SNAPSHOTS).where(instant(_SNAPSHOTS.c.created_at) < _BEFORE)
)


# Archived, and last active before the instant: what may go (locked first on PostgreSQL).
_ARCHIVED_BEFORE = sa.and_(
    _SESSIONS.c.archived == sa.true(), instant(_SESSIONS.c.last_activity_at) < _BEFORE
)


def _is_candidate() -> sa.ColumnElement[bool]:
    pending = sa.exists().where(
        _APPROVALS.c.session_id == _SESSIONS.c.id,
        _APPROVALS.c.status == ApprovalStatus.PENDING.value,
    )
    return sa.and_(_ARCHIVED_BEFORE, ~pending)


_LOCK_CANDIDATES = Statement(sa.select(_SESSIONS.c.id).where(_ARCHIVED_BEFORE).with_for_update())
_SESSION_FACTS = Statement(
    sa.select(
        _SESSIONS.c.id,
        _SESSIONS.c.parent_session_id,
        sa.case((_is_candidate(), 1), else_=0),
    )
)


def _to_take(facts: list[Any]) -> list[str]:
    """The candidate sessions that no kept session descends from."""
    parent_of = {row[0]: row[1] for row in facts}
    candidates = {row[0] for row in facts if row[2]}
    if not candidates:
        return []
    protected: set[str] = set()
    for session_id, _, candidate in facts:
        if candidate:
            continue
        parent = parent_of.get(session_id)
        while parent and parent in parent_of and parent not in protected:
            protected.add(parent)
            parent = parent_of.get(parent)
    return sorted(candidates - protected)


class _DryRun(Exception):
    """Raised at the end of a dry run's unit, so that its transaction rolls back."""

    def __init__(self, counts: dict[str, int]) -> None:
        super().__init__("dry run")
        self.counts = counts


class MaintenanceRepo:
    """Whole-store operations: row counts, pruning."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def prune(
        self,
        *,
        raw_events_before: datetime | None = None,
        snapshots_before: datetime | None = None,
        archived_sessions_before: datetime | None = None,
        dry_run: bool = False,
    ) -> dict[str, int]:
        """Delete what is older than the given instants, in one transaction (SPEC §10);
        returns rows deleted per type (``session``, ``event``, ``approval``,
        ``mcp_server``, ``raw_event``, ``snapshot``) — what would go, with ``dry_run``.

        ``raw_events_before`` / ``snapshots_before``: raw events / file snapshots created
        before that instant, of any session. ``archived_sessions_before``: archived sessions
        whose last activity is before it, with everything that belongs to them; never a
        session that is not archived or has a pending approval, nor one a kept session
        descends from (see the module). Times must be aware datetimes; ``None`` prunes
        nothing of that kind.
        """
        keys: dict[str, Any] = {}
        for name, value in (
            ("raw_events_before", raw_events_before),
            ("snapshots_before", snapshots_before),
            ("archived_sessions_before", archived_sessions_before),
        ):
            if value is None:
                continue
            if not isinstance(value, datetime):
                raise InvalidValueError(f"{name} must be an aware datetime or None")
            keys[name] = instant_key(check_datetime(value, name), self._db.dialect)
        if not isinstance(dry_run, bool):
            raise InvalidValueError("dry_run must be bool")

        async def unit(conn: Conn) -> dict[str, int]:
            counts = dict.fromkeys(PRUNED, 0)
            if "raw_events_before" in keys:
                before = {"before": keys["raw_events_before"]}
                counts["raw_event"] += await conn.execute(_DELETE_OLD_RAW, before)
            if "snapshots_before" in keys:
                before = {"before": keys["snapshots_before"]}
                counts["snapshot"] += await conn.execute(_DELETE_OLD_SNAPSHOTS, before)
            if "archived_sessions_before" in keys:
                before = {"before": keys["archived_sessions_before"]}
                if conn.dialect != "sqlite":
                    await conn.rows(_LOCK_CANDIDATES, before)
                taken = _to_take(await conn.rows(_SESSION_FACTS, before))
                if taken and conn.dialect == "sqlite":
                    for session_id in taken:
                        for kind, statement in _DELETE_ONE:
                            counts[kind] += await conn.execute(statement, {"id": session_id})
                elif taken:
                    for kind, statement in _DELETE_ANY:
                        counts[kind] += await conn.execute(statement, {"ids": taken})
            if dry_run:
                raise _DryRun(counts)
            return counts

        try:
            return await self._db.write(unit)
        except _DryRun as done:
            return done.counts

    async def row_counts(self) -> dict[str, int]:
        """Rows per table, all counted in one snapshot."""

        async def unit(conn: Conn) -> dict[str, int]:
            return {str(name): int(rows) for name, rows in await conn.rows(_COUNT_ALL)}

        counts = await self._db.read(unit, snapshot=True)
        return {name: counts.get(name, 0) for name in TABLES}
