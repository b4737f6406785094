"""Sessions: one agent run each, with its launch settings, status and results."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import Any, cast

import sqlalchemy as sa

from agentstore.db import Conn, Query, Statement, bind
from agentstore.errors import ConstraintError, DuplicateError, InvalidValueError, NotFoundError
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
from agentstore.repos._base import Database, all_of, first_of
from agentstore.types import codec, instant, instant_key, utcnow
from agentstore.validation import (
    check_datetime,
    check_enum,
    check_row,
    check_text,
    check_value,
    columns_of,
    limit_of,
    require_id,
    require_int,
    require_str,
)

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


class SessionRepo:
    """Create, read, update and delete sessions."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, session: Session) -> Session:
        """Insert ``session`` and return it.

        Raises :class:`DuplicateError` if the id or the run id exists (the stored session is
        kept), :class:`InvalidValueError`/:class:`InvalidStatusError` for bad values.
        """
        if not isinstance(session, Session):
            raise InvalidValueError(f"expected a Session, got {type(session).__name__}")
        values = check_row(session)
        require_id(values["id"], "Session.id")
        require_id(values["run_id"], "Session.run_id")

        async def unit(conn: Conn) -> None:
            try:
                await conn.execute(_INSERT, values)
            except ConstraintError as exc:
                if exc.kind == "primary_key" or exc.constraint == "pk_sessions":
                    raise DuplicateError("session", session.id) from exc
                if exc.kind == "unique":
                    raise DuplicateError("session with run_id", session.run_id) from exc
                raise

        await self._db.write(unit)
        return session

    async def update(self, session_id: str, update: SessionUpdate) -> None:
        """Apply the fields of ``update`` that are set.

        Raises :class:`NotFoundError` if there is no such session (also when nothing is set,
        unlike the seed, which then did not look).
        """
        require_str(session_id, "session_id")
        if not isinstance(update, SessionUpdate):
            raise InvalidValueError(f"expected a SessionUpdate, got {type(update).__name__}")
        changes = update.changes()
        spec = {name: (kind, nullable) for name, kind, nullable in columns_of(Session)}
        for name, value in changes.items():
            kind, nullable = spec[name]
            # Only the fields that are pointers in the seed may be set to None (NULL).
            enum = SessionStatus if name == "status" else None
            changes[name] = check_value(
                "SessionUpdate", name, kind, nullable, value, enum, limit_of(Session, name)
            )
        statement = _update_statement(tuple(sorted(changes)))
        values = {**changes, "id": session_id}

        async def unit(conn: Conn) -> int:
            return await conn.execute(statement, values)

        if not await self._db.write(unit):
            raise NotFoundError("session", session_id)

    async def hard_delete(self, session_id: str) -> None:
        """Delete the session and every row that refers to it, in one transaction.

        Child sessions are kept (their ``parent_session_id`` still names the deleted one, as
        in hld). Raises :class:`NotFoundError` if there is no such session.
        """
        require_str(session_id, "session_id")
        values = {"id": session_id}

        async def unit(conn: Conn) -> int:
            # On PostgreSQL the row lock waits for, then keeps out, appends to the session.
            if not await conn.rows(_LOCK_FOR_DELETE, values):
                return 0
            for statement in _DELETE_DEPENDENTS:
                await conn.execute(statement, values)
            return await conn.execute(_DELETE, values)

        if not await self._db.write(unit):
            raise NotFoundError("session", session_id)

    async def get(self, session_id: str) -> Session:
        """The session with this id; raises :class:`NotFoundError` if there is none."""
        found = await first_of(self._db, _BY_ID, {"id": require_str(session_id, "session_id")})
        if found is None:
            raise NotFoundError("session", session_id)
        return found

    async def get_by_run_id(self, run_id: str) -> Session | None:
        """The session with this run id, or None."""
        return await first_of(self._db, _BY_RUN_ID, {"run_id": require_str(run_id, "run_id")})

    async def list(
        self,
        *,
        limit: int | None = None,
        before: Session | tuple[datetime, str] | None = None,
        include_archived: bool = True,
        statuses: Iterable[str] | None = None,
    ) -> builtins.list[Session]:
        """Sessions, most recent activity first (by instant, then id); ``[]`` if none.

        With no arguments, every session (the seed's ``ListSessions``). ``limit`` cuts a
        page; ``before`` continues after the last session of the previous page (that
        session, or its ``(last_activity_at, id)``): a keyset cursor, so sessions inserted
        meanwhile do not shift the pages. ``include_archived=False`` leaves archived ones
        out; ``statuses`` keeps only those statuses.
        """
        values: dict[str, Any] = {}
        wanted: builtins.list[str] | None = None
        if not isinstance(include_archived, bool):
            raise InvalidValueError("include_archived must be bool")
        if statuses is not None:
            if isinstance(statuses, str) or not isinstance(statuses, Iterable):
                raise InvalidValueError("statuses must be a list of statuses, or None")
            wanted = [check_enum(SessionStatus, s, "session status") for s in statuses]
            values.update({f"status_{i}": status for i, status in enumerate(wanted)})
        if before is not None:
            if isinstance(before, Session):
                at, after_id = before.last_activity_at, before.id
            elif isinstance(before, tuple) and len(before) == 2:
                at, after_id = before
            else:
                raise InvalidValueError("before must be a Session or (last_activity_at, id)")
            if not isinstance(at, datetime) or not isinstance(after_id, str):
                raise InvalidValueError("before must be a Session or (last_activity_at, id)")
            check_datetime(at, "before's last_activity_at")
            values["before_key"] = instant_key(at, self._db.dialect)
            values["before_id"] = check_text(after_id, "before's id")
        if limit is not None:
            values["limit"] = require_int(limit, "limit", minimum=0)
        query = _list_query(
            include_archived,
            None if wanted is None else len(wanted),
            before is not None,
            limit is not None,
        )
        return await all_of(self._db, query, values)

    async def search_by_title(
        self, query: str, limit: int = SEARCH_DEFAULT_LIMIT
    ) -> builtins.list[Session]:
        """Leaf sessions whose title, summary or query contains ``query``.

        Case-insensitive (Unicode-aware, on both backends), and ``%``, ``_``, ``\\`` match
        themselves. Archived, draft and discarded sessions and sessions that have children
        are left out. Newest activity first; ``limit <= 0`` means 10, and at most 50 are
        returned (the seed also cut at 20). ``[]`` if none match.
        """
        text = require_str(query, "query")
        limit = require_int(limit, "limit")
        if limit <= 0:
            limit = SEARCH_DEFAULT_LIMIT
        limit = min(limit, SEARCH_MAX_LIMIT)
        values = {"pattern": text.lower(), "limit": limit}
        return await all_of(self._db, _search_query(self._db.dialect, bool(text)), values)

    async def expired_dangerous_permissions(
        self, now: datetime | None = None
    ) -> builtins.list[Session]:
        """Active sessions whose bypass-permissions window has expired, earliest expiry first.

        Active means starting, running or waiting for input. ``[]`` if none.
        """
        at = now if now is not None else utcnow()
        if not isinstance(at, datetime):
            raise InvalidValueError("now must be an aware datetime")
        check_datetime(at, "now")
        return await all_of(self._db, _EXPIRED, {"now": instant_key(at, self._db.dialect)})

    async def recent_working_dirs(
        self, limit: int = RECENT_DIRS_DEFAULT_LIMIT
    ) -> builtins.list[RecentPath]:
        """Working directories by their most recent session, newest first.

        '' and '.' and NULL are skipped; ``limit <= 0`` means 20. ``[]`` if none.
        """
        limit = require_int(limit, "limit")
        if limit <= 0:
            limit = RECENT_DIRS_DEFAULT_LIMIT
        decode = codec(T.c.last_activity_at.type, self._db.dialect).decode
        assert decode is not None

        async def unit(conn: Conn) -> builtins.list[RecentPath]:
            rows = await conn.rows(_RECENT_DIRS, {"limit": limit})
            return [
                RecentPath(path=r[0], last_used=decode(r[1]), usage_count=int(r[2])) for r in rows
            ]

        return await self._db.read(unit)

    async def count(self) -> int:
        """How many sessions are stored."""

        async def unit(conn: Conn) -> int:
            return int((await conn.rows(_COUNT))[0][0])

        return await self._db.read(unit)


