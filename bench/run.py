"""Benchmark agentstore against the raw driver doing the same work, in the same run.

Run ``python bench/run.py [--rounds N] [--quick] [--postgres-url URL]``. Every workload runs
``--rounds`` times (5 by default, 2 with ``--quick``) on a file database in a fresh temporary
folder (on PostgreSQL: a fresh database, dropped afterwards); within a round the raw baseline
and agentstore alternate (raw, agentstore, raw, agentstore…). The output is a markdown table
of medians in milliseconds, the ratio agentstore/raw (of the medians) and, where the project
set one, the target and PASS/FAIL. Progress goes to stderr, the tables to stdout.

The raw baseline is what a careful hand-written data layer would do, with nothing but the
driver: on SQLite one ``aiosqlite`` connection opened with ``isolation_level=None`` and the
PRAGMAs agentstore sets on each of its connections (``journal_mode=WAL``,
``synchronous=NORMAL``, ``foreign_keys=ON``, ``busy_timeout``); on PostgreSQL one ``asyncpg``
connection. Its schema is agentstore's own: the database is opened once with ``Store.open``
(which migrates it) and closed, and the rows a workload needs are created then, before any
timing starts — so both sides run on the identical schema, indexes and data. Connections are
open (and warm) before the clock starts on both sides.

What each raw baseline does, and why it is the same work as the agentstore call:

W1  ``add_conversation_event`` x 1,000, one call each. Raw: one atomic statement per event,
    in its own (autocommit) transaction: ``INSERT … SELECT …, COALESCE(MAX(sequence), 0) + 1
    … RETURNING id, sequence``. Both assign the next sequence of the Claude session
    atomically (safe against concurrent writers) and hand back the id and sequence; how
    agentstore does it inside is its business. On PostgreSQL raw takes, in a transaction,
    the per-Claude-session advisory lock agentstore documents (``pg_advisory_xact_lock`` of
    a client-side 64-bit key, sent with its ``BEGIN`` in one round trip, as agentstore does).
W2  ``add_conversation_events``, 40 batches of 500. Raw: per batch ``BEGIN IMMEDIATE``,
    ``SELECT MAX(sequence)``, one ``executemany`` of a plain 16-column INSERT with the
    sequences computed in Python, ``COMMIT`` (PostgreSQL: transaction + advisory lock). The
    caller's input exists before the call on both sides: agentstore's ``ConversationEvent``
    objects are built before the clock starts (their building is timed apart and printed as
    a note: a mapped object costs several µs to construct); raw builds its parameter tuples,
    sequences included, inside its timed region. agentstore also checks every value and sets
    the new ids and sequences on the events.
W3  ``get_conversation`` of 10,000 events. Raw: the same ``SELECT`` of the 17 columns
    ``ORDER BY sequence``, fetched as tuples; agentstore returns ``ConversationEvent``
    objects with parsed timestamps. Several reads per round; the median read counts.
W4  20 tasks x 100 ``add_conversation_event`` calls to ONE Claude session through one
    ``Store`` (``asyncio.gather``). Correctness under concurrency: exceptions, duplicate
    sequences, whether the sequences are exactly 1..2000, and appends/s; PASS means no
    errors, no duplicates and exactly 1..N in every round. The raw reference is W1's
    statement run serially on its single connection (no concurrency, no ratio).
W5  ``list_sessions()`` over 5,000 sessions. Raw: agentstore's own statement, compiled with
    the dialect (``select(sessions).order_by(instant(last_activity_at).desc(), id.desc())``)
    and checked against the SQL agentstore actually emitted; fetched as tuples.
W6  ``get_session_conversation(leaf)`` over a resume chain of 5 sessions x 2,000 events.
    Raw: in one read transaction (agentstore reads one snapshot too), walk the
    ``parent_session_id`` chain with one ``SELECT`` per session, then one ``SELECT … WHERE
    claude_session_id IN (…) ORDER BY CASE … END, sequence``.
W7  ``search_sessions_by_title("needle", 50)`` over 10,000 sessions (matches in title,
    summary and query; archived, draft and discarded ones; parents). Raw: exactly the SQL and
    parameters agentstore emitted for the call (captured once, before timing, with a
    ``before_cursor_execute`` listener; if the store bypasses the engine, a compiled replica
    of its statement, with a note), fetched as tuples.

Every round also checks the results (row counts, ids in the same order, sequences 1..N), so
a fast wrong answer cannot pass.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, cast

import aiosqlite
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Dialect, make_url

from agentstore import ConversationEvent, Session, SessionStatus, Store
from agentstore.engine import BUSY_TIMEOUT_MS
from agentstore.repos._appends import lock_key
from agentstore.types import instant

SESSIONS = cast(sa.Table, Session.__table__)

EVENT_COLUMNS = (
    "session_id, claude_session_id, sequence, event_type, created_at, role, content, tool_id, "
    "tool_name, tool_input_json, tool_result_for_id, tool_result_content, is_completed, "
    "approval_status, approval_id, parent_tool_use_id"
)
SELECT_EVENT_COLUMNS = f"id, {EVENT_COLUMNS}"

# --- raw SQL, SQLite -------------------------------------------------------------------------

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
    f"SELECT {SELECT_EVENT_COLUMNS} FROM conversation_events "  # noqa: S608 - constant text
    "WHERE claude_session_id = ? ORDER BY sequence"
)
SQLITE_CHAIN_STEP = "SELECT claude_session_id, parent_session_id FROM sessions WHERE id = ?"
SQLITE_SEQUENCES = (
    "SELECT sequence FROM conversation_events WHERE claude_session_id = ? ORDER BY sequence"
)

# --- raw SQL, PostgreSQL ---------------------------------------------------------------------


def pg_begin_and_lock(claude_id: str) -> str:
    """``BEGIN`` and the Claude session's advisory lock in one round trip, as agentstore does.

    The key is agentstore's own (``lock_key``: a signed 64-bit BLAKE2b of the id, computed
    in the client), so raw and agentstore writers exclude each other as two agentstores
    would. Only that integer goes into the SQL text.
    """
    return f"BEGIN; SELECT pg_advisory_xact_lock({lock_key(claude_id)})"


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
    f"SELECT {SELECT_EVENT_COLUMNS} FROM conversation_events "  # noqa: S608 - constant text
    "WHERE claude_session_id = $1 ORDER BY sequence"
)
PG_CHAIN_STEP = "SELECT claude_session_id, parent_session_id FROM sessions WHERE id = $1"
PG_SEQUENCES = (
    "SELECT sequence FROM conversation_events WHERE claude_session_id = $1 ORDER BY sequence"
)


def now_text() -> str:
    """A timestamp as agentstore stores it on SQLite (UTC, six fraction digits, +00:00)."""
    return datetime.now(UTC).isoformat(sep=" ", timespec="microseconds")


def chain_query(count: int, placeholder: Callable[[int], str]) -> str:
    """The final W6 query for a chain of ``count`` Claude sessions (oldest first).

    Parameters: the Claude session ids (1..count), used by ``IN`` and by ``CASE``; the
    positions in ``CASE`` are integer literals made here.
    """
    ids = ", ".join(placeholder(i) for i in range(1, count + 1))
    whens = " ".join(f"WHEN {placeholder(k + 1)} THEN {k}" for k in range(count))
    return (
        f"SELECT {SELECT_EVENT_COLUMNS} FROM conversation_events "  # noqa: S608 - placeholders
        f"WHERE claude_session_id IN ({ids}) "
        f"ORDER BY CASE claude_session_id {whens} END, sequence"
    )


# --- the raw baselines -----------------------------------------------------------------------


class Raw(Protocol):
    """One raw driver connection doing each workload's work by hand."""

    async def append_one(self, session_id: str, claude_id: str, content: str) -> Sequence[Any]:
        """W1: append one event atomically; the new (id, sequence)."""
        ...

    async def append_batch(self, session_id: str, claude_id: str, first: int, count: int) -> None:
        """W2: append ``count`` events (contents ``message {first+k}``) in one transaction."""
        ...

    async def read_conversation(self, claude_id: str) -> Sequence[Sequence[Any]]:
        """W3: every event of one Claude session, by sequence."""
        ...

    async def session_conversation(self, session_id: str) -> Sequence[Sequence[Any]]:
        """W6: the events of a session and its ancestors, ancestors first."""
        ...

    async def fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]:
        """W5/W7: run a query, all rows as tuples."""
        ...

    async def sequences(self, claude_id: str) -> list[int]:
        """(checks) the sequences of one Claude session."""
        ...

    async def settle(self) -> None:
        """Bring the database to a steady state after setup (checkpoint / analyze)."""
        ...

    async def close(self) -> None: ...


