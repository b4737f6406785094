"""Sessions: one agent run each, with its launch settings, status and results."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from agentstore.errors import DuplicateError, InvalidValueError, NotFoundError
from agentstore.models import (
    Approval,
    ConversationEvent,
    FileSnapshot,
    MCPServer,
    RawEvent,
    RecentPath,
    Session,
    SessionStatus,
    SessionUpdate,
)
from agentstore.repos._base import Database, ModelQuery, build_all
from agentstore.types import instant, instant_key, utcnow
from agentstore.validation import check_enum, check_row, check_value, columns_of, require_id

__all__ = ["SessionRepo"]

T = cast(sa.Table, Session.__table__)
_DEPENDENTS = (ConversationEvent, Approval, MCPServer, RawEvent, FileSnapshot)
# Statuses in which a session can still be running with bypassed permissions.
_ACTIVE = (SessionStatus.RUNNING, SessionStatus.WAITING_INPUT, SessionStatus.STARTING)
SEARCH_DEFAULT_LIMIT = 10
SEARCH_MAX_LIMIT = 50
RECENT_DIRS_DEFAULT_LIMIT = 20


def _newest_first() -> tuple[sa.ColumnElement[Any], ...]:
    return (instant(T.c.last_activity_at).desc(), T.c.id.desc())


def _like_literal(text: str) -> str:
    """``text`` as a LIKE pattern that matches itself anywhere (``\\`` is the escape)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class SessionRepo:
    """Create, read, update and delete sessions."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, session: Session) -> Session:
        """Insert ``session`` and return it.

        Raises :class:`DuplicateError` if the id or run id exists (the stored one is kept),
        :class:`InvalidValueError`/:class:`InvalidStatusError` for bad values.
        """
        require_id(session.id, "Session.id")
        require_id(session.run_id, "Session.run_id")
        values = check_row(session)
        values["status"] = session.status = check_enum(
            SessionStatus, session.status, "session status"
        )
        async with self._db.writing() as conn:
            try:
                await conn.execute(sa.insert(T), values)
            except IntegrityError as exc:
                raise DuplicateError("session", session.id) from exc
        return session

    async def update(self, session_id: str, update: SessionUpdate) -> None:
        """Apply the fields of ``update`` that are set.

        Raises :class:`NotFoundError` if there is no such session (also when nothing is set,
        unlike the seed, which then did not look).
        """
        changes = update.changes()
        spec = {name: (kind, nullable) for name, kind, nullable in columns_of(Session)}
        for name, value in changes.items():
            kind, nullable = spec[name]
            # Only the fields that are pointers in the seed may be set to None (NULL).
            check_value("SessionUpdate", name, kind, nullable, value)
        if "status" in changes:
            changes["status"] = check_enum(SessionStatus, changes["status"], "session status")
        async with self._db.writing() as conn:
            if changes:
                result = await conn.execute(
                    sa.update(T).where(T.c.id == session_id).values(**changes)
                )
                found = result.rowcount > 0
            else:
                found = (
                    await conn.execute(sa.select(T.c.id).where(T.c.id == session_id))
                ).first() is not None
        if not found:
            raise NotFoundError("session", session_id)

    async def hard_delete(self, session_id: str) -> None:
        """Delete the session and every row that refers to it, in one transaction.

        Child sessions are kept (their ``parent_session_id`` still names the deleted one, as
        in hld). Raises :class:`NotFoundError` if there is no such session.
        """
        async with self._db.writing() as conn:
            for model in _DEPENDENTS:
                table = cast(sa.Table, model.__table__)
                await conn.execute(sa.delete(table).where(table.c.session_id == session_id))
            result = await conn.execute(sa.delete(T).where(T.c.id == session_id))
            if result.rowcount == 0:
                raise NotFoundError("session", session_id)

    async def get(self, session_id: str) -> Session:
        """The session with this id; raises :class:`NotFoundError` if there is none."""
        found = await _BY_ID.first(self._db, {"id": session_id})
        if found is None:
            raise NotFoundError("session", session_id)
        return found

    async def get_by_run_id(self, run_id: str) -> Session | None:
        """The session with this run id, or None."""
        return await _BY_RUN_ID.first(self._db, {"run_id": run_id})

    async def list(
        self,
        *,
        limit: int | None = None,
        before: Session | tuple[datetime, str] | None = None,
        include_archived: bool = True,
        statuses: Iterable[str] | None = None,
    ) -> list[Session]:
        """Sessions, most recent activity first (by instant, then id); ``[]`` if none.

        With no arguments, every session (the seed's ``ListSessions``). ``limit`` cuts a
        page; ``before`` continues after the last session of the previous page (that
        session, or its ``(last_activity_at, id)``): a keyset cursor, so sessions inserted
        meanwhile do not shift the pages. ``include_archived=False`` leaves archived ones
        out; ``statuses`` keeps only those statuses.
        """
        values: dict[str, Any] = {}
        wanted: builtins.list[str] | None = None
        if statuses is not None:
            wanted = [check_enum(SessionStatus, s, "session status") for s in statuses]
            values.update({f"status_{i}": status for i, status in enumerate(wanted)})
        if before is not None:
            at, after_id = (
                (before.last_activity_at, before.id) if isinstance(before, Session) else before
            )
            if not isinstance(at, datetime) or not isinstance(after_id, str):
                raise InvalidValueError("before must be a Session or (last_activity_at, id)")
            if at.tzinfo is None:
                raise InvalidValueError("before's last_activity_at is a naive datetime")
            values["before_key"] = instant_key(at, self._db.dialect_name)
            values["before_id"] = after_id
        if limit is not None:
            if not isinstance(limit, int) or isinstance(limit, bool):
                raise InvalidValueError(f"limit must be int or None, got {type(limit).__name__}")
            if limit < 0:
                raise InvalidValueError(f"limit must be >= 0, got {limit}")
            values["limit"] = limit
        query = _list_query(
            include_archived,
            None if wanted is None else len(wanted),
            before is not None,
            limit is not None,
        )
        return await query.all(self._db, values)

    async def search_by_title(
        self, query: str, limit: int = SEARCH_DEFAULT_LIMIT
    ) -> builtins.list[Session]:
        """Leaf sessions whose title, summary or query contains ``query``.

        Case-insensitive, and ``%``, ``_``, ``\\`` match themselves. Archived, draft and
        discarded sessions and sessions that have children are left out. Newest activity
        first; ``limit <= 0`` means 10, and at most 50 are returned (the seed also cut at 20).
        ``[]`` if none match.
        """
        if not isinstance(query, str):
            raise InvalidValueError(f"query must be str, got {type(query).__name__}")
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise InvalidValueError(f"limit must be int, got {type(limit).__name__}")
        if limit <= 0:
            limit = SEARCH_DEFAULT_LIMIT
        limit = min(limit, SEARCH_MAX_LIMIT)
        values = {"pattern": _like_literal(query), "limit": limit}
        return await _search_query(bool(query)).all(self._db, values)

    async def expired_dangerous_permissions(
        self, now: datetime | None = None
    ) -> builtins.list[Session]:
        """Active sessions whose bypass-permissions window has expired, earliest expiry first.

        Active means starting, running or waiting for input. ``[]`` if none.
        """
        at = now if now is not None else utcnow()
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise InvalidValueError("now must be an aware datetime")
        column = T.c.dangerously_skip_permissions_expires_at
        stmt = (
            sa.select(T)
            .where(
                T.c.dangerously_skip_permissions == sa.true(),
                column.is_not(None),
                instant(column) < instant_key(at, self._db.dialect_name),
                T.c.status.in_([s.value for s in _ACTIVE]),
            )
            .order_by(instant(column).asc(), T.c.id.asc())
        )
        async with self._db.reading() as conn:
            return build_all(Session, await conn.execute(stmt))

    async def recent_working_dirs(
        self, limit: int = RECENT_DIRS_DEFAULT_LIMIT
    ) -> builtins.list[RecentPath]:
        """Working directories by their most recent session, newest first.

        '' and '.' and NULL are skipped; ``limit <= 0`` means 20. ``[]`` if none.
        """
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise InvalidValueError(f"limit must be int, got {type(limit).__name__}")
        if limit <= 0:
            limit = RECENT_DIRS_DEFAULT_LIMIT
        key = instant(T.c.last_activity_at)
        ranked = (
            sa.select(
                T.c.working_dir,
                T.c.last_activity_at,
                key.label("k"),
                sa.func.row_number()
                .over(partition_by=T.c.working_dir, order_by=(key.desc(), T.c.id.desc()))
                .label("rn"),
                sa.func.count().over(partition_by=T.c.working_dir).label("uses"),
            )
            .where(T.c.working_dir.is_not(None), T.c.working_dir.not_in(["", "."]))
            .subquery()
        )
        stmt = (
            sa.select(ranked.c.working_dir, ranked.c.last_activity_at, ranked.c.uses)
            .where(ranked.c.rn == 1)
            .order_by(ranked.c.k.desc(), ranked.c.working_dir)
            .limit(limit)
        )
        async with self._db.reading() as conn:
            rows = (await conn.execute(stmt)).all()
        return [RecentPath(path=r[0], last_used=r[1], usage_count=int(r[2])) for r in rows]

    async def count(self) -> int:
        """How many sessions are stored."""
        async with self._db.reading() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(T))).scalar_one())


_BY_ID = ModelQuery(Session, sa.select(T).where(T.c.id == sa.bindparam("id")).limit(1))
_BY_RUN_ID = ModelQuery(Session, sa.select(T).where(T.c.run_id == sa.bindparam("run_id")).limit(1))


@cache
def _list_query(
    include_archived: bool, statuses: int | None, before: bool, limit: bool
) -> ModelQuery[Session]:
    """``list_sessions``'s statement for one combination of its arguments."""
    stmt = sa.select(T)
    if not include_archived:
        stmt = stmt.where(sa.or_(T.c.archived.is_(None), T.c.archived == sa.false()))
    if statuses is not None:
        # One named parameter per status (an IN list would be compiled per call).
        stmt = stmt.where(
            sa.or_(
                sa.false(), *(T.c.status == sa.bindparam(f"status_{i}") for i in range(statuses))
            )
        )
    if before:
        key = instant(T.c.last_activity_at)
        cursor: sa.BindParameter[Any] = sa.bindparam("before_key")
        stmt = stmt.where(
            sa.or_(key < cursor, sa.and_(key == cursor, T.c.id < sa.bindparam("before_id")))
        )
    stmt = stmt.order_by(*_newest_first())
    if limit:
        stmt = stmt.limit(sa.bindparam("limit"))
    return ModelQuery(Session, stmt)


@cache
def _search_query(matching: bool) -> ModelQuery[Session]:
    """``search_sessions_by_title``'s statement, with or without a text to match."""
    children = T.alias("children")
    stmt = sa.select(T).where(
        ~sa.exists().where(children.c.parent_session_id == T.c.id),
        sa.or_(T.c.archived.is_(None), T.c.archived == sa.false()),
        T.c.status != SessionStatus.DRAFT.value,
        T.c.status != SessionStatus.DISCARDED.value,
    )
    if matching:
        # ILIKE on PostgreSQL, lower() on both sides elsewhere: the database folds the case
        # of the text and of the pattern alike (lowering the pattern in Python while SQLite's
        # lower() only folds ASCII made 'ÉCOLE' miss itself).
        pattern: sa.BindParameter[str] = sa.bindparam("pattern")
        stmt = stmt.where(
            sa.or_(
                *(
                    column.ilike(pattern, escape="\\")
                    for column in (T.c.title, T.c.summary, T.c.query)
                )
            )
        )
    return ModelQuery(Session, stmt.order_by(*_newest_first()).limit(sa.bindparam("limit")))