# --- statements -----------------------------------------------------------------------------

_INSERT = Statement(sa.insert(T).values({c.key: bind(c.key, c) for c in T.columns}))
_BY_ID = Query(Session, sa.select(T).where(T.c.id == sa.bindparam("id")).limit(1))
_BY_RUN_ID = Query(Session, sa.select(T).where(T.c.run_id == sa.bindparam("run_id")).limit(1))
_LOCK_FOR_DELETE = Statement(
    sa.select(T.c.id).where(T.c.id == sa.bindparam("id")).with_for_update()
)
_DELETE_DEPENDENTS = tuple(
    Statement(sa.delete(table).where(table.c.session_id == sa.bindparam("id")))
    for table in (cast(sa.Table, model.__table__) for model in _DEPENDENTS)
)
_DELETE = Statement(sa.delete(T).where(T.c.id == sa.bindparam("id")))
_COUNT = Statement(sa.select(sa.func.count()).select_from(T))


@cache
def _update_statement(keys: tuple[str, ...]) -> Statement:
    """``update_session``'s statement for one set of changed fields."""
    if not keys:  # nothing to change: is it there?
        return Statement(sa.update(T).where(T.c.id == sa.bindparam("id")).values(id=T.c.id))
    return Statement(
        sa.update(T)
        .where(T.c.id == sa.bindparam("id"))
        .values({key: bind(key, T.c[key]) for key in keys})
    )


