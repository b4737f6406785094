"""Opening: O1 ``Store.open(':memory:')``, O2 reopening a database agentstore migrated.

Informational rows (no target), timed per open + close: after a warm-up open on each side,
``sizes.opens`` opens alternate (raw, agentstore, raw…); the round counts each side's
median, in milliseconds per open.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable

import aiosqlite

from agentstore import Store
from bench.backends import Databases
from bench.common import Result, Sizes, progress, timed
from bench.fixtures import SESSION_ID, prepare


async def open_rounds(
    db: Databases,
    sizes: Sizes,
    result: Result,
    index: int,
    rounds: int,
    raw_open: Callable[[], Awaitable[None]],
    store_open: Callable[[], Awaitable[None]],
) -> None:
    await raw_open()
    await store_open()
    raw_times: list[float] = []
    store_times: list[float] = []
    for _ in range(sizes.opens):
        raw_times.append(await timed(raw_open))
        store_times.append(await timed(store_open))
    result.raw.append(statistics.median(raw_times))
    result.store.append(statistics.median(store_times))
    progress(db.name, result, index, rounds)


async def o1(db: Databases, sizes: Sizes, rounds: int) -> Result:
    result = Result(
        "O1",
        "Store.open(':memory:') + close, ms per open (raw: aiosqlite.connect(':memory:') + close)",
        None,
    )
    if db.dialect != "sqlite":
        raise ValueError("O1 is SQLite's")

    async def raw_open() -> None:
        conn = await aiosqlite.connect(":memory:")
        await conn.close()

    async def store_open() -> None:
        store = await Store.open(":memory:")
        await store.close()

    for index in range(rounds):
        # The warm-up open migrates the in-memory template (once per process); check that a
        # store opened so is usable: its schema is there, and empty.
        store = await Store.open(":memory:")
        try:
            if await store.get_session_count() != 0 or await store.list_sessions():
                result.problem("a new in-memory store is not empty")
        finally:
            await store.close()
        await open_rounds(db, sizes, result, index, rounds, raw_open, store_open)
    return result


async def o2(db: Databases, sizes: Sizes, rounds: int) -> Result:
    if db.dialect == "sqlite":
        label = (
            "reopen a migrated file: Store.open(path) + close, ms per open "
            "(raw: aiosqlite.connect(path) + close)"
        )
    else:
        label = (
            "reopen a migrated database: Store.open(url) + close, ms per open "
            "(raw: asyncpg.connect + close)"
        )
    result = Result("O2", label, None)
    for index in range(rounds):
        async with db.fresh() as location:
            await prepare(location)  # migrated once, not timed

            async def raw_open(location: str = location) -> None:
                await db.bare_open_close(location)

            async def store_open(location: str = location) -> None:
                store = await Store.open(location)
                await store.close()

            await open_rounds(db, sizes, result, index, rounds, raw_open, store_open)
            # The reopened database is agentstore's, with the session made before.
            store = await Store.open(location, migrate=False)
            try:
                if (await store.get_session(SESSION_ID)).id != SESSION_ID:
                    result.problem("the reopened database lost its session")
            finally:
                await store.close()
    return result