class RawSQLite:
    """aiosqlite, one connection, autocommit (``isolation_level=None``), agentstore's PRAGMAs."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    @classmethod
    async def connect(cls, path: str) -> RawSQLite:
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            await db.execute_fetchall(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await db.execute_fetchall("PRAGMA journal_mode = WAL")
            await db.execute_fetchall("PRAGMA synchronous = NORMAL")
            await db.execute_fetchall("PRAGMA foreign_keys = ON")
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

    async def append_batch(self, session_id: str, claude_id: str, first: int, count: int) -> None:
        db = self.db
        await db.execute_fetchall("BEGIN IMMEDIATE")
        try:
            rows = await db.execute_fetchall(SQLITE_MAX_SEQUENCE, (claude_id,))
            start = int(next(iter(rows))[0])
            params = [
                (
                    session_id,
                    claude_id,
                    start + k + 1,
                    "message",
                    now_text(),
                    "user",
                    f"message {first + k}",
                    "",
                    "",
                    "",
                    "",
                    "",
                    0,
                    "",
                    "",
                    "",
                )
                for k in range(count)
            ]
            await db.executemany(SQLITE_INSERT_EVENT, params)
            await db.execute_fetchall("COMMIT")
        except BaseException:
            await db.execute_fetchall("ROLLBACK")
            raise

    async def read_conversation(self, claude_id: str) -> Sequence[Sequence[Any]]:
        return list(await self.db.execute_fetchall(SQLITE_READ_CONVERSATION, (claude_id,)))

    async def session_conversation(self, session_id: str) -> Sequence[Sequence[Any]]:
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
            result: Sequence[Sequence[Any]] = []
            if chain:
                sql = chain_query(len(chain), lambda i: f"?{i}")
                result = list(await db.execute_fetchall(sql, chain))
        finally:
            await db.execute_fetchall("COMMIT")
        return result

    async def fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]:
        return list(await self.db.execute_fetchall(sql, tuple(params)))

    async def sequences(self, claude_id: str) -> list[int]:
        return [int(r[0]) for r in await self.db.execute_fetchall(SQLITE_SEQUENCES, (claude_id,))]

    async def settle(self) -> None:
        await self.db.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")

    async def close(self) -> None:
        await self.db.close()


class RawPostgres:
    """asyncpg, one connection; writes in a transaction with agentstore's advisory lock."""

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

    async def append_batch(self, session_id: str, claude_id: str, first: int, count: int) -> None:
        conn = self.conn
        await conn.execute(pg_begin_and_lock(claude_id))
        try:
            start = int(await conn.fetchval(PG_MAX_SEQUENCE, claude_id))
            params = [
                (
                    session_id,
                    claude_id,
                    start + k + 1,
                    "message",
                    datetime.now(UTC),
                    "user",
                    f"message {first + k}",
                    "",
                    "",
                    "",
                    "",
                    "",
                    False,
                    "",
                    "",
                    "",
                )
                for k in range(count)
            ]
            await conn.executemany(PG_INSERT_EVENT, params)
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")

    async def read_conversation(self, claude_id: str) -> Sequence[Sequence[Any]]:
        rows: Sequence[Sequence[Any]] = await self.conn.fetch(PG_READ_CONVERSATION, claude_id)
        return rows

    async def session_conversation(self, session_id: str) -> Sequence[Sequence[Any]]:
        conn = self.conn
        async with conn.transaction():
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
            rows: Sequence[Sequence[Any]] = await conn.fetch(sql, *chain)
            return rows

    async def fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]:
        rows: Sequence[Sequence[Any]] = await self.conn.fetch(sql, *params)
        return rows

    async def sequences(self, claude_id: str) -> list[int]:
        return [int(r[0]) for r in await self.conn.fetch(PG_SEQUENCES, claude_id)]

    async def settle(self) -> None:
        await self.conn.execute("ANALYZE")

    async def close(self) -> None:
        await self.conn.close()


