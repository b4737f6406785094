"""Watches: conversations and approvals as they happen, from this store and others."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agentstore import (
    Approval,
    ConversationEvent,
    NotFoundError,
    Session,
    Store,
)
from agentstore.errors import InvalidValueError, StoreClosedError

REPO = Path(__file__).resolve().parents[1]
HLD_GO_STORE = REPO.parent / "shared" / "tools" / "hld-go-store"


def event(content: str, claude_id: str = "c1", session_id: str = "s1") -> ConversationEvent:
    return ConversationEvent(session_id=session_id, claude_session_id=claude_id, content=content)


async def with_session(store: Store, session_id: str = "s1", claude_id: str = "c1") -> None:
    await store.create_session(
        Session(id=session_id, run_id=f"r-{session_id}", query="q", claude_session_id=claude_id)
    )


async def collect(watch: AsyncIterator[Any], count: int, seconds: float = 10) -> list[Any]:
    """The next ``count`` items of a watch (then it is closed), within ``seconds``."""
    got: list[Any] = []
    async with asyncio.timeout(seconds):
        async for item in watch:
            got.append(item)
            if len(got) == count:
                break
    await watch.aclose()  # type: ignore[attr-defined]
    return got


async def test_a_watch_gives_the_backlog_then_new_events_in_order_once_each(store: Store) -> None:
    await with_session(store)
    for i in range(3):
        await store.add_conversation_event(event(f"old{i}"))
    watcher = asyncio.create_task(collect(store.watch_conversation("c1", after_sequence=1), 6))
    await asyncio.sleep(0.05)
    await store.add_conversation_event(event("new0"))
    await store.add_conversation_events([event("new1"), event("new2")])
    async with store.transaction() as tx:
        await tx.conversations.add(event("new3"))
    got = await watcher
    assert [(e.sequence, e.content) for e in got] == [
        (2, "old1"),
        (3, "old2"),
        (4, "new0"),
        (5, "new1"),
        (6, "new2"),
        (7, "new3"),
    ]


async def test_a_watch_of_another_conversation_is_not_woken(store: Store) -> None:
    await with_session(store, "s1", "c1")
    await with_session(store, "s2", "c2")
    watch = store.watch_conversation("c2")
    waiting = asyncio.create_task(collect(watch, 1))
    await store.add_conversation_event(event("for c1"))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await store.add_conversation_event(event("for c2", "c2", "s2"))
    [got] = await waiting
    assert got.content == "for c2"


async def test_events_appended_by_another_store_are_seen(db_url: str) -> None:
    async with Store.open(db_url) as watching, Store.open(db_url) as writing:
        await with_session(writing)
        watcher = asyncio.create_task(collect(watching.watch_conversation("c1"), 5))
        await asyncio.sleep(0.05)
        for i in range(3):
            await writing.add_conversation_event(event(f"e{i}"))
        await writing.add_conversation_events([event("b0"), event("b1")])
        got = await watcher
        assert [e.sequence for e in got] == [1, 2, 3, 4, 5]
        assert [e.content for e in got] == ["e0", "e1", "e2", "b0", "b1"]


CHILD_APPENDS = r"""
import asyncio, sys
from agentstore import ConversationEvent, Store

async def main() -> None:
    async with Store.open(sys.argv[1]) as store:
        for i in range(int(sys.argv[2])):
            tag = sys.argv[3]
            e = ConversationEvent(session_id="s1", claude_session_id="c1", content=f"{tag}.{i}")
            if i % 5 == 4:
                await store.add_conversation_events([e, ConversationEvent(
                    session_id="s1", claude_session_id="c1", content=f"{tag}.{i}b")])
            else:
                await store.add_conversation_event(e)

