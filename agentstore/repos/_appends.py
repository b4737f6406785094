"""How conversation events are written: checks, sequences, and the three ways in.

An append must get the next sequence of its Claude session atomically, and a batch must get
contiguous ones, whoever else is writing. The ways in, all with the same guarantees:

* SQLite's driver connection (outside ``store.transaction()``): one ``INSERT … SELECT
  MAX(sequence) + 1`` statement per append — a writing statement takes SQLite's write lock
  before it reads — and ``BEGIN IMMEDIATE`` plus multi-row INSERTs per batch;
* asyncpg's connection: the same statements under a per-Claude-session advisory lock;
* SQLAlchemy, inside the caller's transaction (``lock_sequence`` and ``next_sequence``).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from itertools import chain
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from agentstore.errors import DuplicateError, InvalidValueError, NotFoundError
from agentstore.models import ApprovalStatus, ConversationEvent, EventType
from agentstore.repos._driver import DRIVER_INTEGRITY_ERRORS, DriverStatement, bind
from agentstore.repos._errors import integrity_kind
from agentstore.types import format_timestamp
from agentstore.validation import check_enum, check_row, require_id, sqlite_row_encoder

T = cast(sa.Table, ConversationEvent.__table__)

INTEGRITY_ERRORS: tuple[type[Exception], ...] = (IntegrityError, *DRIVER_INTEGRITY_ERRORS)
_EVENT_TYPES = frozenset(EventType)
_APPROVAL_STATUSES = frozenset(ApprovalStatus)


def check_event(event: ConversationEvent) -> dict[str, Any]:
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


def _lock_keys(claude_session_ids: Iterable[str]) -> list[int]:
    # In sorted order, so that two batches cannot deadlock.
    return sorted({lock_key(key) for key in claude_session_ids})


def _lock_statement(claude_session_ids: Iterable[str]) -> str:
    # Integers only (computed above), never caller text, go into this SQL.
    return "; ".join(
        f"SELECT pg_advisory_xact_lock({key})" for key in _lock_keys(claude_session_ids)
    )


async def lock_sequence(conn: AsyncConnection, claude_session_ids: Sequence[str]) -> None:
    """Serialise appends to the same Claude sessions across connections and processes.

    On SQLite the write transaction already holds the database's write lock (``BEGIN
    IMMEDIATE``). On PostgreSQL a transaction-scoped advisory lock per Claude session does
    it, taken in sorted order so that batches cannot deadlock.
    """
    if conn.dialect.name != "postgresql":
        return
    for key in _lock_keys(claude_session_ids):
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


async def last_sequences(
    conn: AsyncConnection, claude_session_ids: Sequence[str]
) -> dict[str, int]:
    """The last sequence of each of these Claude sessions that has events."""
    rows = await conn.execute(
        sa.select(T.c.claude_session_id, sa.func.max(T.c.sequence))
        .where(T.c.claude_session_id.in_(claude_session_ids))
        .group_by(T.c.claude_session_id)
    )
    return {key: int(last) for key, last in rows}


def number(claude_session_ids: Iterable[str], last: Mapping[str, Any]) -> list[int]:
    """Contiguous sequences for a batch, in its order, after each Claude session's last one."""
    next_of: dict[str, int] = {}
    sequences = []
    for key in claude_session_ids:
        sequence = next_of[key] if key in next_of else int(last.get(key) or 0) + 1
        next_of[key] = sequence + 1
        sequences.append(sequence)
    return sequences


# Every column but the id, in table order: what an append writes.
_WRITTEN = [c for c in T.columns if c.key != "id"]
_WRITTEN_KEYS = [c.key for c in _WRITTEN]

# One append is one statement: the next sequence is computed inside the INSERT, which on
# SQLite takes the write lock before it reads, so no other writer — task, process or hld —
# can slip in between (on PostgreSQL an advisory lock is taken first, see lock_sequence).
APPEND = (
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
APPEND_DRIVER = DriverStatement(APPEND)
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


def encode_event(event: ConversationEvent) -> list[Any]:
    """The event as a row for the batch INSERT on SQLite, after every check check_event makes."""
    if event.__class__ is not ConversationEvent and not isinstance(event, ConversationEvent):
        raise InvalidValueError(f"expected a ConversationEvent, got {type(event).__name__}")
    row: list[Any] = _ENCODE_ROW(event)
    if (
        not row[_SESSION_AT]
        or row[_TYPE_AT] not in _EVENT_TYPES
        or (row[_APPROVAL_AT] and row[_APPROVAL_AT] not in _APPROVAL_STATUSES)
    ):
        check_event(event)  # raises the precise error
    return row


def to_driver(values: dict[str, Any], dialect: str) -> dict[str, Any]:
    """Checked values as the driver binds them (what the column types do on the portable path)."""
    values["event_type"] = str(values["event_type"])
    if dialect == "sqlite":
        values["created_at"] = format_timestamp(values["created_at"])
        values["is_completed"] = 1 if values["is_completed"] else 0
    return values


async def append_postgresql(
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


def translate(exc: Exception, event: ConversationEvent) -> Exception:
    if integrity_kind(exc) == "foreign_key":
        return NotFoundError("session", event.session_id)
    return DuplicateError("conversation event", (event.claude_session_id, event.sequence))


async def add_many_sqlite(raw: Any, batch: list[ConversationEvent], rows: list[list[Any]]) -> None:
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
        sequences = number((row[_CLAUDE_AT] for row in rows), dict(found[1:]))
        for row, sequence in zip(rows, sequences, strict=True):
            row[_SEQUENCE_AT] = sequence
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


async def add_many_postgresql(
    conn: Any, batch: list[ConversationEvent], checked: list[dict[str, Any]]
) -> None:
    """The batch in one transaction on asyncpg, under the Claude sessions' locks."""
    insert = _INSERT_DRIVER.on("postgresql")
    keys = list(dict.fromkeys(values["claude_session_id"] for values in checked))
    async with conn.transaction():
        await conn.execute(_lock_statement(keys))
        current = dict(await conn.fetch(_LAST_SEQUENCES_PG, keys))
        sequences = number((values["claude_session_id"] for values in checked), current)
        rows = []
        for values, sequence in zip(checked, sequences, strict=True):
            values["sequence"] = sequence
            rows.append(insert.args(to_driver(values, "postgresql")))
        # Without the dialect's implicit RETURNING id: executemany discards rows anyway.
        await conn.executemany(insert.sql.partition(" RETURNING ")[0], rows)
        ids: dict[tuple[str, int], int] = {}
        for key, count in Counter(values["claude_session_id"] for values in checked).items():
            first = int(current.get(key) or 0) + 1
            found = await conn.fetch(_IDS_PG, key, first, first + count - 1)
            ids.update({(key, int(r[0])): int(r[1]) for r in found})
    for event, values in zip(batch, checked, strict=True):
        state = event.__dict__  # as in add_many_sqlite
        state["sequence"] = values["sequence"]
        state["id"] = ids[(values["claude_session_id"], values["sequence"])]
