"""SQLite: threads that own their connections, and units of work run whole inside them.

* **One writer thread** owns the write connection. Every write unit runs there as one job —
  ``BEGIN IMMEDIATE``, the unit's statements, ``COMMIT`` (or ``ROLLBACK``) — so a unit is a
  single hand-off from the event loop, and nothing the event loop does (a caller's
  cancellation above all) can stop it between its ``BEGIN`` and its ``COMMIT``: the
  connection is never left in a transaction that another caller would inherit.
* **Reader threads** (two by default) each own a connection and take read jobs from one
  queue; WAL lets them read beside the writer. An in-memory database has one connection, so
  there everything runs on the writer.
* A caller awaits its job's future. Cancelled before its job started, the job is skipped;
  cancelled after, the job still completes (or rolls back) whole, and its result is dropped.

aiosqlite does the same with a thread per connection, but it hands the thread one statement
at a time, and each ``await`` between a ``BEGIN`` and its ``COMMIT`` is a point where a
cancelled caller leaves the connection mid-transaction; it has no public way to run a
whole unit of work as one call, hence these few lines of our own.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache, partial
from itertools import chain
from pathlib import Path
from queue import SimpleQueue
from typing import Any, Final, TypeVar
from urllib.parse import unquote

from agentstore.db.base import (
    APPEND_COLUMNS,
    EMPTY,
    Conn,
    Unit,
    append_one,
    check_columns,
    run_to_end,
)
from agentstore.db.errors import translate
from agentstore.db.statements import Query, Statement
from agentstore.errors import DatabaseError, NotADatabaseError, ReadOnlyDatabaseError
from agentstore.models import Base

__all__ = [
    "BUSY_TIMEOUT_MS",
    "SQLiteBackend",
    "SQLiteConn",
    "SQLiteTarget",
    "configure_connection",
]

T = TypeVar("T")
M = TypeVar("M", bound=Base)

BUSY_TIMEOUT_MS: Final = 30_000
SQLITE_HEADER: Final = b"SQLite format 3\x00"
READERS: Final = 2


# --- files ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SQLiteTarget:
    """Where an SQLite store lives: what ``sqlite3.connect`` is given, and the file on disk."""

    database: str
    uri: bool = False
    path: Path | None = None  # None: in memory

    @property
    def memory(self) -> bool:
        return self.path is None

    @classmethod
    def from_url_database(cls, database: str | None, query: Mapping[str, Any]) -> SQLiteTarget:
        """The target of a SQLAlchemy URL's database part (``uri=true`` for ``file:`` URIs)."""
        text = database or ""
        uri = str(query.get("uri", "")).lower() in ("true", "1")
        if text in ("", ":memory:"):
            return cls(":memory:")
        if uri or text.startswith("file:"):
            location, _, options = text.partition("?")
            location = location.removeprefix("file:")
            if location.startswith("//"):  # file://host/path: only an empty host is local
                location = location[2:].partition("/")[2]
                location = "/" + location
            if "mode=memory" in options or location in ("", ":memory:"):
                return cls(text, uri=True)
            path = Path(unquote(location)).expanduser().absolute()
            return cls(text, uri=True, path=path)
        path = Path(text).expanduser().absolute()
        return cls(str(path), path=path)