_EXPIRES = T.c.dangerously_skip_permissions_expires_at
_EXPIRED = Query(
    Session,
    sa.select(T)
    .where(
        T.c.dangerously_skip_permissions == sa.true(),
        _EXPIRES.is_not(None),
        instant(_EXPIRES) < sa.bindparam("now"),
        sa.or_(*(T.c.status == s.value for s in _ACTIVE)),
    )
    .order_by(instant(_EXPIRES).asc(), T.c.id.asc()),
)


def _recent_dirs() -> Statement:
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
        .where(T.c.working_dir.is_not(None), T.c.working_dir != "", T.c.working_dir != ".")
        .subquery()
    )
    return Statement(
        sa.select(ranked.c.working_dir, ranked.c.last_activity_at, ranked.c.uses)
        .where(ranked.c.rn == 1)
        .order_by(ranked.c.k.desc(), ranked.c.working_dir)
        .limit(sa.bindparam("limit"))
    )


_RECENT_DIRS = _recent_dirs()


@cache
def _list_query(
    include_archived: bool, statuses: int | None, before: bool, limit: bool
) -> Query[Session]:
    """``list_sessions``'s statement for one combination of its arguments."""
    stmt = sa.select(T)
    if not include_archived:
        stmt = stmt.where(sa.or_(T.c.archived.is_(None), T.c.archived == sa.false()))
    if statuses is not None:
        # One named parameter per status (an IN list would be compiled per call).
        stmt = stmt.where(
            sa.or_(
                sa.false(),
                *(
                    T.c.status == sa.bindparam(f"status_{i}", type_=sa.Text())
                    for i in range(statuses)
                ),
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
    return Query(Session, stmt)


@cache
def _search_query(dialect: str, matching: bool) -> Query[Session]:
    """``search_sessions_by_title``'s statement, with or without a text to match."""
    children = T.alias("children")
    stmt = sa.select(T).where(
        ~sa.exists().where(children.c.parent_session_id == T.c.id),
        sa.or_(T.c.archived.is_(None), T.c.archived == sa.false()),
        T.c.status != SessionStatus.DRAFT.value,
        T.c.status != SessionStatus.DISCARDED.value,
    )
    if matching:
        # The text is lower-cased in Python and each column by Unicode's rules in the
        # database (SQLite's lower() folds ASCII only, so the store registers Python's
        # there; PostgreSQL's lower() follows the database's UTF-8 ctype). instr/strpos
        # match the text literally: '%', '_' and '\\' are themselves.
        pattern: sa.BindParameter[str] = sa.bindparam("pattern", type_=sa.Text())
        fold = sa.func.agentstore_lower if dialect == "sqlite" else sa.func.lower
        find = sa.func.instr if dialect == "sqlite" else sa.func.strpos
        stmt = stmt.where(
            sa.or_(
                *(
                    find(fold(sa.func.coalesce(column, "")), pattern) > 0
                    for column in (T.c.title, T.c.summary, T.c.query)
                )
            )
        )
    return Query(Session, stmt.order_by(*_newest_first()).limit(sa.bindparam("limit")))
