"""Backend options: pool settings through Store.open, and passwords never shown."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from agentstore import ConversationEvent, Session, Store
from agentstore.db import lock_key
from agentstore.errors import DatabaseError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_password_never_appears_when_the_server_cannot_be_reached(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"postgresql+asyncpg://agent:s3cret-pw@127.0.0.1:{_free_port()}/agentstore"
    with caplog.at_level(logging.DEBUG), pytest.raises(DatabaseError) as info:
        await Store.open(url)
    shown = str(info.value) + repr(info.value) + caplog.text
    assert "s3cret-pw" not in shown
    assert "agent:***@127.0.0.1" in str(info.value)


async def test_pool_options_pass_through_and_survive_a_dropped_connection(db_url: str) -> None:
    store = await Store.open(
        db_url, pool_size=2, max_overflow=0, pool_pre_ping=True, pool_recycle=60
    )
    try:
        pool: Any = store.engine.pool
        assert pool.size() == 2
        assert pool._pre_ping is True
        assert pool._recycle == 60
        await store.create_session(Session(id="s1", run_id="r1", query="q"))
        if store.dialect_name == "postgresql":
            # The server kills every other connection (as a restart or an idle timeout
            # would); pre-ping notices and the next call simply works.
            async with store.engine.connect() as conn:
                await conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                await conn.commit()
        assert (await store.get_session("s1")).query == "q"
    finally:
        await store.close()


# --- PostgreSQL workers: warm connections for the hot paths --------------------------------


@pytest.fixture
async def pg_store(postgres_url: str) -> AsyncIterator[Store]:
    store = await Store.open(postgres_url)
    try:
        await store.create_session(Session(id="s1", run_id="r1", query="q", claude_session_id="c1"))
        yield store
    finally:
        await store.close()


def _count_checkouts(store: Store) -> list[int]:
    checkouts = [0]

    def on_checkout(*_: Any) -> None:
        checkouts[0] += 1

    sa.event.listen(store.engine.sync_engine, "checkout", on_checkout)
    return checkouts


async def test_busy_calls_keep_a_connection_and_an_idle_worker_gives_it_back(
    pg_store: Store,
) -> None:
    await pg_store.get_session("s1")  # a worker holds a connection now
    checkouts = _count_checkouts(pg_store)
    for _ in range(20):
        await pg_store.get_session("s1")
    assert checkouts[0] == 0  # no pool round trip (and no pre-ping) per call

    pg_store._backend._linger = 0.01  # type: ignore[union-attr]
    await pg_store.get_session("s1")  # the worker's next wait for a job uses the new linger
    for _ in range(5):
        await asyncio.sleep(0.1)  # idle: the worker gives its connection back to the pool
        await pg_store.get_session("s1")
    assert checkouts[0] >= 5  # each call checked out through the pool, pre-ping included


async def test_a_connection_the_server_closed_is_not_used_again(pg_store: Store) -> None:
    await pg_store.get_session("s1")
    await pg_store.add_conversation_event(
        ConversationEvent(session_id="s1", claude_session_id="c1", event_type="message")
    )
    # The server ends every other connection, the workers' included (as a restart
    # would); the next calls get connections that work.
    async with pg_store.engine.connect() as conn:
        await conn.exec_driver_sql(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        await conn.commit()
    await asyncio.sleep(0.1)  # the event loop sees the sockets close
    assert (await pg_store.get_session("s1")).query == "q"
    event = await pg_store.add_conversation_event(
        ConversationEvent(session_id="s1", claude_session_id="c1", event_type="message")
    )
    assert event.sequence == 2


async def test_a_read_does_not_wait_for_appends_blocked_on_a_lock(pg_store: Store) -> None:
    # Two appends wait for the Claude session's advisory lock, which another connection
    # holds; a read must still go through at once, on another worker.
    async with pg_store.engine.connect() as blocker:
        await blocker.exec_driver_sql(
            f"SELECT pg_advisory_xact_lock({lock_key('c1')})"  # an int computed here
        )
        appends = [
            asyncio.create_task(
                pg_store.add_conversation_event(
                    ConversationEvent(session_id="s1", claude_session_id="c1", event_type="message")
                )
            )
            for _ in range(2)
        ]
        await asyncio.sleep(0.2)
        assert not any(task.done() for task in appends)
        session = await asyncio.wait_for(pg_store.get_session("s1"), timeout=10)
        assert session.query == "q"
        await blocker.commit()  # releases the advisory lock
    events = await asyncio.gather(*appends)
    assert sorted(e.sequence for e in events) == [1, 2]