# --- backends --------------------------------------------------------------------------------


class Backend(Protocol):
    name: str

    def fresh(self) -> AbstractAsyncContextManager[str]:
        """A fresh, empty database (its ``Store.open`` target), removed afterwards."""
        ...

    async def connect_raw(self, target: str) -> Raw: ...

    def compile_dialect(self, store: Store) -> Dialect: ...

    async def describe(self) -> str: ...


class SQLiteBackend:
    name = "SQLite"

    @asynccontextmanager
    async def fresh(self) -> AsyncIterator[str]:
        folder = tempfile.mkdtemp(prefix="agentstore-bench-")
        try:
            yield os.path.join(folder, "agent.db")
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    async def connect_raw(self, target: str) -> Raw:
        return await RawSQLite.connect(target)

    def compile_dialect(self, store: Store) -> Dialect:
        return sqlite_dialect.dialect()

    async def describe(self) -> str:
        return (
            f"SQLite {sqlite3.sqlite_version} (file, WAL, synchronous=NORMAL), "
            f"SQLAlchemy {package_version('sqlalchemy')}, aiosqlite {package_version('aiosqlite')}"
        )


class PostgresBackend:
    name = "PostgreSQL"

    def __init__(self, url: str) -> None:
        base = make_url(url)
        self.base = base.set(drivername="postgresql+asyncpg")
        self.admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)

    def _dsn(self, database: str) -> str:
        url = self.base.set(drivername="postgresql", database=database)
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
        return await RawPostgres.connect(self._dsn(make_url(target).database or ""))

    def compile_dialect(self, store: Store) -> Dialect:
        return store.engine.dialect

    async def describe(self) -> str:
        import asyncpg

        conn = await asyncpg.connect(self.admin_dsn)
        try:
            server = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
        return (
            f"PostgreSQL {server} (loopback), SQLAlchemy {package_version('sqlalchemy')}, "
            f"asyncpg {package_version('asyncpg')}"
        )


