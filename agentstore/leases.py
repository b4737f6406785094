"""Driver connections from the engine's pool for the hot paths.

On SQLite, checking a connection out of SQLAlchemy's pool and back in costs two trips
through its async adapter per call — a fifth of a whole append on this machine. The store
therefore keeps a few of its pool's connections checked out (leased) and hands their
aiosqlite connection to one call at a time: still one engine and one pool per store, no
connection shared by two tasks at once, and every lease goes back to the pool when the store
closes. On PostgreSQL each call checks a connection out (so the pool's pre-ping still guards
against a restarted server) and uses its asyncpg connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from agentstore.repos._driver import Driver

__all__ = ["DriverLeases"]


class DriverLeases:
    """At most ``limit`` pooled connections, lent to one call at a time (0: per call)."""

    def __init__(self, engine: AsyncEngine, limit: int) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._limit = limit
        self._count = 0
        self._idle: asyncio.Queue[Any] | None = None  # made in the running loop
        self._settling: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def driver(self) -> AsyncIterator[Driver]:
        """The driver connection of a pooled connection, for the block's duration.

        A block that ends with an exception — a cancelled task above all — may leave work
        queued on the connection (aiosqlite finishes a statement whose caller was
        cancelled). Such a connection is not lent again until that work has drained and any
        transaction it opened is rolled back; that settling runs in the background.
        """
        if self._limit <= 0:
            raw = await self._engine.raw_connection()
            finished = False
            try:
                yield Driver(self._dialect, raw.driver_connection)
                finished = True
            finally:
                if finished and self._is_clean(raw.driver_connection):
                    await greenlet_spawn(raw.close)
                else:
                    self._settle_later(raw, checked_out=True)
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
                self._settle_later(lease, checked_out=False)

    def _is_clean(self, driver: Any) -> bool:
        if self._dialect == "sqlite":
            return not driver.in_transaction
        return not driver.is_closed() and not driver.is_in_transaction()

    def _settle_later(self, raw: Any, *, checked_out: bool) -> None:
        if not checked_out:
            # Out of the lent set while it settles (it may wait on another process's lock for
            # the whole busy_timeout): the next call may lease a fresh connection meanwhile.
            self._count -= 1
        task = asyncio.ensure_future(self._settle(raw, checked_out=checked_out))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, raw: Any, *, checked_out: bool) -> None:
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
        except Exception:
            # Unusable: the pool discards it (and a lease is made anew when next needed).
            await greenlet_spawn(raw.invalidate)
            return
        if checked_out or self._count >= self._limit:
            await greenlet_spawn(raw.close)  # back to the pool
        else:
            self._count += 1
            self._give_back(raw)

    def _give_back(self, lease: Any) -> None:
        assert self._idle is not None
        self._idle.put_nowait(lease)

    async def _take(self) -> Any:
        if self._idle is None:
            self._idle = asyncio.Queue()
        if not self._idle.empty():
            return self._idle.get_nowait()
        if self._count < self._limit:
            self._count += 1
            try:
                return await self._engine.raw_connection()
            except BaseException:
                self._count -= 1
                raise
        return await self._idle.get()

    async def close(self) -> None:
        """Settle interrupted connections and return every lease to the pool."""
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
        while self._idle is not None and not self._idle.empty():
            lease = self._idle.get_nowait()
            self._count -= 1
            await greenlet_spawn(lease.close)
