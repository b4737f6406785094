"""Backend options: pool settings through Store.open, and passwords never shown."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest

from agentstore import Session, Store
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
