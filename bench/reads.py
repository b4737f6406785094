"""Reads: W3 one conversation, W5 every session, W6 a resume chain, W7 a title search.

Each round makes one fresh database with agentstore, then both sides read it in turn
(raw, agentstore, raw, agentstore…), warmed first; the round counts each side's median.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from agentstore import Session, Store
from agentstore.repos.sessions import _list_query, _search_query
from bench.backends import READ_SEQUENCE_AT, Databases, Raw, Rows
from bench.common import Result, Sizes, measure, progress, target
from bench.fixtures import (
    CLAUDE_ID,
    SESSION_ID,
    add_events,
    insert_sessions,
    list_sessions_fixture,
    newest_first,
    one_session,
    search_expected,
    search_fixture,
)

RawRead = Callable[[Raw], Awaitable[Rows]]
StoreRead = Callable[[Store], Awaitable[Sequence[Any]]]
Expect = Callable[[Rows], str | None]  # what is wrong with raw's rows, if anything


async def read_rounds(
    db: Databases,
    sizes: Sizes,
    rounds: int,
    result: Result,
    setup: Callable[[Store], Awaitable[None]],
    raw_read: RawRead,
    store_read: StoreRead,
    expect: Expect,
) -> None:
    for index in range(rounds):
        async with db.fresh() as location:
            store = await Store.open(location)
            try:
                await setup(store)
                raw = await db.connect_raw(location)
                try:
                    await raw.settle()
                    # Warm both sides (page caches, statement caches; agentstore's two reader
                    # threads each get one read), then check they agree.
                    await asyncio.gather(store_read(store), store_read(store))
                    raw_rows = await raw_read(raw)
                    objects = await store_read(store)
                    raw_ids = [row[0] for row in raw_rows]
                    store_ids = [getattr(obj, "id", None) for obj in objects]
                    if raw_ids != store_ids:
                        result.problem(
                            f"round {index + 1}: raw returned {len(raw_ids)} rows, agentstore "
                            f"{len(store_ids)}, or in another order"
                        )
                    wrong = expect(raw_rows)
                    if wrong:
                        result.problem(f"round {index + 1}: {wrong}")
                    del raw_rows, objects
                    raw_times: list[float] = []
                    store_times: list[float] = []
                    for _ in range(sizes.reads):
                        raw_times.append((await measure(partial(raw_read, raw)))[0])
                        store_times.append((await measure(partial(store_read, store)))[0])
                    result.raw.append(statistics.median(raw_times))
                    result.store.append(statistics.median(store_times))
                finally:
                    await raw.close()
            finally:
                await store.close()
        progress(db.name, result, index, rounds)


def expect_ids(expected: Sequence[Any]) -> Expect:
    def check(rows: Rows) -> str | None:
        got = [row[0] for row in rows]
        if got != list(expected):
            return f"{len(got)} rows, not the {len(expected)} the fixture implies, in its order"
        return None

    return check


async def w3(db: Databases, sizes: Sizes, rounds: int) -> Result:
    n = sizes.w3_events
    result = Result("W3", f"read a {n:,}-event conversation", target(db.name, "W3"))

    async def setup(store: Store) -> None:
        await one_session(store)
        await add_events(store, SESSION_ID, CLAUDE_ID, n)

    def expect(rows: Rows) -> str | None:
        if [row[READ_SEQUENCE_AT] for row in rows] != list(range(1, n + 1)):
            return f"{len(rows)} events, not sequences 1..{n} in order"
        return None

    async def raw_read(raw: Raw) -> Rows:
        return await raw.read_conversation(CLAUDE_ID)

    async def store_read(store: Store) -> Sequence[Any]:
        return await store.get_conversation(CLAUDE_ID)

    await read_rounds(db, sizes, rounds, result, setup, raw_read, store_read, expect)
    return result


async def w5(db: Databases, sizes: Sizes, rounds: int) -> Result:
    n = sizes.w5_sessions
    result = Result("W5", f"list {n:,} sessions", target(db.name, "W5"))
    sessions = list_sessions_fixture(n)
    # Raw runs agentstore's own statement: the exact SQL text list_sessions() sends, with the
    # arguments it binds (none of the caller's: only the '' of its coalesces).
    compiled = _list_query(True, None, False, False).on(db.dialect)
    args = compiled.args({})

    async def setup(store: Store) -> None:
        await insert_sessions(store, sessions)

    async def raw_read(raw: Raw) -> Rows:
        return await raw.fetch(compiled.sql, args)

    async def store_read(store: Store) -> Sequence[Any]:
        return await store.list_sessions()

    expect = expect_ids(newest_first(sessions))
    await read_rounds(db, sizes, rounds, result, setup, raw_read, store_read, expect)
    return result


async def w6(db: Databases, sizes: Sizes, rounds: int) -> Result:
    chain, n = sizes.w6_chain, sizes.w6_events
    result = Result("W6", f"session conversation over a {chain}-session chain x {n:,} events", None)
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

    wanted = [(f"chain-claude-{k}", s) for k in range(chain) for s in range(1, n + 1)]

    def expect(rows: Rows) -> str | None:
        # Rows of every column: claude_session_id is third, sequence fourth.
        if [(row[2], row[3]) for row in rows] != wanted:
            return f"{len(rows)} events, not the chain's {len(wanted)}, oldest session first"
        return None

    async def raw_read(raw: Raw) -> Rows:
        return await raw.session_conversation(leaf)

    async def store_read(store: Store) -> Sequence[Any]:
        return await store.get_session_conversation(leaf)

    await read_rounds(db, sizes, rounds, result, setup, raw_read, store_read, expect)
    return result


async def w7(db: Databases, sizes: Sizes, rounds: int) -> Result:
    n = sizes.w7_sessions
    text, limit = "needle", 50
    result = Result("W7", f'search "{text}" (limit {limit}) over {n:,} sessions', None)
    sessions = search_fixture(n)
    # agentstore's own statement and arguments, as search_sessions_by_title binds them
    # (the text lower-cased in Python, the limit); on SQLite it calls agentstore_lower,
    # which the raw connection registers too.
    compiled = _search_query(db.dialect, True).on(db.dialect)
    args = compiled.args({"pattern": text.lower(), "limit": limit})

    async def setup(store: Store) -> None:
        await insert_sessions(store, sessions)

    async def raw_read(raw: Raw) -> Rows:
        return await raw.fetch(compiled.sql, args)

    async def store_read(store: Store) -> Sequence[Any]:
        return await store.search_sessions_by_title(text, limit)

    expect = expect_ids(search_expected(sessions, text, limit))
    await read_rounds(db, sizes, rounds, result, setup, raw_read, store_read, expect)
    return result
