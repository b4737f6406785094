"""PostgreSQL: worker tasks the store owns run every unit of work on asyncpg connections.

* A caller's job goes into one queue; up to ``workers`` tasks take jobs from it, each on a
  connection it checked out of the engine's pool (so ``pool_pre_ping`` and
  ``pool_recycle`` guard every checkout). A worker keeps its connection while jobs keep
  coming and gives it back after ``linger`` idle seconds: a busy store pays no pool trip
  per call, an idle one holds nothing.
* A unit runs in the worker task, never in the caller's: a caller's cancellation only stops
  its wait. A worker that is itself interrupted (the store closing) invalidates its
  connection instead of giving it back, so no connection that may be mid-transaction is
  ever lent again — as is one that the server closed or that failed in a way that left it
  inside a transaction.
* A write sends ``BEGIN`` and its advisory locks in one round trip; a failure there (a
  connection the server ended while it idled) is retried once on a fresh connection, since
  nothing can have been done yet.
* ``store.transaction()`` gets a task and a connection of its own for the block.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentstore.db.base import (
    APPEND_COLUMNS,
    EMPTY,
    Conn,
    Unit,
    check_columns,
    lock_key,
    lock_statement,
)
from agentstore.db.errors import is_disconnect, translate
from agentstore.db.statements import Query, Statement
from agentstore.errors import ConstraintError, NotFoundError, StoreError
from agentstore.models import Base

__all__ = ["HeldConnection", "PostgresBackend", "PostgresConn"]

T = TypeVar("T")
M = TypeVar("M", bound=Base)

WORKERS: Final = 4
LINGER_SECONDS: Final = 2.0


class PostgresConn(Conn):
    """A unit of work's view of an asyncpg connection inside a transaction."""

    dialect = "postgresql"

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    async def rows(self, stmt: Statement, values: Mapping[str, Any] = EMPTY) -> list[Any]:
        compiled = stmt.on("postgresql")
        try:
            return list(await self.driver.fetch(compiled.sql, *compiled.args(values)))
        except Exception as exc:
            raise translate(exc) from exc

    async def models(self, query: Query[M], values: Mapping[str, Any] = EMPTY) -> list[M]:
        return query.build("postgresql", await self.rows(query, values), values)

    async def raw_rows(self, sql: str, args: Sequence[Any]) -> list[Any]:
        try:
            return list(await self.driver.fetch(sql, *args))
        except Exception as exc:
            raise translate(exc) from exc

    async def stream(
        self, stmt: Statement, values: Mapping[str, Any] = EMPTY, size: int = 1000
    ) -> AsyncIterator[list[Any]]:
        compiled = stmt.on("postgresql")
        try:
            cursor = await self.driver.cursor(compiled.sql, *compiled.args(values))
            while chunk := await cursor.fetch(size):
                yield list(chunk)
        except Exception as exc:
            raise translate(exc) from exc

    async def insert_many(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        check_columns(table, columns)
        try:
            await self.driver.copy_records_to_table(table, records=rows, columns=list(columns))
        except Exception as exc:
            raise translate(exc) from exc

    async def execute(self, stmt: Statement, values: Mapping[str, Any] = EMPTY) -> int:
        compiled = stmt.on("postgresql")
        try:
            status = await self.driver.execute(compiled.sql, *compiled.args(values))
        except Exception as exc:
            raise translate(exc) from exc
        # "UPDATE 3", "DELETE 0", "INSERT 0 1": the count is the last word.
        last = str(status).rpartition(" ")[2]
        return int(last) if last.isdigit() else 0

    async def append_events(
        self, requests: Sequence[Sequence[tuple[Any, ...]]]
    ) -> list[list[tuple[int, int]] | str]:
        if len(requests) == 1 and len(requests[0]) == 1:
            return [await self._append_one(requests[0][0])]
        rows = [(index, *row) for index, request in enumerate(requests) for row in request]
        columns = [list(column) for column in zip(*rows, strict=True)]
        try:
            found = await self.driver.fetch(_APPEND_SQL, *columns)
        except Exception as exc:
            raise translate(exc) from exc
        refused: dict[int, str] = {}
        given: dict[str, list[tuple[int, int]]] = {}
        for new_id, sequence, text, refused_request in found:
            if refused_request is not None:
                refused[refused_request] = text  # the missing session's id
            else:
                given.setdefault(text, []).append((sequence, new_id))
        for pairs in given.values():
            pairs.sort(reverse=True)  # popped from the end: lowest sequence first
        results: list[list[tuple[int, int]] | str] = []
        for index, request in enumerate(requests):
            if index in refused:
                results.append(refused[index])
                continue
            ids = []
            for row in request:
                sequence, new_id = given[row[_CLAUDE_AT]].pop()
                ids.append((new_id, sequence))
            results.append(ids)
        return results

    async def _append_one(self, row: tuple[Any, ...]) -> list[tuple[int, int]]:
        # One round trip: the function takes the Claude session's lock, then inserts.
        try:
            found = await self.driver.fetchrow(_APPEND_ONE_SQL, lock_key(row[_CLAUDE_AT]), *row)
        except Exception as exc:
            error = translate(exc)
            if isinstance(error, ConstraintError) and error.kind == "foreign_key":
                raise NotFoundError("session", row[_SESSION_AT]) from exc
            raise error from exc
        return [(int(found[0]), int(found[1]))]


_CLAUDE_AT: Final = APPEND_COLUMNS.index("claude_session_id")
_SESSION_AT: Final = APPEND_COLUMNS.index("session_id")
_PG_TYPES: Final = {"created_at": "timestamptz", "is_completed": "boolean"}


def _append_sql() -> str:
    # One statement for a whole group of appends: it keeps out every request that names a
    # missing session (locking the sessions it finds against a concurrent delete), numbers
    # the rest after each Claude session's last sequence in request order, inserts them and
    # reports which requests were kept out. Run under the Claude sessions' advisory locks.
    columns = ", ".join(APPEND_COLUMNS)
    arrays = ", ".join(
        f"${i}::{_PG_TYPES.get(name, 'text')}[]" for i, name in enumerate(APPEND_COLUMNS, 2)
    )
    selected = ", ".join(f"a.{name}" for name in APPEND_COLUMNS)
    # Column names from the model and placeholders only: no caller text goes into this SQL.
    return (
        "WITH input AS ("  # noqa: S608
        f"SELECT * FROM unnest($1::int[], {arrays}) WITH ORDINALITY AS u(req, {columns}, ord)), "
        "present AS (SELECT s.id FROM sessions s "
        "WHERE s.id IN (SELECT session_id FROM input) FOR KEY SHARE), "
        "refused AS (SELECT req, MIN(session_id) AS missing FROM input "
        "WHERE session_id NOT IN (SELECT id FROM present) GROUP BY req), "
        "accepted AS (SELECT * FROM input WHERE req NOT IN (SELECT req FROM refused)), "
        # One MAX per Claude session, each answered from the end of the index.
        "last AS (SELECT k.claude_session_id, (SELECT MAX(e.sequence) FROM conversation_events e "
        "WHERE e.claude_session_id = k.claude_session_id) AS seq "
        "FROM (SELECT DISTINCT claude_session_id FROM accepted) k), "
        f"inserted AS (INSERT INTO conversation_events (sequence, {columns}) "
        "SELECT COALESCE(l.seq, 0) + ROW_NUMBER() OVER "
        f"(PARTITION BY a.claude_session_id ORDER BY a.ord), {selected} "
        "FROM accepted a LEFT JOIN last l ON l.claude_session_id = a.claude_session_id "
        "ORDER BY a.ord RETURNING id, sequence, claude_session_id) "
        "SELECT id, sequence, claude_session_id, NULL::int FROM inserted "
        "UNION ALL SELECT NULL, NULL, missing, req FROM refused"
    )


_APPEND_SQL: Final = _append_sql()
_APPEND_ONE_SQL: Final = (
    "SELECT new_id, new_sequence FROM agentstore_append_event($1::bigint, "  # noqa: S608
    + ", ".join(f"${i}::{_PG_TYPES.get(name, 'text')}" for i, name in enumerate(APPEND_COLUMNS, 2))
    + ")"
)


# --- connections held by workers -------------------------------------------------------------


class HeldConnection:
    """A pooled connection a worker holds, and its asyncpg connection."""

    __slots__ = ("conn", "driver")

    def __init__(self, conn: AsyncConnection, driver: Any) -> None:
        self.conn = conn
        self.driver = driver

    @classmethod
    async def checkout(cls, engine: AsyncEngine) -> HeldConnection:
        conn = await engine.connect()
        try:
            raw = await conn.get_raw_connection()
            return cls(conn, raw.driver_connection)
        except BaseException:
            await asyncio.shield(conn.close())
            raise

    @property
    def clean(self) -> bool:
        """Usable by the next job: open, and not inside a transaction."""
        return not self.driver.is_closed() and not self.driver.is_in_transaction()

    async def give_back(self) -> None:
        await self.conn.close()

    async def discard(self) -> None:
        """Never lend it again: the pool closes it (it may be mid-transaction, or dead)."""
        try:
            await self.conn.invalidate()
        finally:
            await self.conn.close()


class _Retry(Exception):
    """The connection failed before the job did anything: run it again on a fresh one."""

    def __init__(self, error: StoreError) -> None:
        super().__init__(str(error))
        self.error = error


Run = Callable[[Any], Awaitable[Any]]


Done = Callable[[Any, BaseException | None], None]
"""Called with a job's result, or the error it raised, in the task that ran it."""


class _Job:
    __slots__ = ("done", "future", "run")

    def __init__(self, run: Run, done: Done | None = None) -> None:
        self.run = run
        self.done = done
        self.future: asyncio.Future[Any] | None = None
        if done is None:
            self.future = asyncio.get_running_loop().create_future()

    def abandoned(self) -> bool:
        """Its caller stopped waiting before it started."""
        return self.future is not None and self.future.cancelled()

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        # The job lets go of its future once it has answered: a worker holds its last job
        # until the next one comes, and must not keep a result the caller has dropped (a
        # 10,000-event read alive for seconds, then freed inside the next caller's call).
        done, future = self.done, self.future
        self.done = self.future = None
        if done is not None:
            done(result, error)
            return
        assert future is not None
        if future.done():  # the caller stopped waiting
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


async def _start(driver: Any, sql: str) -> None:
    try:
        await driver.execute(sql)
    except Exception as exc:
        error = translate(exc)
        if is_disconnect(exc):
            raise _Retry(error) from exc
        raise error from exc


async def _end(driver: Any, sql: str) -> None:
    try:
        await driver.execute(sql)
    except Exception as exc:
        raise translate(exc) from exc


def _read_run(unit: Unit[T], snapshot: bool) -> Run:
    async def run(driver: Any) -> T:
        if not snapshot:
            try:
                return await unit(PostgresConn(driver))
            except StoreError as exc:
                if driver.is_closed():  # a read can simply run again
                    raise _Retry(exc) from exc
                raise
        await _start(driver, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            result = await unit(PostgresConn(driver))
        except BaseException:
            with contextlib.suppress(Exception):
                await driver.execute("ROLLBACK")
            raise
        await _end(driver, "COMMIT")
        return result

    return run


def _write_run(unit: Unit[T], lock_keys: Sequence[str], single: bool = False) -> Run:
    begin = "BEGIN" + lock_statement(lock_keys)

    async def run_alone(driver: Any) -> T:
        # One statement that takes its own locks: its own transaction, one round trip. Not
        # retried on a lost connection: it may have committed before the answer was lost.
        return await unit(PostgresConn(driver))

    if single:
        return run_alone

    async def run(driver: Any) -> T:
        await _start(driver, begin)
        try:
            result = await unit(PostgresConn(driver))
        except BaseException:
            with contextlib.suppress(Exception):
                await driver.execute("ROLLBACK")
            raise
        await _end(driver, "COMMIT")
        return result

    return run


def _result(job: _Job) -> asyncio.Future[Any]:
    assert job.future is not None
    return job.future


class PostgresTransaction:
    """A ``store.transaction()`` block's connection, run by a task of its own: each call is
    one job in the open transaction, in a savepoint of its own."""

    dialect = "postgresql"

    def __init__(self, jobs: asyncio.Queue[_Job | None]) -> None:
        self._jobs = jobs

    def _submit(self, run: Run) -> asyncio.Future[Any]:
        job = _Job(run)
        self._jobs.put_nowait(job)
        assert job.future is not None
        return job.future

    async def read(self, unit: Unit[T], *, snapshot: bool = False) -> T:
        result: T = await self._submit(lambda driver: unit(PostgresConn(driver)))
        return result

    async def write(self, unit: Unit[T], *, lock_keys: Sequence[str] = ()) -> T:
        start = "SAVEPOINT agentstore_call" + lock_statement(lock_keys)

        async def run(driver: Any) -> T:
            await _end(driver, start)
            try:
                result = await unit(PostgresConn(driver))
            except BaseException:
                await _end(driver, "ROLLBACK TO agentstore_call; RELEASE agentstore_call")
                raise
            await _end(driver, "RELEASE agentstore_call")
            return result

        result: T = await self._submit(run)
        return result


class PostgresBackend:
    """The store's PostgreSQL data path (see the module)."""

    dialect = "postgresql"

    def __init__(
        self, engine: AsyncEngine, *, workers: int = WORKERS, linger: float = LINGER_SECONDS
    ) -> None:
        self._engine = engine
        self._max_workers = max(1, workers)
        self._linger = linger
        self._jobs: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._workers = 0
        self._idle = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # --- workers ---------------------------------------------------------------------------

    def _submit(self, run: Run, done: Done | None = None) -> asyncio.Future[Any]:
        job = _Job(run, done)
        self._jobs.put_nowait(job)
        if self._jobs.qsize() > self._idle and self._workers < self._max_workers:
            self._workers += 1
            self._spawn(self._work())
        return job.future  # type: ignore[return-value]

    def _spawn(self, work: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _next_job(self) -> _Job | None:
        while True:
            try:
                return self._jobs.get_nowait()
            except asyncio.QueueEmpty:
                pass
            self._idle += 1
            try:
                async with asyncio.timeout(self._linger):
                    return await self._jobs.get()
            except TimeoutError:
                if self._jobs.empty():
                    return None  # idle long enough: give the connection back
            finally:
                self._idle -= 1

    async def _work(self) -> None:
        held: HeldConnection | None = None
        try:
            while (job := await self._next_job()) is not None:
                if job.abandoned():  # the caller gave up before it started
                    continue
                held = await self._run(job, held)
        finally:
            self._workers -= 1
            if held is not None:
                await asyncio.shield(held.give_back())

    async def _run(self, job: _Job, held: HeldConnection | None) -> HeldConnection | None:
        """Run one job; returns the connection to keep (None: it was given up)."""
        for attempt in (1, 2):
            if held is not None and held.driver.is_closed():  # the server ended it while idle
                await asyncio.shield(held.discard())
                held = None
            if held is None:
                try:
                    held = await HeldConnection.checkout(self._engine)
                except Exception as exc:
                    job.settle(error=translate(exc, "the PostgreSQL server"))
                    return None
            try:
                result = await job.run(held.driver)
            except _Retry as retry:
                await asyncio.shield(held.discard())
                held = None
                if attempt == 1:
                    continue
                job.settle(error=retry.error)
                return None
            except asyncio.CancelledError:
                # The store is closing under this job: the connection may be mid-transaction.
                await asyncio.shield(held.discard())
                raise
            except BaseException as exc:
                job.settle(error=exc)
            else:
                job.settle(result)
            if not held.clean:
                await asyncio.shield(held.discard())
                return None
            return held
        return None  # pragma: no cover - the loop always returns

    # --- units of work ---------------------------------------------------------------------

    async def read(self, unit: Unit[T], *, snapshot: bool = False) -> T:
        """Run a read unit; ``snapshot``: several statements in one consistent snapshot."""
        result: T = await self._submit(_read_run(unit, snapshot))
        return result

    async def write(self, unit: Unit[T], *, lock_keys: Sequence[str] = ()) -> T:
        """Run a write unit in its own transaction, holding the Claude sessions' locks."""
        result: T = await self._submit(_write_run(unit, lock_keys))
        return result

    def write_then(
        self, unit: Unit[T], done: Done, *, lock_keys: Sequence[str] = (), single: bool = False
    ) -> None:
        """:meth:`write`, with ``done(result, error)`` called by the worker when it has run
        (group commit: no task waits in between). ``single``: the unit is one statement that
        takes its own locks, run as its own transaction (one round trip)."""
        self._submit(_write_run(unit, lock_keys, single), done)

    async def vacuum(self) -> None:
        """``VACUUM (ANALYZE)`` of the store's tables: their dead rows' space is reused
        (PostgreSQL gives space back to the file system only with ``VACUUM FULL``)."""

        async def run(driver: Any) -> None:
            await _end(driver, "VACUUM (ANALYZE)")

        await self._submit(run)

    def snapshot(self) -> contextlib.AbstractAsyncContextManager[PostgresTransaction]:
        """One consistent read state for a block (``REPEATABLE READ READ ONLY``)."""
        return self.transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    @contextlib.asynccontextmanager
    async def transaction(self, begin: str = "BEGIN") -> AsyncIterator[PostgresTransaction]:
        """A connection and a task of their own for one block: ``BEGIN`` now, ``COMMIT`` at
        a normal end, ``ROLLBACK`` otherwise (queued behind the block's last call)."""
        jobs: asyncio.Queue[_Job | None] = asyncio.Queue()
        started = _Job(lambda driver: _end(driver, begin))
        jobs.put_nowait(started)
        runner = self._spawn(self._run_transaction(jobs))
        try:
            await _result(started)
            yield PostgresTransaction(jobs)
        except BaseException:
            finish = _Job(lambda driver: _end(driver, "ROLLBACK"))
            jobs.put_nowait(finish)
            jobs.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.shield(_result(finish))
            raise
        finish = _Job(lambda driver: _end(driver, "COMMIT"))
        jobs.put_nowait(finish)
        jobs.put_nowait(None)
        await asyncio.shield(_result(finish))
        await asyncio.shield(runner)

    async def _run_transaction(self, jobs: asyncio.Queue[_Job | None]) -> None:
        try:
            held = await HeldConnection.checkout(self._engine)
        except Exception as exc:
            error = translate(exc, "the PostgreSQL server")
            while (job := await jobs.get()) is not None:
                job.settle(error=error)
            return
        try:
            while (job := await jobs.get()) is not None:
                try:
                    job.settle(await job.run(held.driver))
                except _Retry as retry:
                    job.settle(error=retry.error)
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:
                    job.settle(error=exc)
        except BaseException:
            await asyncio.shield(held.discard())
            raise
        if held.clean:
            await asyncio.shield(held.give_back())
        else:
            await asyncio.shield(held.discard())

    async def close(self) -> None:
        """Let queued jobs finish, then give every connection back."""
        for _ in range(self._workers):
            self._jobs.put_nowait(None)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