def agentstore_revision() -> str:
    """agentstore's version, with the git commit of the tree it was run from when known."""
    version = package_version("agentstore")
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version} (git {out})" if out else version


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


# --- sizes and results -----------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    w1_events: int
    w2_events: int
    w2_batch: int
    w3_events: int
    w4_tasks: int
    w4_per_task: int
    w5_sessions: int
    w6_chain: int
    w6_events: int
    w7_sessions: int
    reads: int


FULL = Sizes(1_000, 20_000, 500, 10_000, 20, 100, 5_000, 5, 2_000, 10_000, 5)
QUICK = Sizes(200, 4_000, 500, 2_000, 5, 40, 1_000, 3, 500, 2_000, 3)


@dataclass
class Result:
    key: str
    label: str
    target: float | None
    raw: list[float] = field(default_factory=list)
    store: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @property
    def ratio(self) -> float | None:
        if not self.raw or not self.store:
            return None
        return statistics.median(self.store) / statistics.median(self.raw)

    def round_ratios(self) -> list[float]:
        return [s / r for r, s in zip(self.raw, self.store, strict=False) if r > 0]


@dataclass
class ConcurrencyResult:
    label: str
    appends: int
    errors: Counter[str] = field(default_factory=Counter)
    duplicates: list[int] = field(default_factory=list)
    exact: list[bool] = field(default_factory=list)
    store_rate: list[float] = field(default_factory=list)
    raw_rate: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


class LoggedErrors(logging.Handler):
    """Counts what SQLAlchemy logs at ERROR (e.g. a pool failing to close a connection).

    Such errors never reach the caller, so the workload would look clean without this.
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        text = record.getMessage().split(" <", 1)[0]
        if exc is not None:
            text += f": {type(exc).__name__}"
        self.seen[text] += 1
        log(f"  (SQLAlchemy logged: {text})")

    def take(self) -> list[str]:
        """Notes for what was logged since the last call, and forget it."""
        notes = [f"SQLAlchemy logged {n} x '{text}'" for text, n in self.seen.most_common()]
        self.seen.clear()
        return notes


LOGGED = LoggedErrors()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def timed(work: Callable[[], Awaitable[object]]) -> float:
    """Milliseconds ``work`` took, from the call until it returned.

    A full collection runs first, so earlier garbage is not billed, and the result is held
    until the clock has stopped: freeing what a call returned is the caller's business,
    whenever it drops the result, and is left out on both sides alike.
    """
    gc.collect()
    start = time.perf_counter()
    result = await work()
    elapsed = (time.perf_counter() - start) * 1000
    del result
    return elapsed


# --- setup helpers (never timed) -------------------------------------------------------------

SESSION_ID = "bench-session"
CLAUDE_ID = "bench-claude"


async def one_session(store: Store) -> None:
    await store.create_session(
        Session(id=SESSION_ID, run_id="bench-run", query="bench", claude_session_id=CLAUDE_ID)
    )


async def insert_sessions(store: Store, sessions: Sequence[Session]) -> None:
    """Bulk-insert sessions with the store's engine (setup only, so it may be fast)."""
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


