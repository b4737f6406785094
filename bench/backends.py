"""The databases the rounds run on, and the raw driver connections that are the baselines.

Each backend makes a fresh database for a round (a file in a new temporary folder; on
PostgreSQL a new database, dropped afterwards) and opens raw connections on it. The raw
connection does each workload's work by hand with nothing but the driver (see the package
docstring for what each one does and why it is the same work).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

import aiosqlite
from sqlalchemy.engine import make_url

from agentstore import Store
from agentstore.db import lock_key
from agentstore.db.sqlite import BUSY_TIMEOUT_MS
from agentstore.db.sqlite import SQLiteBackend as StoreSQLiteBackend
from agentstore.db.sqlite import _lower as agentstore_lower
from bench.common import filesystem_of, package_version

# --- raw SQL ---------------------------------------------------------------------------------

EVENT_COLUMNS = (
    "session_id, claude_session_id, sequence, event_type, created_at, role, content, tool_id, "
    "tool_name, tool_input_json, tool_result_for_id, tool_result_content, is_completed, "
    "approval_status, approval_id, parent_tool_use_id"
)
# W3 reads what get_conversation reads: every column but claude_session_id, which the
# caller gave (agentstore does not read it back per row either).
READ_COLUMNS = (
    "id, session_id, sequence, event_type, created_at, role, content, tool_id, tool_name, "
    "tool_input_json, tool_result_for_id, tool_result_content, is_completed, approval_status, "
    "approval_id, parent_tool_use_id"
)
READ_SEQUENCE_AT = 2  # the sequence's place in a READ_COLUMNS row
ALL_EVENT_COLUMNS = f"id, {EVENT_COLUMNS}"

SQLITE_APPEND_ONE = (
    f"INSERT INTO conversation_events ({EVENT_COLUMNS}) "  # noqa: S608 - constant text
    "SELECT ?, ?, COALESCE(MAX(sequence), 0) + 1, ?, ?, ?, ?, '', '', '', '', '', 0, '', '', '' "
    "FROM conversation_events WHERE claude_session_id = ? RETURNING id, sequence"
)
SQLITE_MAX_SEQUENCE = (
    "SELECT COALESCE(MAX(sequence), 0) FROM conversation_events WHERE claude_session_id = ?"
)
SQLITE_INSERT_EVENT = (
    f"INSERT INTO conversation_events ({EVENT_COLUMNS}) "  # noqa: S608 - constant text
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SQLITE_READ_CONVERSATION = (
    f"SELECT {READ_COLUMNS} FROM conversation_events "  # noqa: S608 - constant text
    "WHERE claude_session_id = ? ORDER BY sequence, id"
)
SQLITE_CHAIN_STEP = "SELECT claude_session_id, parent_session_id FROM sessions WHERE id = ?"
SQLITE_SEQUENCES = (
    "SELECT sequence FROM conversation_events WHERE claude_session_id = ? ORDER BY sequence"
)

PG_APPEND_ONE = (
    f"INSERT INTO conversation_events ({EVENT_COLUMNS}) "  # noqa: S608 - constant text
    "SELECT $1::text, $2::text, COALESCE(MAX(sequence), 0) + 1, $3::text, $4::timestamptz, "
    "$5::text, $6::text, '', '', '', '', '', false, '', '', '' "
    "FROM conversation_events WHERE claude_session_id = $2 RETURNING id, sequence"
)
PG_MAX_SEQUENCE = (
    "SELECT COALESCE(MAX(sequence), 0) FROM conversation_events WHERE claude_session_id = $1"
)
PG_INSERT_EVENT = (
    f"INSERT INTO conversation_events ({EVENT_COLUMNS}) "  # noqa: S608 - constant text
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
)
PG_READ_CONVERSATION = (
    f"SELECT {READ_COLUMNS} FROM conversation_events "  # noqa: S608 - constant text
    "WHERE claude_session_id = $1 ORDER BY sequence, id"
)
PG_CHAIN_STEP = "SELECT claude_session_id, parent_session_id FROM sessions WHERE id = $1"
PG_SEQUENCES = (
    "SELECT sequence FROM conversation_events WHERE claude_session_id = $1 ORDER BY sequence"
)


def pg_begin_and_lock(claude_id: str) -> str:
    """``BEGIN`` and the Claude session's advisory lock in one round trip, as agentstore does.

    The key is agentstore's own (:func:`agentstore.db.lock_key`: a signed 64-bit BLAKE2b of
    the id, computed in the client), so raw and agentstore writers exclude each other as
    two agentstores would. Only that integer goes into the SQL text.
    """
    return f"BEGIN; SELECT pg_advisory_xact_lock({lock_key(claude_id)})"


def utc_now() -> datetime:
    """A timestamp as asyncpg takes it for ``timestamptz``."""
    return datetime.now(UTC)


def now_text() -> str:
    """A timestamp as agentstore stores it on SQLite (UTC, six fraction digits, +00:00)."""
    return datetime.now(UTC).isoformat(sep=" ", timespec="microseconds")


def chain_query(count: int, placeholder: Callable[[int], str]) -> str:
    """W6's final query for a chain of ``count`` Claude sessions (oldest first).

    Parameters: the Claude session ids (1..count), used by ``IN`` and by ``CASE``; the
    positions in ``CASE`` are integer literals made here.
    """
    ids = ", ".join(placeholder(i) for i in range(1, count + 1))
    whens = " ".join(f"WHEN {placeholder(k + 1)} THEN {k}" for k in range(count))
    return (
        f"SELECT {ALL_EVENT_COLUMNS} FROM conversation_events "  # noqa: S608 - placeholders
        f"WHERE claude_session_id IN ({ids}) "
        f"ORDER BY CASE claude_session_id {whens} END, sequence"
    )


def batch_rows(
    session_id: str,
    claude_id: str,
    start: int,
    first: int,
    count: int,
    now: Callable[[], Any],
    false: Any,
) -> list[tuple[Any, ...]]:
    """W2's raw parameter tuples: contents ``message {first+k}``, sequences after ``start``;
    ``now`` makes a timestamp and ``false`` is the driver's false (0 on SQLite)."""
    return [
        (
            session_id,
            claude_id,
            start + k + 1,
            "message",
            now(),
            "user",
            f"message {first + k}",
            "",
            "",
            "",
            "",
            "",
            false,
            "",
            "",
            "",
        )
        for k in range(count)
    ]