def check_file(path: Path, *, create: bool) -> bool:
    """Refuse what cannot be an agentstore file, before anything is written; returns whether
    the file exists.

    Nothing is created here: :func:`create_file` does that once every check has passed.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        info = None
    except NotADirectoryError:
        raise DatabaseError(f"{path}: a folder on its path is a file") from None
    except PermissionError:
        raise ReadOnlyDatabaseError(f"{path} cannot be reached: permission denied") from None
    except OSError as exc:
        raise DatabaseError(f"{path} cannot be opened: {exc.strerror or exc}") from None
    if info is None:
        if not create:
            return False
        _check_creatable(path)
        return False
    if stat.S_ISDIR(info.st_mode):
        raise NotADatabaseError(f"{path} is a directory, not an SQLite database")
    if not stat.S_ISREG(info.st_mode):
        raise NotADatabaseError(f"{path} is not a regular file")
    if not info.st_mode & stat.S_IWUSR or not os.access(path, os.R_OK | os.W_OK):
        raise ReadOnlyDatabaseError(
            f"{path} is read-only; agentstore needs to write it (nothing was changed)"
        )
    folder = path.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ReadOnlyDatabaseError(
            f"{path}: its folder is read-only, and SQLite needs to create its -wal file there"
        )
    try:
        with path.open("rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise DatabaseError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if header and header != SQLITE_HEADER:
        raise NotADatabaseError(f"{path} is not an SQLite database; it was left untouched")
    return True


def _check_creatable(path: Path) -> None:
    # The nearest existing folder must be a writable folder.
    for folder in path.parents:
        try:
            info = folder.stat()
        except FileNotFoundError:
            continue
        except NotADirectoryError:
            raise DatabaseError(f"{path}: a folder on its path is a file") from None
        except OSError as exc:
            raise DatabaseError(f"{path} cannot be created: {exc.strerror or exc}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise DatabaseError(f"{path}: {folder} is a file, not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ReadOnlyDatabaseError(f"{path} cannot be created: {folder} is read-only")
        return


def create_file(path: Path) -> list[Path]:
    """Create the file (0600) and its missing folders (0700); returns what was created."""
    created: list[Path] = []
    missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    try:
        for folder in reversed(missing):  # mkdir(parents=True) would give parents the umask
            folder.mkdir(mode=0o700)
            created.append(folder)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        created.append(path)
    except OSError as exc:
        remove_created(created)
        raise DatabaseError(f"{path} cannot be created: {exc.strerror or exc}") from None
    return created


def remove_created(created: Sequence[Path]) -> None:
    """Undo :func:`create_file` (after a failed open): the file, its -wal/-shm, the folders."""
    for item in reversed(created):
        try:
            if item.is_dir():
                item.rmdir()
            else:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(f"{item}{suffix}").unlink(missing_ok=True)
        except OSError:
            pass


def configure_connection(conn: sqlite3.Connection, durability: str = "full") -> None:
    """Every agentstore SQLite connection: no implicit transactions (each unit emits its own
    ``BEGIN``), foreign keys on, a 30 s busy timeout, and the durability asked for:
    ``full`` (SQLite's default, as hld runs: a commit survives a power loss) or ``normal``
    (WAL's cheaper setting: the last commits may be lost on a power loss, never on a crash).
    """
    conn.isolation_level = None
    conn.create_function("agentstore_lower", 1, _lower, deterministic=True)
    conn.create_function("agentstore_bm25", 1, _bm25, deterministic=True)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA synchronous = {'FULL' if durability == 'full' else 'NORMAL'}")


def _bm25(matchinfo: Any) -> float:
    # The search index's ranking (agentstore.repos.search), for the store's own queries.
    from agentstore.repos.search import bm25

    return bm25(matchinfo)


def _lower(value: Any) -> Any:
    # Unicode lower-casing for the store's own queries (SQLite's lower() folds ASCII only).
    return value.lower() if isinstance(value, str) else value


def connect(target: SQLiteTarget, durability: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        target.database,
        uri=target.uri,
        isolation_level=None,
        check_same_thread=False,  # made in its thread, then used by that thread alone
        cached_statements=256,
    )
    try:
        configure_connection(conn, durability)
    except BaseException:
        conn.close()
        raise
    return conn


# --- threads that own connections -----------------------------------------------------------


Done = Callable[[Any, BaseException | None], None]
"""Called in the event loop's thread with a job's result, or the error it raised."""


class _Job:
    __slots__ = ("done", "fn", "future", "loop")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        loop: asyncio.AbstractEventLoop,
        done: Done | None = None,
    ) -> None:
        self.fn = fn
        self.loop = loop
        self.future: asyncio.Future[Any] | None = None
        if done is None:
            self.future = loop.create_future()
            done = partial(_settle, self.future)
        self.done = done

    def abandoned(self) -> bool:
        """Its caller stopped waiting before it started."""
        return self.future is not None and self.future.cancelled()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller stopped waiting
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


_STOP: Final = object()


class ConnectionThreads:
    """``count`` threads taking jobs from one queue, each on a connection it made and owns."""

    def __init__(self, name: str, count: int, make: Callable[[], sqlite3.Connection]) -> None:
        self._name = name
        self._count = count
        self._make = make
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._stopped: list[asyncio.Future[None]] = []

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        for i in range(self._count):
            stopped: asyncio.Future[None] = loop.create_future()
            thread = threading.Thread(
                target=self._run, args=(loop, stopped), name=f"{self._name}-{i}", daemon=True
            )
            self._threads.append(thread)
            self._stopped.append(stopped)
            thread.start()

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue ``fn(connection)``; its future resolves when it has run (FIFO)."""
        job = self._queue_job(fn, None)
        assert job.future is not None
        return job.future

    def submit_then(self, fn: Callable[[sqlite3.Connection], T], done: Done) -> None:
        """Queue ``fn(connection)``; ``done(result, error)`` runs in the event loop after it."""
        self._queue_job(fn, done)

    def _queue_job(self, fn: Callable[[sqlite3.Connection], Any], done: Done | None) -> _Job:
        if not self._threads:
            self._start()
        job = _Job(fn, asyncio.get_running_loop(), done)
        self._queue.put(job)
        return job

    def _run(self, loop: asyncio.AbstractEventLoop, stopped: asyncio.Future[None]) -> None:
        conn: sqlite3.Connection | None = None
        failure: BaseException | None = None
        try:
            conn = self._make()
        except BaseException as exc:  # every job then fails with it
            failure = translate(exc)
            failure.__cause__ = exc
        try:
            while True:
                job = self._queue.get()
                if job is _STOP:
                    return
                if job.abandoned():  # the caller gave up before it started
                    continue
                result: Any = None
                error: BaseException | None = failure
                if error is None:
                    try:
                        result = job.fn(conn)
                    except BaseException as exc:
                        error = exc
                _call(job.loop, job.done, result, error)
                # Not kept until the next job: the caller may drop the result first (then it
                # is freed where it is dropped, not inside the next caller's job).
                job = result = error = None
        finally:
            if conn is not None:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            _call(loop, _settle, stopped, None, None)

    async def close(self) -> None:
        """Let queued jobs finish, then close every connection and end the threads."""
        for _ in self._threads:
            self._queue.put(_STOP)
        if self._stopped:
            await asyncio.gather(*self._stopped)
        self._threads.clear()
        self._stopped.clear()


def _call(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # the event loop is closed: nobody is waiting any more
        pass


# --- the connection a unit of work sees -----------------------------------------------------


class SQLiteConn(Conn):
    """A unit of work's view of a thread's connection. Its methods never suspend."""

    dialect = "sqlite"

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw

    def _run(self, stmt: Statement, values: Mapping[str, Any]) -> sqlite3.Cursor:
        compiled = stmt.on("sqlite")
        try:
            return self.raw.execute(compiled.sql, compiled.args(values))
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    async def rows(self, stmt: Statement, values: Mapping[str, Any] = EMPTY) -> list[Any]:
        cursor = self._run(stmt, values)
        try:
            return cursor.fetchall()
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    async def models(self, query: Query[M], values: Mapping[str, Any] = EMPTY) -> list[M]:
        # Built while the cursor steps: each row's tuple is freed as soon as it is used.
        cursor = self._run(query, values)
        try:
            return query.build("sqlite", cursor, values)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    async def raw_rows(self, sql: str, args: Sequence[Any]) -> list[Any]:
        try:
            return self.raw.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    async def stream(
        self, stmt: Statement, values: Mapping[str, Any] = EMPTY, size: int = 1000
    ) -> AsyncIterator[list[Any]]:
        cursor = self._run(stmt, values)
        while True:
            try:
                chunk = cursor.fetchmany(size)
            except sqlite3.Error as exc:
                raise translate(exc) from exc
            if not chunk:
                return
            yield chunk

    async def insert_many(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        check_columns(table, columns)
        marks = ", ".join("?" * len(columns))
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
        try:
            self.raw.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    async def execute(self, stmt: Statement, values: Mapping[str, Any] = EMPTY) -> int:
        return self._run(stmt, values).rowcount

    async def append_events(
        self, requests: Sequence[Sequence[tuple[Any, ...]]]
    ) -> list[list[tuple[int, int]] | str]:
        if len(requests) == 1 and len(requests[0]) == 1:
            return [await append_one(self, requests[0][0])]
        try:
            return _append_events(self.raw, requests)
        except sqlite3.Error as exc:
            raise translate(exc) from exc


# The hot statements of appends. Under the write lock (BEGIN IMMEDIATE) nothing can change
# between these reads and the insert, in this process or another.
_SESSION_AT: Final = APPEND_COLUMNS.index("session_id")
_CLAUDE_AT: Final = APPEND_COLUMNS.index("claude_session_id")
_INSERT_HEAD: Final = (
    f"INSERT INTO conversation_events (sequence, {', '.join(APPEND_COLUMNS)}) VALUES "  # noqa: S608
)
_ROW_MARKS: Final = f"({', '.join(['?'] * (len(APPEND_COLUMNS) + 1))})"
_LAST_SEQUENCE: Final = "SELECT MAX(sequence) FROM conversation_events WHERE claude_session_id = ?"
_LAST_ID: Final = (
    # The last id ever given (AUTOINCREMENT's counter, which a deleted row does not lower).
    "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'conversation_events'),"
    " 0), COALESCE((SELECT MAX(id) FROM conversation_events), 0))"
)


def _variable_limit() -> int:
    probe = sqlite3.connect(":memory:")
    try:
        return probe.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    finally:
        probe.close()


# A batch goes in as INSERT … VALUES (…), (…), …: one statement binds every row in C, about
# a third faster than executemany's bind-step-reset per row; up to 1,000 rows a statement,
# fewer if this SQLite allows fewer parameters (999 before SQLite 3.32).
VARIABLE_LIMIT: Final = _variable_limit()
"""How many parameters one statement of this SQLite may bind."""
_ROWS_PER_INSERT: Final = max(1, min(1000, VARIABLE_LIMIT // (len(APPEND_COLUMNS) + 1)))
_KEYS_PER_LOOKUP: Final = max(1, min(500, VARIABLE_LIMIT))


@cache
def _insert_sql(rows: int) -> str:
    return _INSERT_HEAD + ", ".join([_ROW_MARKS] * rows)


@cache
def _in_list(count: int) -> str:
    return ", ".join("?" * count)


def _lookup(raw: sqlite3.Connection, sql: str, keys: list[str]) -> list[Any]:
    found: list[Any] = []
    for start in range(0, len(keys), _KEYS_PER_LOOKUP):
        chunk = keys[start : start + _KEYS_PER_LOOKUP]
        found.extend(raw.execute(sql.format(marks=_in_list(len(chunk))), chunk).fetchall())
    return found


def _append_events(
    raw: sqlite3.Connection, requests: Sequence[Sequence[tuple[Any, ...]]]
) -> list[list[tuple[int, int]] | str]:
    sessions = list(dict.fromkeys(row[_SESSION_AT] for rows in requests for row in rows))
    present = {
        r[0] for r in _lookup(raw, "SELECT id FROM sessions WHERE id IN ({marks})", sessions)
    }
    missing = [
        next((row[_SESSION_AT] for row in rows if row[_SESSION_AT] not in present), None)
        for rows in requests
    ]
    claude_ids = list(
        dict.fromkeys(
            row[_CLAUDE_AT]
            for rows, absent in zip(requests, missing, strict=True)
            if absent is None
            for row in rows
        )
    )
    if not claude_ids:
        return [absent or "" for absent in missing]
    # One MAX per Claude session: SQLite answers it from the end of the index (O(log n));
    # a GROUP BY over several sessions would read every event of each.
    last = {key: raw.execute(_LAST_SEQUENCE, (key,)).fetchone()[0] for key in claude_ids}
    next_id = int(raw.execute(_LAST_ID).fetchone()[0]) + 1
    results: list[list[tuple[int, int]] | str] = []
    numbered: list[tuple[Any, ...]] = []
    for rows, absent in zip(requests, missing, strict=True):
        if absent is not None:
            results.append(absent)
            continue
        given = []
        for row in rows:
            key = row[_CLAUDE_AT]
            sequence = last[key] = (last.get(key) or 0) + 1
            numbered.append((sequence, *row))
            given.append((next_id, sequence))
            next_id += 1  # AUTOINCREMENT, under the write lock: consecutive, in this order
        results.append(given)
    for start in range(0, len(numbered), _ROWS_PER_INSERT):
        chunk = numbered[start : start + _ROWS_PER_INSERT]
        raw.execute(_insert_sql(len(chunk)), list(chain.from_iterable(chunk)))
    return results


# --- the backend ----------------------------------------------------------------------------


def _read_job(unit: Unit[T], snapshot: bool) -> Callable[[sqlite3.Connection], T]:
    def job(raw: sqlite3.Connection) -> T:
        if snapshot:
            _begin(raw, "BEGIN")
        try:
            return run_to_end(unit(SQLiteConn(raw)))
        finally:
            if raw.in_transaction:
                raw.execute("ROLLBACK")  # a read: nothing to keep

    return job


def _write_job(unit: Unit[T]) -> Callable[[sqlite3.Connection], T]:
    def job(raw: sqlite3.Connection) -> T:
        _begin(raw, "BEGIN IMMEDIATE")
        try:
            result = run_to_end(unit(SQLiteConn(raw)))
            raw.execute("COMMIT")
        except BaseException as exc:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise translate(exc) from exc
            raise
        return result

    return job


def _begin(raw: sqlite3.Connection, sql: str) -> None:
    if raw.in_transaction:  # never: every job ends its own transaction
        raw.execute("ROLLBACK")
    try:
        raw.execute(sql)
    except sqlite3.Error as exc:
        raise translate(exc) from exc


class SQLiteTransaction:
    """The writer, held by one ``store.transaction()`` block: each call is one job in the
    open transaction, inside a savepoint of its own (so a failed call can be caught and the
    block go on)."""

    dialect = "sqlite"

    def __init__(self, writer: ConnectionThreads) -> None:
        self._writer = writer

    async def read(self, unit: Unit[T], *, snapshot: bool = False) -> T:
        result: T = await self._writer.submit(lambda raw: run_to_end(unit(SQLiteConn(raw))))
        return result

    async def write(self, unit: Unit[T], *, lock_keys: Sequence[str] = ()) -> T:
        def job(raw: sqlite3.Connection) -> T:
            raw.execute("SAVEPOINT agentstore_call")
            try:
                result = run_to_end(unit(SQLiteConn(raw)))
            except BaseException:
                raw.execute("ROLLBACK TO agentstore_call")
                raw.execute("RELEASE agentstore_call")
                raise
            raw.execute("RELEASE agentstore_call")
            return result

        return await self._writer.submit(job)


class SQLiteSnapshot:
    """A read transaction held open on a connection of its own: every unit sees one state."""

    dialect = "sqlite"

    def __init__(self, thread: ConnectionThreads) -> None:
        self._thread = thread

    async def read(self, unit: Unit[T], *, snapshot: bool = False) -> T:
        result: T = await self._thread.submit(lambda raw: run_to_end(unit(SQLiteConn(raw))))
        return result


def _begin_snapshot(raw: sqlite3.Connection) -> None:
    _begin(raw, "BEGIN")
    raw.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()  # the snapshot starts here


class SQLiteBackend:
    """The store's SQLite data path: a writer thread and reader threads (see the module)."""

    dialect = "sqlite"

    def __init__(self, target: SQLiteTarget, *, durability: str, readers: int = READERS) -> None:
        self.target = target
        self.durability = durability
        self._writer = ConnectionThreads(
            "agentstore-writer", 1, lambda: connect(target, durability)
        )
        self._readers = (
            None
            if target.memory
            else ConnectionThreads(
                "agentstore-reader", readers, lambda: connect(target, durability)
            )
        )
        # Held by a store.transaction() for its whole block, and by every other write while
        # it queues its job: jobs run in queue order, so nothing slips into an open block.
        self._gate = asyncio.Lock()
        self._waiting: set[asyncio.Task[None]] = set()

    async def on_writer(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the writer thread, alone (opening, migrating, closing)."""
        async with self._gate:
            future = self._writer.submit(fn)
        return await future

    async def read(self, unit: Unit[T], *, snapshot: bool = False) -> T:
        """Run a read unit; ``snapshot``: several statements in one consistent snapshot."""
        if self._readers is None:
            async with self._gate:
                future = self._writer.submit(_read_job(unit, snapshot))
        else:
            future = self._readers.submit(_read_job(unit, snapshot))
        return await future

    async def write(self, unit: Unit[T], *, lock_keys: Sequence[str] = ()) -> T:
        """Run a write unit in its own ``BEGIN IMMEDIATE … COMMIT`` on the writer.

        ``lock_keys`` are for PostgreSQL; SQLite's write lock serialises every writer.
        """
        async with self._gate:
            future = self._writer.submit(_write_job(unit))
        return await future

    def write_then(
        self, unit: Unit[T], done: Done, *, lock_keys: Sequence[str] = (), single: bool = False
    ) -> None:
        """:meth:`write`, with ``done(result, error)`` called when it has run (group commit:
        no task waits in between). While a ``store.transaction()`` holds the writer, the
        job is queued once the block has ended. (``single`` matters on PostgreSQL only: on
        SQLite a unit in ``BEGIN IMMEDIATE … COMMIT`` costs no more hand-offs.)"""
        if not self._gate.locked():
            # Nothing can be between a block's BEGIN and its COMMIT now: queue at once.
            self._writer.submit_then(_write_job(unit), done)
            return

        async def after_the_block() -> None:
            async with self._gate:
                self._writer.submit_then(_write_job(unit), done)

        task = asyncio.ensure_future(after_the_block())
        self._waiting.add(task)
        task.add_done_callback(self._waiting.discard)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SQLiteTransaction]:
        """Hold the writer for one block: ``BEGIN IMMEDIATE`` now, ``COMMIT`` at a normal end,
        ``ROLLBACK`` otherwise (queued before the writer is given back, so it runs first)."""
        async with self._gate:
            await self._writer.submit(lambda raw: _begin(raw, "BEGIN IMMEDIATE"))
            try:
                yield SQLiteTransaction(self._writer)
            except BaseException:
                rollback = self._writer.submit(_rollback)
                await asyncio.shield(rollback)
                raise
            commit = self._writer.submit(_commit)
            await asyncio.shield(commit)

    async def vacuum(self) -> None:
        """Rebuild the file without its free pages and give the space back to the file
        system (``VACUUM``, then a truncating WAL checkpoint)."""

        def job(raw: sqlite3.Connection) -> None:
            try:
                raw.execute("VACUUM")
                raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error as exc:
                raise translate(exc) from exc

        await self.on_writer(job)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[SQLiteSnapshot]:
        """One consistent read state for a block, on a connection and thread of its own
        (WAL lets it read beside the writer; in memory it holds the writer instead)."""
        if self._readers is None:
            async with self._gate:
                await self._writer.submit(_begin_snapshot)
                try:
                    yield SQLiteSnapshot(self._writer)
                finally:
                    await asyncio.shield(self._writer.submit(_rollback))
            return
        thread = ConnectionThreads(
            "agentstore-snapshot", 1, lambda: connect(self.target, self.durability)
        )
        try:
            await thread.submit(_begin_snapshot)
            yield SQLiteSnapshot(thread)
        finally:
            thread.submit(_rollback)
            await asyncio.shield(thread.close())

    async def close(self) -> None:
        """Let queued jobs finish, then close every connection."""
        while self._waiting:
            await asyncio.gather(*list(self._waiting), return_exceptions=True)
        async with self._gate:
            if self._readers is not None:
                await self._readers.close()
            await self._writer.close()


def _commit(raw: sqlite3.Connection) -> None:
    try:
        raw.execute("COMMIT")
    except sqlite3.Error as exc:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise translate(exc) from exc


def _rollback(raw: sqlite3.Connection) -> None:
    if raw.in_transaction:
        raw.execute("ROLLBACK")
