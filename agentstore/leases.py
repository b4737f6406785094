"""Driver connections from the engine's pool for the hot paths.

Checking a connection out of SQLAlchemy's pool and back in costs trips through its async
adapter per call — on SQLite a fifth of a whole append, on PostgreSQL more than a third
(with the pre-ping round trip). The store therefore keeps a few of its pool's connections
checked out (leased) and hands their driver connection to one call at a time: still one
engine and one pool per store, no connection shared by two tasks at once, and every lease
goes back to the pool when the store closes.

On SQLite a call waits for a free lease (writes are serialised by SQLite anyway). On
PostgreSQL, where calls run in parallel, a call that finds every lease busy checks a
connection out of the pool for itself instead of waiting; and a lease is only reused while
it is warm: one idle for more than ``idle_limit`` seconds goes back to the pool and the
next call checks out afresh, so the pool's pre-ping and recycling still guard against a
restarted server or a dropped idle connection. A lease whose socket the server has closed
(a restart, ``pg_terminate_backend``) is discarded before it is lent.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from agentstore.repos._driver import Driver

__all__ = ["DriverLeases"]


class DriverLeases:
    """At most ``limit`` pooled connections, lent to one call at a time (0: per call).

    ``overflow``: when every lease is lent, a call checks out a connection of its own
    instead of waiting. ``idle_limit``: a lease idle longer than this many seconds is given
    back to the pool rather than lent (None: kept however long it idles).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        limit: int,
        *,
        overflow: bool = False,
        idle_limit: float | None = None,
    ) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._limit = limit
        self._overflow = overflow
        self._idle_limit = idle_limit
        self._count = 0  # leases that exist and are not settling: idle or lent
        self._idle: list[tuple[Any, float]] = []  # (lease, when it was given back)
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    @asynccontextmanager
    async def driver(self) -> AsyncIterator[Driver]:
        """The driver connection of a pooled connection, for the block's duration.

        A block that ends with an exception — a cancelled task above all — may leave work
        queued on the connection (aiosqlite finishes a statement whose caller was
        cancelled). Such a connection is not lent again until that work has drained and any
        transaction it opened is rolled back; that settling runs in the background, and the
        connection does not count against the limit meanwhile.
        """
        if self._limit <= 0 or (self._overflow and not self._idle and self._count >= self._limit):
            raw = await self._engine.raw_connection()
            finished = False
            try:
                yield Driver(self._dialect, raw.driver_connection)
                finished = True
            finally:
                if finished and self._is_clean(raw.driver_connection):
                    await greenlet_spawn(raw.close)
                else:
                    self._in_background(self._settle(raw, leased=False))
            return
        lease = await self._take()
        finished = False
        try:
            yield Driver(self._dialect, lease.driver_connection)
            finished = True
        finally:
            if finished and self._is_clean(lease.driver_connection):
                self._give_back(lease)
            else:
                self._count -= 1  # out of the lent set while it settles
                self._wake()
                self._in_background(self._settle(lease, leased=True))

    def _is_clean(self, driver: Any) -> bool:
        if self._dialect == "sqlite":
            return not driver.in_transaction
        return not driver.is_closed() and not driver.is_in_transaction()

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _settle(self, raw: Any, *, leased: bool) -> None:
        driver = raw.driver_connection
        try:
            if self._dialect == "sqlite":
                # Queued behind whatever the interrupted call left: returns once it is done.
                await driver.execute_fetchall("SELECT 1")
                if driver.in_transaction:
                    await driver.rollback()
            elif driver.is_closed():
                raise ConnectionError("the server closed the connection")
            elif driver.is_in_transaction():
                await driver.execute("ROLLBACK")
        except asyncio.CancelledError:  # the store's close() was itself cancelled
            await asyncio.shield(greenlet_spawn(raw.invalidate))
            raise
        except Exception:
            # Unusable: the pool discards it (a waiting call makes a fresh lease).
            await greenlet_spawn(raw.invalidate)
            return
        if self._closed:
            await greenlet_spawn(raw.invalidate)  # the pool it came from is gone: close it
        elif leased and self._count < self._limit:
            self._count += 1
            self._give_back(raw)
        else:
            await greenlet_spawn(raw.close)  # back to the pool

    def _give_back(self, lease: Any) -> None:
        if self._closed:  # returned after close(): its pool is gone, close it
            self._count -= 1
            self._in_background(greenlet_spawn(lease.invalidate))
            return
        self._idle.append((lease, time.monotonic()))
        self._wake()

    def _wake(self) -> None:
        # One waiter may now take an idle lease or make a new one.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _take(self) -> Any:
        while True:
            while self._idle:
                lease, since = self._idle.pop()
                if self._dialect == "sqlite":
                    return lease
                if lease.driver_connection.is_closed():  # the server ended it
                    self._count -= 1
                    await greenlet_spawn(lease.invalidate)
                elif self._idle_limit is not None and time.monotonic() - since > self._idle_limit:
                    # Cold: back to the pool, whose checkout pre-pings and recycles.
                    self._count -= 1
                    await greenlet_spawn(lease.close)
                else:
                    return lease
            if self._count < self._limit:
                self._count += 1
                try:
                    return await self._engine.raw_connection()
                except BaseException:
                    self._count -= 1
                    self._wake()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, then cancelled: pass the turn on
                raise

    async def close(self) -> None:
        """Settle interrupted connections and return every lease to the pool.

        Leases still lent (a call running while the store closes) go back to the pool, and
        from there are closed, when their call ends.
        """
        self._closed = True
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        while self._idle:
            lease, _ = self._idle.pop()
            self._count -= 1
            await greenlet_spawn(lease.close)
