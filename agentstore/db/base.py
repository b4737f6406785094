"""What a unit of work sees: a connection with a handful of ``async`` methods.

A *unit of work* is an ``async def unit(conn) -> result`` written once, against
:class:`Conn`; the backends decide where it runs and wrap it in its transaction:

* on SQLite the unit runs inside the thread that owns the connection, as one call: the
  methods of :class:`~agentstore.db.sqlite.SQLiteConn` never suspend, so the coroutine runs
  to its end in one step (:func:`run_to_end`), ``BEGIN IMMEDIATE … COMMIT`` included;
* on PostgreSQL it runs in a task the store owns, on an asyncpg connection.

Either way no caller's cancellation can stop a unit half-way: callers only wait for its
result.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol, TypeVar, cast

import sqlalchemy as sa

from agentstore.db.statements import Query, Statement, bind
from agentstore.errors import ConstraintError, NotFoundError
from agentstore.models import Base, ConversationEvent

__all__ = [
    "APPEND_COLUMNS",
    "Conn",
    "Unit",
    "check_columns",
    "encoder_of",
    "lock_key",
    "run_to_end",
]

T = TypeVar("T")
M = TypeVar("M", bound=Base)

EMPTY: Mapping[str, Any] = {}

APPEND_COLUMNS: tuple[str, ...] = tuple(
    c.key for c in ConversationEvent.__table__.columns if c.key not in ("id", "sequence")
)
"""The columns of an appended event's row, in the order the append statements take them."""


def _append_one() -> Statement:
    # One event alone (a group of one, the most common append): the next sequence is
    # computed inside the INSERT, which holds the write lock (SQLite) or runs under the
    # Claude session's advisory lock (PostgreSQL); a missing session fails its foreign key.
    table = cast(sa.Table, ConversationEvent.__table__)
    written = [c for c in table.columns if c.key != "id"]
    next_sequence = sa.func.coalesce(sa.func.max(table.c.sequence), 0) + 1
    return Statement(
        sa.insert(table)
        .from_select(
            [c.key for c in written],
            sa.select(
                *(next_sequence if c.key == "sequence" else bind(c.key, c) for c in written)
            ).where(
                table.c.claude_session_id == bind("claude_session_id", table.c.claude_session_id)
            ),
        )
        .returning(table.c.id, table.c.sequence)
    )


APPEND_ONE: Statement = _append_one()
"""The single-event append statement; its arguments are an encoded row (``encoded_args``)."""


async def append_one(conn: Conn, row: tuple[Any, ...]) -> list[tuple[int, int]]:
    """Append one encoded row; its ``[(id, sequence)]``.

    Raises :class:`~agentstore.errors.NotFoundError` if its session does not exist: the
    unit then ends in a rollback, which is all it held (a group of one is one request).
    """
    compiled = APPEND_ONE.on(conn.dialect)
    values = dict(zip(APPEND_COLUMNS, row, strict=True))
    try:
        found = await conn.raw_rows(compiled.sql, compiled.encoded_args(values))
    except ConstraintError as exc:
        if exc.kind == "foreign_key":
            raise NotFoundError("session", values["session_id"]) from exc
        raise
    return [(int(found[0][0]), int(found[0][1]))]


class Conn(Protocol):
    """A connection inside a transaction, as a unit of work uses it."""

    dialect: str

    async def rows(self, stmt: Statement, values: Mapping[str, Any] = EMPTY) -> list[Any]:
        """Every row the statement returns, as the driver gives them."""
        ...

    async def models(self, query: Query[M], values: Mapping[str, Any] = EMPTY) -> list[M]:
        """Every row of the query, built into models."""
        ...

    async def execute(self, stmt: Statement, values: Mapping[str, Any] = EMPTY) -> int:
        """Run a statement; returns the number of rows it changed."""
        ...

    async def raw_rows(self, sql: str, args: Sequence[Any]) -> list[Any]:
        """Rows of SQL text compiled for this backend, with driver-ready arguments."""
        ...

    def stream(
        self, stmt: Statement, values: Mapping[str, Any] = EMPTY, size: int = 1000
    ) -> AsyncIterator[list[Any]]:
        """The statement's rows in chunks of ``size``, read as they are consumed (inside a
        transaction: a snapshot read, a write unit or a ``store.transaction()``)."""
        ...

    async def insert_many(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Insert rows whose values are already encoded for this driver (see
        :func:`agentstore.db.encoder_of`): SQLite's ``executemany``, PostgreSQL's binary
        ``COPY``. ``table`` is one of the store's own table names."""
        ...

    async def append_events(
        self, requests: Sequence[Sequence[tuple[Any, ...]]]
    ) -> list[list[tuple[int, int]] | str]:
        """Append each request's encoded rows (:data:`APPEND_COLUMNS` order) with the next
        sequences of their Claude sessions, in request order.

        Returns, per request, the ``(id, sequence)`` of each of its rows — or, for a request
        naming a session that does not exist, that session's id: such a request is not
        written at all, and the others are.
        """
        ...


Unit = Callable[[Conn], Awaitable[T]]
"""A unit of work: ``async def unit(conn) -> result``."""


def encoder_of(
    table: sa.Table, columns: Sequence[str], dialect: str
) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """``row -> tuple``: Python values of ``columns`` encoded for ``dialect``'s driver by
    the column types' codecs (for :meth:`Conn.insert_many`)."""
    from agentstore.types import codec

    encoders = [codec(table.columns[name].type, dialect).encode for name in columns]

    def encode(row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(
            value if encoder is None or value is None else encoder(value)
            for encoder, value in zip(encoders, row, strict=True)
        )

    return encode


KNOWN_TABLES: frozenset[str] = frozenset(Base.metadata.tables)
"""The only table names :meth:`Conn.insert_many` takes."""


def check_columns(table: str, columns: Sequence[str]) -> None:
    """Refuse a table or column that is not the store's own (names are put into SQL)."""
    if table not in KNOWN_TABLES:
        raise ValueError(f"not one of the store's tables: {table!r}")
    known = Base.metadata.tables[table].columns
    unknown = [name for name in columns if name not in known]
    if unknown:
        raise ValueError(f"{table} has no column {', '.join(map(repr, unknown))}")


def run_to_end(awaitable: Awaitable[T]) -> T:
    """Run a unit of work whose awaits never suspend (SQLite's), in the calling thread."""
    coroutine = cast(Coroutine[Any, Any, T], awaitable)
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise RuntimeError("a unit of work awaited something other than its SQLite connection")


def lock_key(claude_session_id: str) -> int:
    """The PostgreSQL advisory-lock key of a Claude session: a signed 64-bit hash of its id.

    Computed here rather than by the server so that it can be sent inline with the BEGIN
    (one round trip); every process and agentstore version derives the same key.
    """
    digest = hashlib.blake2b(claude_session_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_statement(claude_session_ids: Sequence[str]) -> str:
    """``SELECT pg_advisory_xact_lock(k)`` for each Claude session, in sorted key order so
    that two transactions cannot deadlock. Integers only (computed above) go into this SQL."""
    keys = sorted({lock_key(key) for key in claude_session_ids})
    return "".join(f"; SELECT pg_advisory_xact_lock({key})" for key in keys)
