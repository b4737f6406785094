"""Writes: W1 single appends, W2 batches, W4 concurrent appends (group commit).

Each side of each round writes into a database of its own, fresh and holding only the
session the events belong to; the raw side goes first, then agentstore.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial

from agentstore import ConversationEvent, Store
from bench.backends import Databases, Raw
from bench.common import (
    Concurrency,
    Result,
    Sizes,
    check_sequences,
    measure,
    progress,
    target,
)
from bench.fixtures import CLAUDE_ID, SESSION_ID, new_event, one_session, prepare


async def write_round(
    db: Databases,
    result: Result,
    raw_work: Callable[[Raw], Awaitable[list[int]]],
    store_work: Callable[[Store], Awaitable[list[int]]],
    expected: int,
) -> None:
    """One round: each side's work timed on a fresh database, then its sequences checked
    (those handed back to the caller, and those stored)."""
    async with db.fresh() as location:
        await prepare(location)
        raw = await db.connect_raw(location)
        try:
            elapsed, given = await measure(partial(raw_work, raw))
            result.raw.append(elapsed)
            check_sequences(result, "raw, returned", given, expected)
            check_sequences(result, "raw, stored", await raw.sequences(CLAUDE_ID), expected)
        finally:
            await raw.close()
    async with db.fresh() as location:
        store = await Store.open(location)
        try:
            await one_session(store)
            elapsed, given = await measure(partial(store_work, store))
            result.store.append(elapsed)
            check_sequences(result, "agentstore, returned", given, expected)
            stored = [e.sequence for e in await store.get_conversation(CLAUDE_ID)]
            check_sequences(result, "agentstore, stored", stored, expected)
        finally:
            await store.close()


async def raw_single_appends(raw: Raw, count: int) -> list[int]:
    """W1's raw work (and W4's reference): ``count`` atomic appends, one after another."""
    given = []
    for i in range(count):
        row = await raw.append_one(SESSION_ID, CLAUDE_ID, f"message {i}")
        given.append(row[1])
    return given


async def store_single_appends(store: Store, count: int) -> list[int]:
    given = []
    for i in range(count):
        event = await store.add_conversation_event(new_event(f"message {i}"))
        given.append(event.sequence)
    return given


async def w1(db: Databases, sizes: Sizes, rounds: int) -> Result:
    n = sizes.w1_events
    result = Result("W1", f"append {n:,} events, one per call", target(db.name, "W1"))
    for index in range(rounds):
        await write_round(
            db,
            result,
            partial(raw_single_appends, count=n),
            partial(store_single_appends, count=n),
            n,
        )
        progress(db.name, result, index, rounds)
    return result


async def w2(db: Databases, sizes: Sizes, rounds: int) -> Result:
    n, size = sizes.w2_events, sizes.w2_batch
    result = Result(
        "W2",
        f"append {n:,} events in batches of {size}, inputs built inside the clock",
        target(db.name, "W2"),
    )

    async def raw_work(raw: Raw) -> list[int]:
        # Each batch's parameter tuples are built inside append_batch (after its MAX).
        given: list[int] = []
        for first in range(0, n, size):
            given += await raw.append_batch(SESSION_ID, CLAUDE_ID, first, min(size, n - first))
        return given

    async def store_work(store: Store) -> list[int]:
        # The caller builds its ConversationEvent objects, batch by batch, on the clock.
        given: list[int] = []
        for first in range(0, n, size):
            batch = [new_event(f"message {i}") for i in range(first, min(n, first + size))]
            given += [e.sequence for e in await store.add_conversation_events(batch)]
        return given

    for index in range(rounds):
        await write_round(db, result, raw_work, store_work, n)
        progress(db.name, result, index, rounds)
    return result


async def concurrent_appends(
    store: Store, tasks: int, per_task: int, errors: Counter[str]
) -> list[ConversationEvent]:
    """W4's agentstore work: ``tasks`` tasks appending ``per_task`` events each, at once."""

    async def task(t: int) -> list[ConversationEvent]:
        done = []
        for i in range(per_task):
            try:
                done.append(await store.add_conversation_event(new_event(f"task {t} msg {i}")))
            except Exception as exc:
                cause = exc.__cause__ or exc
                errors[f"{type(exc).__name__} ({str(cause).splitlines()[0][:120]})"] += 1
        return done

    per_task_events = await asyncio.gather(*(task(t) for t in range(tasks)))
    return [event for events in per_task_events for event in events]


async def w4(db: Databases, sizes: Sizes, rounds: int) -> Result:
    tasks, per_task = sizes.w4_tasks, sizes.w4_per_task
    total = tasks * per_task
    result = Result(
        "W4",
        f"{tasks} tasks x {per_task} appends to one Claude session, one Store "
        f"(raw: the {total:,} appends one after another)",
        target(db.name, "W4"),
    )
    c = result.concurrency = Concurrency(f"{tasks} tasks x {per_task} appends", total)
    for index in range(rounds):
        # Raw reference: W1's statement, the same number of appends, serially.
        async with db.fresh() as location:
            await prepare(location)
            raw = await db.connect_raw(location)
            try:
                elapsed, given = await measure(partial(raw_single_appends, raw, total))
                check_sequences(result, "raw serial, returned", given, total)
                check_sequences(result, "raw serial, stored", await raw.sequences(CLAUDE_ID), total)
            finally:
                await raw.close()
        result.raw.append(elapsed)
        c.raw_rate.append(total / (elapsed / 1000))
        async with db.fresh() as location:
            store = await Store.open(location)
            try:
                await one_session(store)
                errors: Counter[str] = Counter()
                elapsed, events = await measure(
                    partial(concurrent_appends, store, tasks, per_task, errors)
                )
                stored = await store.get_conversation(CLAUDE_ID)
            finally:
                await store.close()
        result.store.append(elapsed)
        sequences = [e.sequence for e in stored]
        c.errors.update(errors)
        c.duplicates.append(len(sequences) - len(set(sequences)))
        c.exact.append(sorted(sequences) == list(range(1, total + 1)))
        c.store_rate.append(len(events) / (elapsed / 1000))
        # What each caller was handed back is what was stored.
        if sorted((e.id, e.sequence) for e in events) != sorted((e.id, e.sequence) for e in stored):
            result.problem("the (id, sequence) handed back differ from the rows stored")
        progress(
            db.name,
            result,
            index,
            rounds,
            f"; {sum(errors.values())} errors, {c.duplicates[-1]} duplicate sequences, "
            f"exactly 1..{total}: {c.exact[-1]}, agentstore {c.store_rate[-1]:,.0f} appends/s, "
            f"raw serial {c.raw_rate[-1]:,.0f} appends/s",
        )
    return result