def capture_sql(store: Store) -> tuple[list[tuple[str, Any]], Callable[[], None]]:
    """Record the statements the store sends to the driver until the returned stop()."""
    seen: list[tuple[str, Any]] = []
    engine = store.engine.sync_engine

    def listener(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        seen.append((statement, parameters))

    sa_event.listen(engine, "before_cursor_execute", listener)
    return seen, lambda: sa_event.remove(engine, "before_cursor_execute", listener)


async def emitted_select(
    store: Store, call: Callable[[], Awaitable[object]]
) -> tuple[str, Sequence[Any]] | None:
    """The one SELECT (and its parameters) that ``call`` sent through SQLAlchemy, if any.

    None when the store ran it another way (e.g. straight on the driver, bypassing the
    engine's events) or ran more than one SELECT.
    """
    captured, stop = capture_sql(store)
    try:
        await call()
    finally:
        stop()
    selects = [c for c in captured if c[0].lstrip().upper().startswith("SELECT")]
    if len(selects) != 1:
        return None
    statement, params = selects[0]
    return statement, tuple(params or ())


def compiled_query(stmt: sa.Select[Any], dialect: Dialect) -> tuple[str, Sequence[Any]]:
    """``stmt`` as driver SQL with positional parameters, for ``dialect``."""
    compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    names = compiled.positiontup or []
    return str(compiled), tuple(compiled.params[name] for name in names)


def search_statement(text: str, limit: int) -> sa.Select[Any]:
    """A replica of ``SessionRepo.search_by_title``'s statement (used if capture fails)."""
    t = SESSIONS
    children = t.alias("children")
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%".lower()
    return (
        sa.select(t)
        .where(
            ~sa.exists().where(children.c.parent_session_id == t.c.id),
            sa.or_(t.c.archived.is_(None), t.c.archived == sa.false()),
            t.c.status.not_in([SessionStatus.DRAFT.value, SessionStatus.DISCARDED.value]),
            sa.or_(
                *(
                    sa.func.lower(column).like(pattern, escape="\\")
                    for column in (t.c.title, t.c.summary, t.c.query)
                )
            ),
        )
        .order_by(instant(t.c.last_activity_at).desc(), t.c.id.desc())
        .limit(limit)
    )


# --- workloads -------------------------------------------------------------------------------


class Bench:
    def __init__(self, backend: Backend, sizes: Sizes, rounds: int) -> None:
        self.backend = backend
        self.sizes = sizes
        self.rounds = rounds

    def progress(self, result: Result, index: int) -> None:
        raw, store = result.raw[-1], result.store[-1]
        log(
            f"[{self.backend.name}] {result.key} round {index + 1}/{self.rounds}: "
            f"raw {raw:.1f} ms, agentstore {store:.1f} ms ({store / raw:.2f}x)"
        )

    # Writes: a fresh database for each side of each round.

    async def write_round(
        self,
        result: Result,
        raw_work: Callable[[Raw], Awaitable[object]],
        store_work: Callable[[Store], Awaitable[object]],
        expected: int,
        prepare: Callable[[], object] | None = None,
    ) -> None:
        async with self.backend.fresh() as target:
            store = await Store.open(target)
            try:
                await one_session(store)
            finally:
                await store.close()
            raw = await self.backend.connect_raw(target)
            try:
                result.raw.append(await timed(lambda: raw_work(raw)))
                self.check_sequences(result, "raw", await raw.sequences(CLAUDE_ID), expected)
            finally:
                await raw.close()
        async with self.backend.fresh() as target:
            store = await Store.open(target)
            try:
                await one_session(store)
                if prepare is not None:
                    prepare()  # the caller's own input objects, built before the clock starts
                result.store.append(await timed(lambda: store_work(store)))
                got = [e.sequence for e in await store.get_conversation(CLAUDE_ID)]
                self.check_sequences(result, "agentstore", got, expected)
            finally:
                await store.close()

    @staticmethod
    def check_sequences(result: Result, side: str, got: list[int], expected: int) -> None:
        if got != list(range(1, expected + 1)):
            result.problems.append(
                f"{side}: {len(got)} events, sequences not exactly 1..{expected}"
            )

    async def w1(self) -> Result:
        n = self.sizes.w1_events
        result = Result("W1", f"append {n:,} events, one per call", 1.5)

        async def raw_work(raw: Raw) -> None:
            for i in range(n):
                await raw.append_one(SESSION_ID, CLAUDE_ID, f"message {i}")

        async def store_work(store: Store) -> None:
            for i in range(n):
                await store.add_conversation_event(
                    ConversationEvent(
                        session_id=SESSION_ID,
                        claude_session_id=CLAUDE_ID,
                        event_type="message",
                        role="user",
                        content=f"message {i}",
                    )
                )

        for index in range(self.rounds):
            await self.write_round(result, raw_work, store_work, n)
            self.progress(result, index)
        return result

    async def w2(self) -> Result:
        n, size = self.sizes.w2_events, self.sizes.w2_batch
        result = Result("W2", f"append {n:,} events in batches of {size}", 1.25)

        async def raw_work(raw: Raw) -> None:
            for first in range(0, n, size):
                await raw.append_batch(SESSION_ID, CLAUDE_ID, first, min(size, n - first))

        batches: list[list[ConversationEvent]] = []
        built: list[float] = []

        def prepare() -> None:
            # The caller's events exist before it calls add_conversation_events, as the raw
            # side's values do; building them is timed apart and reported.
            start = time.perf_counter()
            batches[:] = [
                [
                    ConversationEvent(
                        session_id=SESSION_ID,
                        claude_session_id=CLAUDE_ID,
                        event_type="message",
                        role="user",
                        content=f"message {i}",
                    )
                    for i in range(first, min(n, first + size))
                ]
                for first in range(0, n, size)
            ]
            built.append(time.perf_counter() - start)

        async def store_work(store: Store) -> None:
            for batch in batches:
                await store.add_conversation_events(batch)

        for index in range(self.rounds):
            await self.write_round(result, raw_work, store_work, n, prepare)
            self.progress(result, index)
        result.note(
            f"building the {n:,} ConversationEvent objects before the call, not timed: "
            f"median {statistics.median(built) * 1e3:.1f} ms"
        )
        return result

    # Reads: one fresh database per round, read by both sides in turn.

    async def read_rounds(
        self,
        result: Result,
        setup: Callable[[Store], Awaitable[None]],
        raw_read: Callable[[Raw, Store], Awaitable[Sequence[Sequence[Any]]]],
        store_read: Callable[[Store], Awaitable[Sequence[Any]]],
    ) -> None:
        for index in range(self.rounds):
            async with self.backend.fresh() as target:
                store = await Store.open(target)
                try:
                    await setup(store)
                    raw = await self.backend.connect_raw(target)
                    try:
                        await raw.settle()
                        # Warm both sides (page cache, statement caches), then check they agree.
                        raw_rows = await raw_read(raw, store)
                        objects = await store_read(store)
                        raw_ids = [row[0] for row in raw_rows]
                        store_ids = [getattr(obj, "id", None) for obj in objects]
                        if raw_ids != store_ids:
                            result.problems.append(
                                f"round {index + 1}: raw returned {len(raw_ids)} rows, "
                                f"agentstore {len(store_ids)}, or in another order"
                            )
                        if not raw_ids:
                            result.problems.append(f"round {index + 1}: no rows returned")
                        raw_times: list[float] = []
                        store_times: list[float] = []
                        for _ in range(self.sizes.reads):
                            raw_times.append(await timed(partial(raw_read, raw, store)))
                            store_times.append(await timed(partial(store_read, store)))
                        result.raw.append(statistics.median(raw_times))
                        result.store.append(statistics.median(store_times))
                    finally:
                        await raw.close()
                finally:
                    await store.close()
            self.progress(result, index)

    async def w3(self) -> Result:
        n = self.sizes.w3_events
        result = Result("W3", f"read a {n:,}-event conversation", 1.5)

        async def setup(store: Store) -> None:
            await one_session(store)
            await add_events(store, SESSION_ID, CLAUDE_ID, n)

        async def raw_read(raw: Raw, _store: Store) -> Sequence[Sequence[Any]]:
            return await raw.read_conversation(CLAUDE_ID)

        async def store_read(store: Store) -> Sequence[Any]:
            return await store.get_conversation(CLAUDE_ID)

        await self.read_rounds(result, setup, raw_read, store_read)
        return result

    async def w5(self) -> Result:
        n = self.sizes.w5_sessions
        result = Result("W5", f"list {n:,} sessions", 1.5)
        sessions = list_sessions_fixture(n)
        sql_of: dict[int, str] = {}

        async def setup(store: Store) -> None:
            await insert_sessions(store, sessions)
            stmt = sa.select(SESSIONS).order_by(
                instant(SESSIONS.c.last_activity_at).desc(), SESSIONS.c.id.desc()
            )
            sql = str(stmt.compile(dialect=self.backend.compile_dialect(store)))
            emitted = await emitted_select(store, store.list_sessions)
            if emitted is None:
                result.note("raw runs the compiled statement (agentstore's SQL was not seen)")
            elif emitted[0] != sql:
                result.note("raw runs the compiled statement; agentstore emitted other SQL")
            sql_of[id(store)] = sql

        async def raw_read(raw: Raw, store: Store) -> Sequence[Sequence[Any]]:
            return await raw.fetch(sql_of[id(store)], ())

        async def store_read(store: Store) -> Sequence[Any]:
            return await store.list_sessions()

        await self.read_rounds(result, setup, raw_read, store_read)
        return result

    async def w6(self) -> Result:
        chain, n = self.sizes.w6_chain, self.sizes.w6_events
        result = Result(
            "W6", f"session conversation over a {chain}-session chain x {n:,} events", None
        )
        leaf = f"chain-{chain - 1}"

        async def setup(store: Store) -> None:
            for k in range(chain):
                await store.create_session(
                    Session(
                        id=f"chain-{k}",
                        run_id=f"chain-run-{k}",
                        query="continue" if k else "start",
                        claude_session_id=f"chain-claude-{k}",
                        parent_session_id=f"chain-{k - 1}" if k else "",
                    )
                )
                await add_events(store, f"chain-{k}", f"chain-claude-{k}", n)

        async def raw_read(raw: Raw, _store: Store) -> Sequence[Sequence[Any]]:
            return await raw.session_conversation(leaf)

        async def store_read(store: Store) -> Sequence[Any]:
            return await store.get_session_conversation(leaf)

        await self.read_rounds(result, setup, raw_read, store_read)
        return result

    async def w7(self) -> Result:
        n = self.sizes.w7_sessions
        result = Result("W7", f'search "needle" (limit 50) over {n:,} sessions', None)
        sessions = search_fixture(n)
        query_of: dict[int, tuple[str, Sequence[Any]]] = {}

        async def setup(store: Store) -> None:
            await insert_sessions(store, sessions)
            emitted = await emitted_select(
                store, partial(store.search_sessions_by_title, "needle", 50)
            )
            if emitted is None:
                result.note("raw runs a replica of agentstore's statement (its SQL was not seen)")
                dialect = self.backend.compile_dialect(store)
                emitted = compiled_query(search_statement("needle", 50), dialect)
            query_of[id(store)] = emitted

        async def raw_read(raw: Raw, store: Store) -> Sequence[Sequence[Any]]:
            sql, params = query_of[id(store)]
            return await raw.fetch(sql, params)

        async def store_read(store: Store) -> Sequence[Any]:
            return await store.search_sessions_by_title("needle", 50)

        await self.read_rounds(result, setup, raw_read, store_read)
        return result

    # Concurrency.

    async def w4(self) -> ConcurrencyResult:
        tasks, per_task = self.sizes.w4_tasks, self.sizes.w4_per_task
        total = tasks * per_task
        result = ConcurrencyResult(
            f"{tasks} tasks x {per_task} appends to one Claude session, one Store", total
        )
        for index in range(self.rounds):
            # Raw reference: the same number of appends, serially, on one connection.
            async with self.backend.fresh() as target:
                store = await Store.open(target)
                try:
                    await one_session(store)
                finally:
                    await store.close()
                raw = await self.backend.connect_raw(target)
                try:

                    async def serial(raw: Raw = raw) -> None:
                        for i in range(total):
                            await raw.append_one(SESSION_ID, CLAUDE_ID, f"message {i}")

                    elapsed = await timed(serial)
                    result.raw_rate.append(total / (elapsed / 1000))
                finally:
                    await raw.close()
            async with self.backend.fresh() as target:
                store = await Store.open(target)
                try:
                    await one_session(store)
                    errors: Counter[str] = Counter()

                    async def task(
                        t: int, store: Store = store, errors: Counter[str] = errors
                    ) -> None:
                        for i in range(per_task):
                            try:
                                await store.add_conversation_event(
                                    ConversationEvent(
                                        session_id=SESSION_ID,
                                        claude_session_id=CLAUDE_ID,
                                        event_type="message",
                                        role="user",
                                        content=f"task {t} message {i}",
                                    )
                                )
                            except Exception as exc:
                                cause = exc.__cause__ or exc
                                errors[f"{type(exc).__name__} ({str(cause).splitlines()[0]})"] += 1

                    async def all_tasks(task: Callable[[int], Awaitable[None]] = task) -> None:
                        await asyncio.gather(*(task(t) for t in range(tasks)))

                    elapsed = await timed(all_tasks)
                    sequences = [e.sequence for e in await store.get_conversation(CLAUDE_ID)]
                finally:
                    await store.close()
            ok = total - sum(errors.values())
            result.errors.update(errors)
            result.duplicates.append(len(sequences) - len(set(sequences)))
            result.exact.append(sorted(sequences) == list(range(1, total + 1)))
            result.store_rate.append(ok / (elapsed / 1000))
            log(
                f"[{self.backend.name}] W4 round {index + 1}/{self.rounds}: "
                f"{sum(errors.values())} errors, {result.duplicates[-1]} duplicate sequences, "
                f"exact 1..{total}: {result.exact[-1]}, agentstore {result.store_rate[-1]:,.0f}"
                f" appends/s, raw serial {result.raw_rate[-1]:,.0f} appends/s"
            )
        return result


# --- report ----------------------------------------------------------------------------------


def fmt_ms(values: Sequence[float]) -> str:
    return f"{statistics.median(values):,.1f}" if values else "—"


def render(
    backend_line: str,
    rounds: int,
    results: Sequence[Result],
    concurrency: ConcurrencyResult | None,
    title: str,
    revision: str,
) -> str:
    machine = (
        f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()} "
        f"({platform.python_implementation()})"
    )
    lines = [
        f"### {title}",
        "",
        f"Machine: {machine}; {backend_line}; agentstore {revision}; "
        f"{rounds} round{'s' if rounds != 1 else ''}, medians.",
    ]
    if results:
        lines += [
            "",
            "| workload | raw (ms) | agentstore (ms) | ratio | ratio per round | target | result |",
            "|---|---:|---:|---:|---:|---:|:---:|",
        ]
    for r in results:
        name = f"{r.key} {r.label}"
        if r.error is not None:
            lines.append(f"| {name} | — | — | — | — | — | ERROR: {r.error} |")
            continue
        ratio = r.ratio
        per_round = r.round_ratios()
        spread = f"{min(per_round):.2f} to {max(per_round):.2f}" if per_round else "—"
        target = f"≤ {r.target:.2f}" if r.target is not None else "—"
        if r.problems:
            verdict = "CHECK FAILED"
        elif r.target is None or ratio is None:
            verdict = "—"
        else:
            verdict = "PASS" if ratio <= r.target else "FAIL"
        ratio_text = f"{ratio:.2f}" if ratio is not None else "—"
        lines.append(
            f"| {name} | {fmt_ms(r.raw)} | {fmt_ms(r.store)} | {ratio_text} | {spread} "
            f"| {target} | {verdict} |"
        )
    if concurrency is not None:
        c = concurrency
        lines += [
            "",
            "| W4 concurrency | errors | duplicate sequences | exactly 1..N | agentstore "
            "appends/s | raw serial appends/s | result |",
            "|---|---:|---:|:---:|---:|---:|:---:|",
        ]
        if c.error is not None:
            lines.append(f"| {c.label} | — | — | — | — | — | ERROR: {c.error} |")
        else:
            errors = sum(c.errors.values())
            exact = all(c.exact) and bool(c.exact)
            verdict = (
                "PASS" if errors == 0 and max(c.duplicates, default=0) == 0 and exact else "FAIL"
            )
            lines.append(
                f"| {c.label} (N = {c.appends:,}) | {errors} in {len(c.exact)} rounds "
                f"| max {max(c.duplicates, default=0)} | {'yes' if exact else 'no'} "
                f"| {statistics.median(c.store_rate):,.0f} | {statistics.median(c.raw_rate):,.0f} "
                f"| {verdict} |"
            )
    notes = [f"- {r.key}: {p}" for r in results for p in (*r.problems, *r.notes)]
    if concurrency is not None:
        notes += [f"- W4 error: {n} x {kind}" for kind, n in concurrency.errors.most_common(5)]
        notes += [f"- W4: {note}" for note in concurrency.notes]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines)