# --- the raw baselines -----------------------------------------------------------------------

Rows = Sequence[Sequence[Any]]


class Raw(Protocol):
    """One raw driver connection doing each workload's work by hand."""

    async def append_one(self, session_id: str, claude_id: str, content: str) -> Sequence[Any]:
        """W1/W4: append one event atomically; the new (id, sequence)."""
        ...

    async def append_batch(
        self, session_id: str, claude_id: str, first: int, count: int
    ) -> list[int]:
        """W2: append ``count`` events (contents ``message {first+k}``) in one transaction,
        their parameter tuples built inside; the sequences given."""
        ...

    async def read_conversation(self, claude_id: str) -> Rows:
        """W3: every event of one Claude session (:data:`READ_COLUMNS`), by sequence."""
        ...

    async def session_conversation(self, session_id: str) -> Rows:
        """W6: the events of a session and its ancestors, ancestors first."""
        ...

    async def fetch(self, sql: str, params: Sequence[Any]) -> Rows:
        """W5/W7: run a query, all rows as the driver returns them."""
        ...

    async def sequences(self, claude_id: str) -> list[int]:
        """(checks) the stored sequences of one Claude session."""
        ...

    async def setting(self, name: str) -> str:
        """(header) a PRAGMA's value on SQLite, a ``SHOW`` on PostgreSQL."""
        ...

    async def settle(self) -> None:
        """Bring the database to a steady state after setup (checkpoint / analyze)."""
        ...

    async def close(self) -> None: ...


