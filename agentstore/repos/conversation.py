"""Conversation events: messages, tool calls and results, numbered per Claude session."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from functools import cache
from itertools import chain
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from agentstore.errors import DuplicateError, InvalidValueError, NotFoundError
from agentstore.models import ApprovalStatus, ConversationEvent, EventType, Session
from agentstore.repos._base import Database, ModelQuery, build, build_all
from agentstore.repos._driver import DRIVER_INTEGRITY_ERRORS, Driver, DriverStatement, bind
from agentstore.repos._errors import integrity_kind
from agentstore.types import format_timestamp
from agentstore.validation import check_enum, check_row, require_id, sqlite_row_encoder

__all__ = ["ConversationRepo"]

T = cast(sa.Table, ConversationEvent.__table__)
S = cast(sa.Table, Session.__table__)
_TOOL_CALL = EventType.TOOL_CALL.value


_INTEGRITY_ERRORS: tuple[type[Exception], ...] = (IntegrityError, *DRIVER_INTEGRITY_ERRORS)
_EVENT_TYPES = frozenset(EventType)
_APPROVAL_STATUSES = frozenset(ApprovalStatus)


def _check_event(event: ConversationEvent) -> dict[str, Any]:
    """The event's column values (all but the id), checked; raises before anything is written."""
    if not isinstance(event, ConversationEvent):
        raise InvalidValueError(f"expected a ConversationEvent, got {type(event).__name__}")
    values = check_row(event)
    del values["id"]
    require_id(values["session_id"], "ConversationEvent.session_id")
    if values["event_type"] not in _EVENT_TYPES:
        check_enum(EventType, values["event_type"], "event type")
    if values["approval_status"] and values["approval_status"] not in _APPROVAL_STATUSES:
        check_enum(ApprovalStatus, values["approval_status"], "approval status")
    return values