async def run_backend(
    backend: Backend, sizes: Sizes, rounds: int, only: set[str] | None, revision: str
) -> str:
    bench = Bench(backend, sizes, rounds)
    results: list[Result] = []
    concurrency: ConcurrencyResult | None = None
    steps: list[tuple[str, Callable[[], Awaitable[Result]]]] = [
        ("W1", bench.w1),
        ("W2", bench.w2),
        ("W3", bench.w3),
        ("W5", bench.w5),
        ("W6", bench.w6),
        ("W7", bench.w7),
    ]
    for key, step in steps:
        if only is not None and key not in only:
            continue
        LOGGED.take()
        try:
            results.append(await step())
        except Exception as exc:
            log(f"[{backend.name}] {key} failed: {exc!r}")
            results.append(Result(key, "", None, error=f"{type(exc).__name__}: {exc}"[:200]))
        results[-1].notes += LOGGED.take()
    if only is None or "W4" in only:
        LOGGED.take()
        try:
            concurrency = await bench.w4()
        except Exception as exc:
            log(f"[{backend.name}] W4 failed: {exc!r}")
            concurrency = ConcurrencyResult("W4", 0, error=f"{type(exc).__name__}: {exc}"[:200])
        concurrency.notes += LOGGED.take()
    description = await backend.describe()
    title = f"agentstore vs raw — {backend.name}"
    return render(description, rounds, results, concurrency, title, revision)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark agentstore against raw aiosqlite/asyncpg doing the same work."
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5, quick 2)")
    parser.add_argument("--quick", action="store_true", help="2 rounds and smaller sizes")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("AGENTSTORE_TEST_POSTGRES_URL", ""),
        help="also run on PostgreSQL: an admin URL (default: $AGENTSTORE_TEST_POSTGRES_URL); "
        "a fresh database is created for each run and dropped afterwards",
    )
    parser.add_argument(
        "--only", default="", help="comma-separated workloads to run, e.g. W1,W4 (default: all)"
    )
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite runs")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 2 if args.quick else 5
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


async def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("sqlalchemy").addHandler(LOGGED)
    sizes = QUICK if args.quick else FULL
    only = {w.strip().upper() for w in args.only.split(",") if w.strip()} or None
    backends: list[Backend] = []
    if not args.no_sqlite:
        backends.append(SQLiteBackend())
    if args.postgres_url:
        backends.append(PostgresBackend(args.postgres_url))
    # The tree as it was when agentstore was imported (it may change while the bench runs).
    revision = agentstore_revision()
    tables = []
    for backend in backends:
        tables.append(await run_backend(backend, sizes, args.rounds, only, revision))
        print(tables[-1] + "\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