class RawSQLite:
    """aiosqlite, one connection, autocommit (``isolation_level=None``), set up as
    agentstore sets up its own connections: ``synchronous=FULL`` (agentstore's default
    durability), foreign keys, busy timeout, WAL, and ``agentstore_lower`` registered."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    @classmethod
    async def connect(cls, path: str) -> RawSQLite:
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            await db.execute_fetchall(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await db.execute_fetchall("PRAGMA journal_mode = WAL")
            await db.execute_fetchall("PRAGMA synchronous = FULL")
            await db.execute_fetchall("PRAGMA foreign_keys = ON")
            # The very function the store registers on its connections (W7's statement
            # calls it: SQLite's own lower() folds ASCII only).
            await db.create_function("agentstore_lower", 1, agentstore_lower, deterministic=True)
        except BaseException:
            await db.close()
            raise
        return cls(db)

    async def append_one(self, session_id: str, claude_id: str, content: str) -> Sequence[Any]:
        rows = await self.db.execute_fetchall(
            SQLITE_APPEND_ONE,
            (session_id, claude_id, "message", now_text(), "user", content, claude_id),
        )
        return next(iter(rows))

    async def append_batch(
        self, session_id: str, claude_id: str, first: int, count: int
    ) -> list[int]:
        db = self.db
        await db.execute_fetchall("BEGIN IMMEDIATE")
        try:
            rows = await db.execute_fetchall(SQLITE_MAX_SEQUENCE, (claude_id,))
            start = int(next(iter(rows))[0])
            params = batch_rows(session_id, claude_id, start, first, count, now_text, 0)
            await db.executemany(SQLITE_INSERT_EVENT, params)
            await db.execute_fetchall("COMMIT")
        except BaseException:
            await db.execute_fetchall("ROLLBACK")
            raise
        return [row[2] for row in params]

    async def read_conversation(self, claude_id: str) -> Rows:
        return list(await self.db.execute_fetchall(SQLITE_READ_CONVERSATION, (claude_id,)))

    async def session_conversation(self, session_id: str) -> Rows:
        db = self.db
        await db.execute_fetchall("BEGIN")
        try:
            chain: list[str] = []
            seen: set[str] = set()
            current = session_id
            while current and current not in seen:
                seen.add(current)
                rows = list(await db.execute_fetchall(SQLITE_CHAIN_STEP, (current,)))
                if not rows:
                    break
                claude_id, parent = rows[0]
                if claude_id:
                    chain.insert(0, claude_id)
                current = parent or ""
            result: Rows = []
            if chain:
                sql = chain_query(len(chain), lambda i: f"?{i}")
                result = list(await db.execute_fetchall(sql, chain))
        finally:
            await db.execute_fetchall("COMMIT")
        return result

    async def fetch(self, sql: str, params: Sequence[Any]) -> Rows:
        return list(await self.db.execute_fetchall(sql, tuple(params)))

    async def sequences(self, claude_id: str) -> list[int]:
        return [int(r[0]) for r in await self.db.execute_fetchall(SQLITE_SEQUENCES, (claude_id,))]

    async def setting(self, name: str) -> str:
        rows = list(await self.db.execute_fetchall(f"PRAGMA {name}"))
        return str(rows[0][0]) if rows else ""

    async def settle(self) -> None:
        await self.db.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")

    async def close(self) -> None:
        await self.db.close()


class RawPostgres:
    """asyncpg, one connection; writes in a transaction holding agentstore's advisory lock."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    @classmethod
    async def connect(cls, dsn: str) -> RawPostgres:
        import asyncpg

        return cls(await asyncpg.connect(dsn))

    async def append_one(self, session_id: str, claude_id: str, content: str) -> Sequence[Any]:
        conn = self.conn
        await conn.execute(pg_begin_and_lock(claude_id))
        try:
            row = await conn.fetchrow(
                PG_APPEND_ONE, session_id, claude_id, "message", datetime.now(UTC), "user", content
            )
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
        return tuple(row)

    async def append_batch(
        self, session_id: str, claude_id: str, first: int, count: int
    ) -> list[int]:
        conn = self.conn
        await conn.execute(pg_begin_and_lock(claude_id))
        try:
            start = int(await conn.fetchval(PG_MAX_SEQUENCE, claude_id))
            params = batch_rows(session_id, claude_id, start, first, count, utc_now, False)
            await conn.executemany(PG_INSERT_EVENT, params)
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
        return [row[2] for row in params]

    async def read_conversation(self, claude_id: str) -> Rows:
        rows: Rows = await self.conn.fetch(PG_READ_CONVERSATION, claude_id)
        return rows

    async def session_conversation(self, session_id: str) -> Rows:
        conn = self.conn
        # One snapshot, as agentstore reads it (REPEATABLE READ READ ONLY).
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            chain: list[str] = []
            seen: set[str] = set()
            current = session_id
            while current and current not in seen:
                seen.add(current)
                row = await conn.fetchrow(PG_CHAIN_STEP, current)
                if row is None:
                    break
                if row[0]:
                    chain.insert(0, row[0])
                current = row[1] or ""
            if not chain:
                return []
            sql = chain_query(len(chain), lambda i: f"${i}")
            rows: Rows = await conn.fetch(sql, *chain)
            return rows

    async def fetch(self, sql: str, params: Sequence[Any]) -> Rows:
        rows: Rows = await self.conn.fetch(sql, *params)
        return rows

    async def sequences(self, claude_id: str) -> list[int]:
        return [int(r[0]) for r in await self.conn.fetch(PG_SEQUENCES, claude_id)]

    async def setting(self, name: str) -> str:
        return str(await self.conn.fetchval(f"SHOW {name}"))

    async def settle(self) -> None:
        await self.conn.execute("ANALYZE")

    async def close(self) -> None:
        await self.conn.close()


