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

    @asynccontextmanager
    async def driver(self) -> AsyncIterator[Driver]:
        """The driver connection of a pooled connection, for the block's duration."""
        if self._limit <= 0:
            async with self._checked_out() as conn:
                yield Driver(self._dialect, conn)
            return
        lease = await self._take()
        driver = lease.driver_connection
        try:
            yield Driver(self._dialect, driver)
        finally:
            try:
                if driver.in_transaction:  # a batch interrupted mid-way
                    await driver.rollback()
            finally:
                assert self._idle is not None
                self._idle.put_nowait(lease)

    @asynccontextmanager
    async def _checked_out(self) -> AsyncIterator[Any]:
        # PostgreSQL, or no room to lease (a one-connection pool, as for ":memory:").
        raw = await self._engine.raw_connection()
        driver = raw.driver_connection
        try:
            yield driver
        finally:
            try:
                # A call interrupted mid-transaction must not hand the pool an open one
                # (SQLAlchemy's own reset does not know about transactions begun here).
                if driver is None:
                    pass
                elif self._dialect == "sqlite":
                    if driver.in_transaction:
                        await driver.rollback()
                elif not driver.is_closed() and driver.is_in_transaction():
                    await driver.execute("ROLLBACK")
            finally:
                # Check-in may close the connection (pool overflow), which awaits the driver.
                await greenlet_spawn(raw.close)

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
        """Return every idle lease to the pool (before the engine is disposed)."""
        while self._idle is not None and not self._idle.empty():
            lease = self._idle.get_nowait()
            self._count -= 1
            await greenlet_spawn(lease.close)