asyncio.run(main())
"""


async def test_events_appended_by_child_processes_arrive_in_order(db_url: str) -> None:
    async with Store.open(db_url) as store:
        await with_session(store)
        watcher = asyncio.create_task(collect(store.watch_conversation("c1"), 2 * 24, seconds=60))
        await asyncio.sleep(0.05)
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", CHILD_APPENDS, db_url, "20", f"child{n}", cwd=REPO
            )
            for n in range(2)
        ]
        assert [await child.wait() for child in children] == [0, 0]
        got = await watcher
        assert [e.sequence for e in got] == list(range(1, 49))
        assert len({e.content for e in got}) == 48


CHILD_DECIDES = r"""
import asyncio, sys
from agentstore import Store

async def main() -> None:
    async with Store.open(sys.argv[1]) as store:
        await asyncio.sleep(0.3)
        await store.update_approval_response("a1", "denied", "from another process")

asyncio.run(main())
"""


async def test_wait_for_decision(db_url: str) -> None:
    async with Store.open(db_url) as store:
        await with_session(store)
        await store.create_approval(Approval(id="a1", session_id="s1", tool_name="Bash"))
        with pytest.raises(TimeoutError):
            await store.wait_for_decision("a1", timeout=0.2)
        with pytest.raises(NotFoundError):
            await store.wait_for_decision("nope", timeout=1)
        with pytest.raises(InvalidValueError):
            await store.wait_for_decision("a1", timeout=-1)
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD_DECIDES, db_url, cwd=REPO
        )
        decided = await store.wait_for_decision("a1", timeout=30)
        assert (decided.status, decided.comment) == ("denied", "from another process")
        assert await child.wait() == 0
        # Already decided: at once.
        again = await asyncio.wait_for(store.wait_for_decision("a1"), 2)
        assert again.status == "denied"


async def test_watch_approvals_gives_each_pending_approval_once(store: Store) -> None:
    await with_session(store, "s1", "c1")
    await with_session(store, "s2", "c2")
    await store.create_approval(Approval(id="a1", session_id="s1", tool_name="Bash"))
    everyone = asyncio.create_task(collect(store.watch_approvals(), 3))
    only_s2 = asyncio.create_task(collect(store.watch_approvals(session_id="s2"), 1))
    await asyncio.sleep(0.05)
    await store.update_approval_response("a1", "approved", "")  # decided: nothing new
    await store.create_approval(Approval(id="a2", session_id="s2", tool_name="Edit"))
    await store.create_approval(Approval(id="a3", session_id="s1", tool_name="Write"))
    assert [a.id for a in await everyone] == ["a1", "a2", "a3"]
    assert [a.id for a in await only_s2] == ["a2"]


async def test_cancelled_and_abandoned_watches_end_cleanly(store: Store) -> None:
    await with_session(store)
    feed = store._feed
    followers = [
        asyncio.create_task(collect(store.watch_conversation("c1"), 1000)) for _ in range(5)
    ]
    survivor = asyncio.create_task(collect(store.watch_conversation("c1"), 3))
    await asyncio.sleep(0.05)
    await store.add_conversation_event(event("e1"))
    for task in followers:
        task.cancel()
    await asyncio.gather(*followers, return_exceptions=True)
    # A watch left with `break` ends too (the loop closes it).
    async for _ in store.watch_conversation("c1"):
        break
    await store.add_conversation_event(event("e2"))
    await store.add_conversation_event(event("e3"))
    assert [e.content for e in await survivor] == ["e1", "e2", "e3"]
    for _ in range(50):
        if feed._watches == 0 and not feed._conversations:
            break
        await asyncio.sleep(0.01)
    assert feed._watches == 0 and not feed._conversations
    for _ in range(100):  # the change source stops once no watch is open
        if feed._source is None or feed._source.done():
            break
        await asyncio.sleep(0.02)
    assert feed._source is None or feed._source.done()


async def test_closing_the_store_ends_its_watches(db_url: str) -> None:
    store = await Store.open(db_url)
    await with_session(store)
    await store.create_approval(Approval(id="a1", session_id="s1", tool_name="Bash"))

    async def follow() -> list[ConversationEvent]:
        return [e async for e in store.watch_conversation("c1")]

    following = asyncio.create_task(follow())
    waiting = asyncio.create_task(store.wait_for_decision("a1"))
    await asyncio.sleep(0.05)
    await store.add_conversation_event(event("last"))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(store.close(), 10)
    assert [e.content for e in await asyncio.wait_for(following, 5)] == ["last"]
    with pytest.raises(StoreClosedError):
        await asyncio.wait_for(waiting, 5)
    with pytest.raises(StoreClosedError):
        store.watch_conversation("c1")


async def test_a_thousand_idle_watches_hold_no_connection(db_url: str) -> None:
    async with Store.open(db_url) as store:
        await with_session(store)
        watches = [
            asyncio.create_task(collect(store.watch_conversation("c1"), 1)) for _ in range(1000)
        ]
        await asyncio.sleep(0.3)
        if store.dialect == "postgresql":
            rows = await store.engine.connect()
            try:
                count = (
                    await rows.exec_driver_sql(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    )
                ).scalar()
            finally:
                await rows.close()
            # This query's connection, the listener, and the workers' (a few): not 1,000.
            assert count is not None and count <= 8
        else:
            threads = [t.name for t in threading.enumerate()]
            assert sum(name.startswith("agentstore") for name in threads) <= 4
        await store.add_conversation_event(event("for everyone"))
        results = await asyncio.gather(*watches)
        assert all(len(got) == 1 and got[0].content == "for everyone" for got in results)


async def test_many_watchers_follow_a_writer_and_get_everything_in_order(store: Store) -> None:
    await with_session(store)
    total = 1000
    watchers = [
        asyncio.create_task(collect(store.watch_conversation("c1"), total, 60)) for _ in range(100)
    ]
    await asyncio.sleep(0.05)
    for i in range(total):
        await store.add_conversation_event(event(f"e{i}"))
    for got in await asyncio.gather(*watchers):
        assert [e.sequence for e in got] == list(range(1, total + 1))


async def test_a_postgres_watch_survives_its_connection_being_killed(postgres_url: str) -> None:
    async with Store.open(postgres_url) as store, Store.open(postgres_url) as writer:
        await with_session(writer)
        watcher = asyncio.create_task(collect(store.watch_conversation("c1"), 6, seconds=30))
        await asyncio.sleep(0.2)
        await writer.add_conversation_event(event("before"))
        for _round in range(2):
            async with writer.engine.connect() as conn:  # end every other session's backend
                await conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND query ILIKE 'LISTEN%'"
                )
                await conn.commit()
            # Appended while the listener is down: read once it is back.
            await writer.add_conversation_event(event(f"while down {_round}"))
            await asyncio.sleep(0.3)
            await writer.add_conversation_event(event(f"after {_round}"))
        await writer.add_conversation_event(event("end"))
        got = await watcher
        assert [e.content for e in got] == [
            "before",
            "while down 0",
            "after 0",
            "while down 1",
            "after 1",
            "end",
        ]


@pytest.mark.skipif(not HLD_GO_STORE.exists(), reason="hld's Go store is only on build machines")
async def test_rows_hld_writes_into_a_shared_file_are_seen(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    async with Store.open(path) as store:
        approvals = asyncio.create_task(collect(store.watch_approvals(), 1, seconds=60))
        await asyncio.sleep(0.1)
        hld = await asyncio.create_subprocess_exec(
            str(HLD_GO_STORE), "write", str(path), "gohld", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await hld.communicate()
        assert hld.returncode == 0 and out.strip() == b"ok"
        [pending] = await approvals
        assert pending.id.startswith("gohld") or pending.session_id.startswith("gohld")
        hld_session = await store.get_session(pending.session_id)
        events = await collect(store.watch_conversation(hld_session.claude_session_id), 2)
        assert [e.sequence for e in events] == [1, 2]