# --- backends --------------------------------------------------------------------------------


class Databases(Protocol):
    """Fresh databases of one backend, and raw connections to them."""

    name: str  # "SQLite", "PostgreSQL"
    dialect: str  # "sqlite", "postgresql": agentstore's name, for its compiled statements

    def fresh(self) -> AbstractAsyncContextManager[str]:
        """A fresh, empty database (its ``Store.open`` target), removed afterwards."""
        ...

    async def connect_raw(self, target: str) -> Raw: ...

    async def bare_open_close(self, target: str) -> None:
        """O2's raw side: the driver's connect and close, nothing else."""
        ...

    async def describe(self) -> str:
        """The header's versions and settings, read back from both sides."""
        ...


SYNCHRONOUS = {"0": "OFF", "1": "NORMAL", "2": "FULL", "3": "EXTRA"}


class SQLiteDatabases:
    name = "SQLite"
    dialect = "sqlite"

    @asynccontextmanager
    async def fresh(self) -> AsyncIterator[str]:
        folder = tempfile.mkdtemp(prefix="agentstore-bench-")
        try:
            yield os.path.join(folder, "agent.db")
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    async def connect_raw(self, target: str) -> Raw:
        return await RawSQLite.connect(target)

    async def bare_open_close(self, target: str) -> None:
        db = await aiosqlite.connect(target)
        await db.close()

    async def describe(self) -> str:
        async with self.fresh() as target:
            store = await Store.open(target)
            try:
                # The store's own writer connection (a private attribute: the bench only
                # reads a setting back through it).
                backend = getattr(store, "_backend", None)
                ours = "not read back"
                if isinstance(backend, StoreSQLiteBackend):
                    ours = await backend.on_writer(
                        lambda raw: str(raw.execute("PRAGMA synchronous").fetchone()[0])
                    )
            finally:
                await store.close()
            raw = await RawSQLite.connect(target)
            try:
                theirs = await raw.setting("synchronous")
                journal = await raw.setting("journal_mode")
            finally:
                await raw.close()
            where = filesystem_of(os.path.dirname(target))
        durability = (
            f"synchronous={SYNCHRONOUS.get(theirs, theirs)} on both sides"
            if ours == theirs
            else f"synchronous: agentstore {SYNCHRONOUS.get(ours, ours)}, raw "
            f"{SYNCHRONOUS.get(theirs, theirs)} (NOT THE SAME)"
        )
        return (
            f"SQLite {sqlite3.sqlite_version} (file on {where}, journal_mode={journal}, "
            f"{durability}, as read back from agentstore's writer and the raw connection), "
            f"SQLAlchemy {package_version('sqlalchemy')}, aiosqlite {package_version('aiosqlite')}"
        )


class PostgresDatabases:
    name = "PostgreSQL"
    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        base = make_url(url)
        self.base = base.set(drivername="postgresql+asyncpg")
        self.admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)

    def _dsn(self, target: str) -> str:
        url = self.base.set(drivername="postgresql", database=make_url(target).database)
        return url.render_as_string(hide_password=False)

    @asynccontextmanager
    async def fresh(self) -> AsyncIterator[str]:
        import asyncpg

        name = f"agentstore_bench_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        try:
            yield self.base.set(database=name).render_as_string(hide_password=False)
        finally:
            admin = await asyncpg.connect(self.admin_dsn)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()

    async def connect_raw(self, target: str) -> Raw:
        return await RawPostgres.connect(self._dsn(target))

    async def bare_open_close(self, target: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._dsn(target))
        await conn.close()

    async def describe(self) -> str:
        async with self.fresh() as target:
            store = await Store.open(target)
            try:
                async with store.engine.connect() as conn:
                    ours = (await conn.exec_driver_sql("SHOW synchronous_commit")).scalar()
            finally:
                await store.close()
            raw = await self.connect_raw(target)
            try:
                server = await raw.setting("server_version")
                theirs = await raw.setting("synchronous_commit")
                fsync = await raw.setting("fsync")
            finally:
                await raw.close()
        durability = (
            f"synchronous_commit={theirs} on both sides"
            if str(ours) == theirs
            else f"synchronous_commit: agentstore {ours}, raw {theirs} (NOT THE SAME)"
        )
        # fsync is the server's own (off on a throwaway test server: commits then cost no
        # flush, on either side).
        return (
            f"PostgreSQL {server} (loopback, {durability}, server fsync={fsync}), SQLAlchemy "
            f"{package_version('sqlalchemy')}, asyncpg {package_version('asyncpg')}"
        )