def lock_key(claude_session_id: str) -> int:
    """The PostgreSQL advisory-lock key of a Claude session: a signed 64-bit hash of its id.

    Computed here rather than by the server so that the hot path can send it inline with its
    BEGIN (one round trip); every process and agentstore version derives the same key.
    """
    digest = hashlib.blake2b(claude_session_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _lock_statement(claude_session_ids: Sequence[str]) -> str:
    # Integers only (computed above), never caller text, go into this SQL.
    keys = sorted({lock_key(key) for key in claude_session_ids})
    return "; ".join(f"SELECT pg_advisory_xact_lock({key})" for key in keys)


async def _lock_sequence(conn: AsyncConnection, claude_session_ids: Sequence[str]) -> None:
    """Serialise appends to the same Claude sessions across connections and processes.

    On SQLite the write transaction already holds the database's write lock (``BEGIN
    IMMEDIATE``). On PostgreSQL a transaction-scoped advisory lock per Claude session does
    it, taken in sorted order so that batches cannot deadlock.
    """
    if conn.dialect.name != "postgresql":
        return
    for key in sorted({lock_key(key) for key in claude_session_ids}):
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


async def _next_sequence(conn: AsyncConnection, claude_session_id: str) -> int:
    current = (
        await conn.execute(
            sa.select(sa.func.max(T.c.sequence)).where(T.c.claude_session_id == claude_session_id)
        )
    ).scalar()
    return int(current or 0) + 1


# Every column but the id, in table order: what an append writes.
_WRITTEN = [c for c in T.columns if c.key != "id"]
_WRITTEN_KEYS = [c.key for c in _WRITTEN]

# One append is one statement: the next sequence is computed inside the INSERT, which on
# SQLite takes the write lock before it reads, so no other writer — task, process or hld —
# can slip in between (on PostgreSQL an advisory lock is taken first, see _lock_sequence).
_APPEND = (
    sa.insert(T)
    .from_select(
        _WRITTEN_KEYS,
        sa.select(
            *(
                sa.func.coalesce(sa.func.max(T.c.sequence), 0) + 1
                if c.key == "sequence"
                else bind(c.key, c)
                for c in _WRITTEN
            )
        ).where(T.c.claude_session_id == bind("claude_session_id", T.c.claude_session_id)),
    )
    .returning(T.c.id, T.c.sequence)
)
_APPEND_DRIVER = DriverStatement(_APPEND)
_INSERT_DRIVER = DriverStatement(sa.insert(T).values({c.key: bind(c.key, c) for c in _WRITTEN}))
_INSERT_SQLITE = _INSERT_DRIVER.on("sqlite")
_LAST_SEQUENCES_PG = (
    "SELECT claude_session_id, MAX(sequence) FROM conversation_events "
    "WHERE claude_session_id = ANY($1::text[]) GROUP BY claude_session_id"
)
# asyncpg pipelines executemany; the new ids are then read back by their sequences (a
# multi-row INSERT … RETURNING measured twice as slow here: PostgreSQL plans it every time).
_IDS_PG = (
    "SELECT sequence, id FROM conversation_events WHERE claude_session_id = $1 "
    "AND sequence BETWEEN $2 AND $3"
)


# A batch goes in as INSERT … VALUES (…), (…), …: one statement binds every row in C, about
# a third faster than executemany's bind-step-reset per row; up to 1,000 rows a statement,
# fewer if this SQLite allows fewer parameters (999 before SQLite 3.32).
def _rows_per_insert() -> int:
    probe = sqlite3.connect(":memory:")
    try:
        limit = probe.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    finally:
        probe.close()
    return max(1, min(1000, limit // len(_INSERT_SQLITE.names)))


_ROWS_PER_INSERT = _rows_per_insert()


@cache
def _multi_row_insert(rows: int) -> str:
    """``_INSERT_SQLITE`` for ``rows`` rows (cached: SQLite's statement cache keeps each)."""
    head, _, values = _INSERT_SQLITE.sql.partition(" VALUES ")
    return f"{head} VALUES {', '.join([values] * rows)}"


_ENCODE_ROW = sqlite_row_encoder(ConversationEvent, _INSERT_SQLITE.names)
_AT = {name: i for i, name in enumerate(_INSERT_SQLITE.names)}
_SEQUENCE_AT, _CLAUDE_AT = _AT["sequence"], _AT["claude_session_id"]
_SESSION_AT, _TYPE_AT, _APPROVAL_AT = _AT["session_id"], _AT["event_type"], _AT["approval_status"]


def _encode_event(event: ConversationEvent) -> list[Any]:
    """The event as a row for the batch INSERT on SQLite, after every check _check_event makes."""
    if event.__class__ is not ConversationEvent and not isinstance(event, ConversationEvent):
        raise InvalidValueError(f"expected a ConversationEvent, got {type(event).__name__}")
    row: list[Any] = _ENCODE_ROW(event)
    if (
        not row[_SESSION_AT]
        or row[_TYPE_AT] not in _EVENT_TYPES
        or (row[_APPROVAL_AT] and row[_APPROVAL_AT] not in _APPROVAL_STATUSES)
    ):
        _check_event(event)  # raises the precise error
    return row


def _to_driver(values: dict[str, Any], dialect: str) -> dict[str, Any]:
    """Checked values as the driver binds them (what the column types do on the portable path)."""
    values["event_type"] = str(values["event_type"])
    if dialect == "sqlite":
        values["created_at"] = format_timestamp(values["created_at"])
        values["is_completed"] = 1 if values["is_completed"] else 0
    return values


async def _append_postgresql(
    conn: Any, sql: str, args: tuple[Any, ...], claude_session_id: str
) -> tuple[int, int]:
    """One append on asyncpg: BEGIN and the lock in one round trip, the INSERT, COMMIT."""
    await conn.execute(f"BEGIN; {_lock_statement([claude_session_id])}")
    try:
        row = await conn.fetchrow(sql, *args)
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")
    return int(row[0]), int(row[1])


def _translate(exc: Exception, event: ConversationEvent) -> Exception:
    if integrity_kind(exc) == "foreign_key":
        return NotFoundError("session", event.session_id)
    return DuplicateError("conversation event", (event.claude_session_id, event.sequence))


class ConversationRepo:
    """Append and read conversation events; track tool calls and their approvals."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, event: ConversationEvent) -> ConversationEvent:
        """Append ``event``; sets its ``sequence`` (next in its Claude session) and ``id``.

        Sequences are unique and gap-free per ``claude_session_id``, however many tasks or
        processes append at once. Raises :class:`NotFoundError` if the session does not
        exist and :class:`InvalidValueError` for bad values; nothing is written then.
        """
        values = _check_event(event)
        lease = self._db.driver()
        if lease is not None:
            async with lease as driver:
                append = _APPEND_DRIVER.on(driver.dialect)
                args = append.args(_to_driver(values, driver.dialect))
                try:
                    if driver.dialect == "sqlite":
                        (new_id, sequence), *_ = await driver.conn.execute_fetchall(
                            append.sql, args
                        )
                    else:
                        new_id, sequence = await _append_postgresql(
                            driver.conn, append.sql, args, event.claude_session_id
                        )
                except DRIVER_INTEGRITY_ERRORS as exc:
                    raise _translate(exc, event) from exc
        else:
            async with self._db.writing() as conn:
                await _lock_sequence(conn, [event.claude_session_id])
                try:
                    row = (await conn.execute(_APPEND, values)).one()
                except IntegrityError as exc:
                    raise _translate(exc, event) from exc
            new_id, sequence = row
        event.sequence = int(sequence)
        event.id = int(new_id)
        return event

    async def add_many(self, events: Sequence[ConversationEvent]) -> list[ConversationEvent]:
        """Append a batch in one transaction, with contiguous sequences per Claude session.

        Sets ``sequence`` and ``id`` on each event; all or nothing.
        """
        batch = list(events)
        lease = self._db.driver()
        on_sqlite_driver = lease is not None and self._db.dialect_name == "sqlite"
        # Every event is checked before anything is written.
        prepared: list[Any] = [
            _encode_event(event) if on_sqlite_driver else _check_event(event) for event in batch
        ]
        if not batch:
            return batch
        try:
            if lease is None:
                await self._add_many_portable(batch, prepared)
            else:
                async with lease as driver:
                    if on_sqlite_driver:
                        await self._add_many_sqlite(driver.conn, batch, prepared)
                    else:
                        await self._add_many_postgresql(driver.conn, batch, prepared)
        except _INTEGRITY_ERRORS as exc:
            raise await self._translate_batch(exc, batch) from exc
        return batch

    async def _add_many_portable(
        self, batch: list[ConversationEvent], checked: list[dict[str, Any]]
    ) -> None:
        """Through SQLAlchemy, in the caller's transaction (``store.transaction()``)."""
        async with self._db.writing() as conn:
            await _lock_sequence(conn, [e.claude_session_id for e in batch])
            next_of: dict[str, int] = {}
            for event, values in zip(batch, checked, strict=True):
                key = event.claude_session_id
                if key not in next_of:
                    next_of[key] = await _next_sequence(conn, key)
                values["sequence"] = next_of[key]
                next_of[key] += 1
            result = await conn.execute(
                sa.insert(T).returning(T.c.id, sort_by_parameter_order=True), checked
            )
            ids = [int(r[0]) for r in result]
        for event, values, new_id in zip(batch, checked, ids, strict=True):
            event.sequence = values["sequence"]
            event.id = new_id

    @staticmethod
    async def _add_many_sqlite(
        raw: Any, batch: list[ConversationEvent], rows: list[list[Any]]
    ) -> None:
        """The batch in one ``BEGIN IMMEDIATE`` transaction: four statements in all."""
        await raw.execute_fetchall("BEGIN IMMEDIATE")
        try:
            keys = list(dict.fromkeys(row[_CLAUDE_AT] for row in rows))
            marks = ", ".join("?" * len(keys))
            # One query for the last sequence of each Claude session and for the last id
            # ever given (AUTOINCREMENT's counter, which a deleted row does not lower).
            found = await raw.execute_fetchall(
                "SELECT NULL, MAX(COALESCE((SELECT seq FROM sqlite_sequence "  # noqa: S608
                "WHERE name = 'conversation_events'), 0), "
                "COALESCE((SELECT MAX(id) FROM conversation_events), 0)) "
                "UNION ALL SELECT claude_session_id, MAX(sequence) FROM conversation_events "
                f"WHERE claude_session_id IN ({marks}) GROUP BY claude_session_id",
                keys,
            )
            last_id = int(found[0][1])
            current = {key: value for key, value in found[1:]}
            next_of = {key: int(current.get(key) or 0) + 1 for key in keys}
            sequences = []
            for row in rows:
                key = row[_CLAUDE_AT]
                row[_SEQUENCE_AT] = sequence = next_of[key]
                next_of[key] = sequence + 1
                sequences.append(sequence)
            for start in range(0, len(rows), _ROWS_PER_INSERT):
                chunk = rows[start : start + _ROWS_PER_INSERT]
                await raw.execute_fetchall(
                    _multi_row_insert(len(chunk)), list(chain.from_iterable(chunk))
                )
            await raw.commit()
        except BaseException:
            await raw.rollback()
            raise
        # With the write lock held from the first read, AUTOINCREMENT gave the rows the ids
        # right after the last one ever given, in order.
        for new_id, (event, sequence) in enumerate(zip(batch, sequences, strict=True), last_id + 1):
            # Straight into the instance: these are new, unsaved values of an object no ORM
            # session tracks, and SQLAlchemy's attribute events would double the batch's cost.
            state = event.__dict__
            state["sequence"] = sequence
            state["id"] = new_id

    @staticmethod
    async def _add_many_postgresql(
        conn: Any, batch: list[ConversationEvent], checked: list[dict[str, Any]]
    ) -> None:
        """The batch in one transaction on asyncpg, under the Claude sessions' locks."""
        insert = _INSERT_DRIVER.on("postgresql")
        keys = sorted(dict.fromkeys(values["claude_session_id"] for values in checked))
        async with conn.transaction():
            await conn.execute(_lock_statement(keys))  # sorted: batches cannot deadlock
            current = dict(await conn.fetch(_LAST_SEQUENCES_PG, keys))
            next_of = {key: int(current.get(key) or 0) + 1 for key in keys}
            rows = []
            for values in checked:
                key = values["claude_session_id"]
                values["sequence"] = next_of[key]
                next_of[key] += 1
                rows.append(insert.args(_to_driver(values, "postgresql")))
            # Without the dialect's implicit RETURNING id: executemany discards rows anyway.
            await conn.executemany(insert.sql.partition(" RETURNING ")[0], rows)
            ids: dict[tuple[str, int], int] = {}
            for key in keys:
                first = int(current.get(key) or 0) + 1
                found = await conn.fetch(_IDS_PG, key, first, next_of[key] - 1)
                ids.update({(key, int(r[0])): int(r[1]) for r in found})
        for event, values in zip(batch, checked, strict=True):
            state = event.__dict__  # as in _add_many_sqlite
            state["sequence"] = values["sequence"]
            state["id"] = ids[(values["claude_session_id"], values["sequence"])]

    async def _translate_batch(
        self, exc: Exception, batch: Sequence[ConversationEvent]
    ) -> Exception:
        """The store error for a failed batch, naming the event whose session is missing.

        Runs after the failed unit of work was rolled back, so it costs nothing on success.
        """
        if integrity_kind(exc) != "foreign_key":
            return _translate(exc, batch[0])
        wanted = list(dict.fromkeys(e.session_id for e in batch))
        async with self._db.reading() as conn:
            found = set((await conn.execute(sa.select(S.c.id).where(S.c.id.in_(wanted)))).scalars())
        missing = next((e for e in batch if e.session_id not in found), batch[0])
        return _translate(exc, missing)

    async def get_conversation(
        self,
        claude_session_id: str,
        *,
        after_sequence: int | None = None,
        before_sequence: int | None = None,
        limit: int | None = None,
    ) -> list[ConversationEvent]:
        """Events of one Claude session, oldest first; ``[]`` if none.

        ``after_sequence``/``before_sequence`` bound the page (exclusive). With a ``limit``
        and no ``after_sequence`` the newest ``limit`` events are returned (still oldest
        first); with ``after_sequence`` the next ``limit`` after it.
        """
        if limit is not None and limit < 0:
            raise InvalidValueError(f"limit must be >= 0, got {limit}")
        query = _conversation_query(
            after_sequence is not None, before_sequence is not None, limit is not None
        )
        values = {
            "claude_session_id": claude_session_id,
            "after": after_sequence,
            "before": before_sequence,
            "limit": limit,
        }
        events = await query.all(self._db, values)
        if limit is not None and after_sequence is None:
            events.reverse()  # the newest ``limit`` were read newest first
        return events

    async def get_session_conversation(self, session_id: str) -> list[ConversationEvent]:
        """The whole conversation of a session and its ancestors, ancestors' events first.

        Walks the ``parent_session_id`` chain (a cycle or a missing ancestor ends the walk),
        then reads every event of the chain's Claude sessions in one statement, in one
        snapshot. Raises :class:`NotFoundError` if the session does not exist; ``[]`` if
        there are no events.
        """
        lease = self._db.driver()
        if lease is not None:
            async with lease as driver:
                sqlite = driver.dialect == "sqlite"
                conn = driver.conn
                parent = _PARENT.on(driver.dialect)

                async def parent_of(current: str) -> tuple[str, str] | None:
                    args = parent.args({"id": current})
                    if sqlite:
                        rows = await conn.execute_fetchall(parent.sql, args)
                    else:
                        rows = await conn.fetch(parent.sql, *args)
                    return (rows[0][0], rows[0][1]) if rows else None

                # One snapshot for the walk and the read, as on the portable path.
                if sqlite:
                    try:
                        await conn.execute_fetchall("BEGIN")
                        chain = await _walk_chain(session_id, parent_of)
                        rows = await _chain_rows(driver, chain)
                    finally:
                        if conn.in_transaction:
                            await conn.execute_fetchall("COMMIT")
                else:
                    async with conn.transaction(isolation="repeatable_read", readonly=True):
                        chain = await _walk_chain(session_id, parent_of)
                        rows = await _chain_rows(driver, chain)
            return _chain_query(len(chain)).build(driver.dialect, rows) if chain else []
        async with self._db.reading() as conn:

            async def parent_of_sa(current: str) -> tuple[str, str] | None:
                row = (await conn.execute(_PARENT.statement, {"id": current})).first()
                return (row[0], row[1]) if row is not None else None

            chain = await _walk_chain(session_id, parent_of_sa)
            if not chain:
                return []
            query = _chain_query(len(chain))
            return build_all(
                ConversationEvent, await conn.execute(query.statement, _chain_values(chain))
            )

    def _pending_calls(self, session_id: str) -> sa.Select[Any]:
        return (
            sa.select(T)
            .where(
                T.c.session_id == session_id,
                T.c.event_type == _TOOL_CALL,
                T.c.is_completed == sa.false(),
            )
            .order_by(T.c.sequence.desc(), T.c.id.desc())
        )

    async def get_pending_tool_call(
        self, session_id: str, tool_name: str
    ) -> ConversationEvent | None:
        """The most recent uncompleted call of ``tool_name`` in the session, or None."""
        stmt = self._pending_calls(session_id).where(T.c.tool_name == tool_name).limit(1)
        async with self._db.reading() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else build(ConversationEvent, row._mapping)

    async def get_uncorrelated_pending_tool_call(
        self, session_id: str, tool_name: str
    ) -> ConversationEvent | None:
        """The most recent uncompleted call of ``tool_name`` with no approval yet, or None."""
        stmt = (
            self._pending_calls(session_id)
            .where(
                T.c.tool_name == tool_name,
                sa.or_(T.c.approval_status.is_(None), T.c.approval_status == ""),
            )
            .limit(1)
        )
        async with self._db.reading() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else build(ConversationEvent, row._mapping)

    async def get_pending_tool_calls(self, session_id: str) -> list[ConversationEvent]:
        """Every uncompleted tool call of the session, newest first; ``[]`` if none."""
        async with self._db.reading() as conn:
            return build_all(ConversationEvent, await conn.execute(self._pending_calls(session_id)))

    async def get_tool_call_by_id(self, tool_id: str) -> ConversationEvent | None:
        """The tool call with this tool id (the first one stored), or None."""
        stmt = (
            sa.select(T)
            .where(T.c.tool_id == tool_id, T.c.event_type == _TOOL_CALL)
            .order_by(T.c.id)
            .limit(1)
        )
        async with self._db.reading() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else build(ConversationEvent, row._mapping)

    async def mark_tool_call_completed(self, tool_id: str, session_id: str) -> None:
        """Mark the session's calls with this tool id completed; nothing if none match."""
        async with self._db.writing() as conn:
            await conn.execute(
                sa.update(T)
                .where(
                    T.c.tool_id == tool_id,
                    T.c.session_id == session_id,
                    T.c.event_type == _TOOL_CALL,
                )
                .values(is_completed=True)
            )

    async def correlate_approval(self, session_id: str, tool_name: str, approval_id: str) -> None:
        """Attach an approval to the most recent uncompleted call of ``tool_name``.

        Does nothing if there is no such call or if that call already has an approval.
        """
        require_id(approval_id, "approval_id")
        async with self._db.writing() as conn:
            row = (
                await conn.execute(
                    self._pending_calls(session_id)
                    .with_only_columns(T.c.id, T.c.approval_status)
                    .where(T.c.tool_name == tool_name)
                    .limit(1)
                )
            ).first()
            if row is None or row[1]:
                return
            await conn.execute(
                sa.update(T)
                .where(T.c.id == row[0])
                .values(approval_status=ApprovalStatus.PENDING.value, approval_id=approval_id)
            )

    async def link_approval_by_tool_id(
        self, session_id: str, tool_id: str, approval_id: str
    ) -> None:
        """Attach an approval to the uncompleted, uncorrelated call with this tool id.

        Does nothing if no call matches.
        """
        require_id(approval_id, "approval_id")
        async with self._db.writing() as conn:
            await conn.execute(
                sa.update(T)
                .where(
                    T.c.session_id == session_id,
                    T.c.tool_id == tool_id,
                    T.c.event_type == _TOOL_CALL,
                    T.c.is_completed == sa.false(),
                    sa.or_(T.c.approval_status.is_(None), T.c.approval_status == ""),
                )
                .values(approval_status=ApprovalStatus.PENDING.value, approval_id=approval_id)
            )

    async def update_approval_status(self, approval_id: str, status: str) -> None:
        """Set the approval status of the events linked to ``approval_id``.

        ``resolved`` only replaces ``pending`` (a decision is never overwritten). Does
        nothing if no event is linked; raises :class:`InvalidStatusError` for an unknown status.
        """
        value = check_enum(ApprovalStatus, status, "approval status")
        stmt = sa.update(T).where(T.c.approval_id == approval_id).values(approval_status=value)
        if value == ApprovalStatus.RESOLVED:
            stmt = stmt.where(T.c.approval_status == ApprovalStatus.PENDING.value)
        async with self._db.writing() as conn:
            await conn.execute(stmt)

    async def count(self) -> int:
        """How many events are stored."""
        async with self._db.reading() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(T))).scalar_one())


