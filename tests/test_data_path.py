"""The data path: group commit, durability, transactions under cancellation, plain values."""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from typing import Any

import pytest
import sqlalchemy as sa

from agentstore import (
    Approval,
    ApprovalStatus,
    ConversationEvent,
    EventType,
    InvalidValueError,
    NotFoundError,
    Session,
    SessionStatus,
    Store,
    StoreError,
)
from agentstore.db import Conn


def event(session_id: str = "s1", claude_id: str = "c1", content: str = "") -> ConversationEvent:
    return ConversationEvent(session_id=session_id, claude_session_id=claude_id, content=content)


def count_transactions(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many write transactions the store's data path runs from now on."""
    backend: Any = store._backend
    counter = [0]
    write, write_then = backend.write, backend.write_then

    async def counting(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return await write(*args, **kwargs)

    def counting_then(*args: Any, **kwargs: Any) -> Any:  # how group commit writes
        counter[0] += 1
        return write_then(*args, **kwargs)

    monkeypatch.setattr(backend, "write", counting)
    monkeypatch.setattr(backend, "write_then", counting_then)
    return counter


async def test_appends_waiting_together_commit_in_one_transaction(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.create_session(Session(id="s1", run_id="r1", query="q", claude_session_id="c1"))
    transactions = count_transactions(store, monkeypatch)
    results = await asyncio.gather(
        *(store.add_conversation_event(event(content=f"e{i}")) for i in range(10)),
        store.add_conversation_event(event("ghost", content="lost")),
        store.add_conversation_events([event(content="b0"), event("ghost", content="b1")]),
        store.add_conversation_events([event(content="k0"), event(content="k1")]),
        return_exceptions=True,
    )
    # The first append goes at once; the twelve that arrive while it is written go into the
    # next group together: two BEGIN … COMMITs for thirteen calls.
    assert transactions[0] == 2
    singles, ghost, mixed_batch, batch = results[:10], results[10], results[11], results[12]
    # Each caller's outcome is its own: the ghost session fails alone, the batch naming it
    # fails whole, and everything else of the group commits.
    assert isinstance(ghost, NotFoundError) and ghost.id == "ghost"
    assert isinstance(mixed_batch, NotFoundError) and mixed_batch.id == "ghost"
    assert all(isinstance(e, ConversationEvent) for e in singles)
    assert isinstance(batch, list)
    stored = await store.get_conversation("c1")
    assert [e.sequence for e in stored] == list(range(1, 13))  # gap-free: 10 + 2
    assert [e.content for e in stored] == [*(f"e{i}" for i in range(10)), "k0", "k1"]
    acknowledged = [e for e in [*singles, *batch] if isinstance(e, ConversationEvent)]
    assert [(e.id, e.sequence) for e in stored] == [(e.id, e.sequence) for e in acknowledged]


async def test_an_append_alone_commits_at_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.create_session(Session(id="s1", run_id="r1", query="q", claude_session_id="c1"))
    transactions = count_transactions(store, monkeypatch)
    for i in range(3):
        assert (await store.add_conversation_event(event(content=f"{i}"))).sequence == i + 1
    assert transactions[0] == 3


async def _synchronous(store: Store) -> list[Any]:
    """The durability setting of every connection the store uses."""

    async def unit(conn: Conn) -> Any:
        if conn.dialect == "sqlite":
            return conn.raw.execute("PRAGMA synchronous").fetchone()[0]  # type: ignore[attr-defined]
        return await conn.driver.fetchval("SHOW synchronous_commit")  # type: ignore[attr-defined]

    return [await store.write(unit), await store.read(unit)]


async def test_durability_is_full_by_default_and_normal_on_request(db_url: str) -> None:
    async with Store.open(db_url) as store:
        full = await _synchronous(store)
    async with Store.open(db_url, durability="normal") as store:
        normal = await _synchronous(store)
    if db_url.startswith("sqlite"):
        assert full == [2, 2]  # FULL, as hld runs: a commit survives a power loss
        assert normal == [1, 1]  # NORMAL
    else:
        assert full == ["on", "on"]
        assert normal == ["off", "off"]
    with pytest.raises(InvalidValueError, match="durability"):
        await Store.open(db_url, durability="fast")


async def test_statuses_and_kinds_come_back_as_their_enums(store: Store) -> None:
    await store.create_session(
        Session(id="s1", run_id="r1", query="q", claude_session_id="c1", status="running")
    )
    await store.add_conversation_event(
        ConversationEvent(session_id="s1", claude_session_id="c1", event_type="tool_call")
    )
    await store.create_approval(Approval(id="a1", session_id="s1", tool_name="Bash"))
    session = await store.get_session("s1")
    assert type(session.status) is SessionStatus and session.status == "running"
    assert type((await store.list_sessions())[0].status) is SessionStatus
    [call] = await store.get_conversation("c1")
    assert type(call.event_type) is EventType and call.event_type == "tool_call"
    approval = await store.get_approval("a1")
    assert type(approval.status) is ApprovalStatus
    decided = await store.update_approval_response("a1", "denied", "no")
    assert decided.status is ApprovalStatus.DENIED


async def test_a_result_the_caller_drops_is_freed_not_kept_by_the_store(store: Store) -> None:
    """A worker (a PostgreSQL task, an SQLite reader or writer thread) keeps its last job
    until the next one; the job must not keep the result, or a big read stays in memory
    (and is freed inside some later caller's call). Freed by reference counting alone."""
    await store.create_session(Session(id="s1", run_id="r1", query="q", claude_session_id="c1"))
    await store.add_conversation_events([event(content=f"e{i}") for i in range(20)])
    for read in (
        lambda: store.get_conversation("c1"),
        lambda: store.list_sessions(),
        lambda: store.add_conversation_events([event(content="more")]),
    ):
        result = await read()
        held = weakref.ref(result[0])
        del result
        # Soon (a thread lets go right after it answered), not at the next job: within
        # 0.5 s, while a PostgreSQL worker idles 2 s before it ends with its last job.
        for _ in range(500):
            await asyncio.sleep(0.001)
            if held() is None:
                break
        assert held() is None


def test_constructed_models_are_plain_detached_values() -> None:
    built = ConversationEvent(session_id="s1", claude_session_id="c1", event_type="message")
    assert built.event_type is EventType.MESSAGE  # text given, the member kept
    assert (built.id, built.sequence, built.content, built.is_completed) == (None, 0, "", False)
    assert built.created_at.tzinfo is not None
    assert sa.inspect(built).transient  # SQLAlchemy's state, made when asked for
    built.content = "changed"
    assert built.content == "changed"
    copy = dataclasses.replace(built, content="other")
    assert (copy.content, copy.session_id, copy.created_at) == ("other", "s1", built.created_at)
    assert copy != built and dataclasses.replace(copy, content="changed") == built
    with pytest.raises(TypeError):
        Session(id="s1")  # type: ignore[call-arg]  # run_id is required, as in the dataclass
    with pytest.raises(TypeError):
        ConversationEvent(nonsense=1)  # type: ignore[call-arg]


# --- transactions and cancellation ----------------------------------------------------------


async def test_a_transaction_whose_task_is_cancelled_rolls_back_and_frees_the_writer(
    store: Store,
) -> None:
    await store.create_session(Session(id="s1", run_id="r1", query="q", claude_session_id="c1"))
    inside = asyncio.Event()

    async def block() -> None:
        async with store.transaction() as tx:
            await tx.conversations.add(event(content="never"))
            inside.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(block())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The next writer goes at once, and the cancelled block left nothing behind.
    after = await asyncio.wait_for(store.add_conversation_event(event(content="after")), 2)
    assert after.sequence == 1
    assert [e.content for e in await store.get_conversation("c1")] == ["after"]


async def test_a_transaction_cancelled_in_the_middle_of_a_call_rolls_back(store: Store) -> None:
    await store.create_session(Session(id="s1", run_id="r1", query="q", claude_session_id="c1"))
    for delay in (0.0, 0.0005, 0.001, 0.002, 0.004):

        async def block() -> None:
            async with store.transaction() as tx:
                await tx.conversations.add_many([event(content="x") for _ in range(50)])
                await tx.conversations.add(event(content="y"))

        task = asyncio.create_task(block())
        await asyncio.sleep(delay)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        await asyncio.wait_for(store.get_event_count(), 2)
    # Each block committed whole or not at all.
    assert (await store.get_event_count()) % 51 == 0
    stored = await store.get_conversation("c1")
    assert [e.sequence for e in stored] == list(range(1, len(stored) + 1))


async def test_transactions_do_not_nest_and_end_with_their_block(store: Store) -> None:
    async with store.transaction() as tx:
        with pytest.raises(StoreError, match="do not nest"):
            async with store.transaction():
                pass
        await tx.sessions.create(Session(id="s1", run_id="r1", query="q"))
    with pytest.raises(StoreError, match="ended"):
        await tx.sessions.get("s1")
    assert (await store.get_session("s1")).query == "q"


async def test_store_calls_inside_a_block_run_in_it_and_other_tasks_are_told(store: Store) -> None:
    async with store.transaction():
        # The block's own task: the call joins the transaction (rolled back below).
        await store.create_session(Session(id="s1", run_id="r1", query="q"))
        assert (await store.get_session("s1")).query == "q"

        async def from_another_task() -> None:
            await store.create_session(Session(id="s2", run_id="r2", query="q"))

        # Another task would wait for the block, which may wait for it: told at once.
        with pytest.raises(StoreError, match=r"another task inside a store\.transaction"):
            await asyncio.wait_for(asyncio.create_task(from_another_task()), 5)
    assert {s.id for s in await store.list_sessions()} == {"s1"}