@cache
def _conversation_query(after: bool, before: bool, limit: bool) -> ModelQuery[ConversationEvent]:
    """``get_conversation``'s statement for one combination of paging arguments."""
    stmt = sa.select(T).where(T.c.claude_session_id == sa.bindparam("claude_session_id"))
    if after:
        stmt = stmt.where(T.c.sequence > sa.bindparam("after"))
    if before:
        stmt = stmt.where(T.c.sequence < sa.bindparam("before"))
    if limit:
        newest = not after  # only a limit (or a limit before a point): the latest N
        if newest:
            stmt = stmt.order_by(T.c.sequence.desc(), T.c.id.desc())
        else:
            stmt = stmt.order_by(T.c.sequence, T.c.id)
        stmt = stmt.limit(sa.bindparam("limit"))
    else:
        stmt = stmt.order_by(T.c.sequence, T.c.id)
    return ModelQuery(ConversationEvent, stmt)


_PARENT = DriverStatement(
    sa.select(
        sa.func.coalesce(S.c.claude_session_id, ""), sa.func.coalesce(S.c.parent_session_id, "")
    ).where(S.c.id == sa.bindparam("id", type_=sa.Text()))
)


async def _walk_chain(
    session_id: str, parent_of: Callable[[str], Awaitable[tuple[str, str] | None]]
) -> list[str]:
    """The Claude session ids of the session's resume chain, root first, each once.

    A missing first session raises NotFoundError; a missing ancestor or a cycle ends the walk.
    A Claude id met twice keeps the place of its oldest occurrence, as in hld.
    """
    chain: list[str] = []
    seen: set[str] = set()
    current = session_id
    while current and current not in seen:
        seen.add(current)
        found = await parent_of(current)
        if found is None:
            if current == session_id:
                raise NotFoundError("session", session_id)
            break
        claude_id, current = found
        if claude_id:
            if claude_id in chain:
                chain.remove(claude_id)
            chain.insert(0, claude_id)
    return chain


def _chain_values(chain: list[str]) -> dict[str, str]:
    return {f"c{i}": claude_id for i, claude_id in enumerate(chain)}


async def _chain_rows(driver: Driver, chain: list[str]) -> list[Any]:
    if not chain:
        return []
    return await _chain_query(len(chain)).driver.fetch(driver, _chain_values(chain))


@cache
def _chain_query(length: int) -> ModelQuery[ConversationEvent]:
    """The events of ``length`` Claude sessions, in chain order, then by sequence."""
    claude = T.c.claude_session_id
    ids = [sa.bindparam(f"c{i}", type_=sa.Text()) for i in range(length)]
    stmt = (
        sa.select(T)
        .where(sa.or_(*(claude == p for p in ids)))
        .order_by(sa.case(*((claude == p, i) for i, p in enumerate(ids))), T.c.sequence, T.c.id)
    )
    return ModelQuery(ConversationEvent, stmt)
