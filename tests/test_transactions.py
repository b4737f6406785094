"""``store.transaction()``: several repository calls commit together or not at all."""

from __future__ import annotations

import asyncio

import pytest

from agentstore import (
    AlreadyDecidedError,
    Approval,
    ConversationEvent,
    DuplicateError,
    EventType,
    FileSnapshot,
    InvalidStatusError,
    MCPServer,
    NotFoundError,
    Session,
    Store,
    Transaction,
)


class Boom(Exception):
    """An error raised by the caller's own code inside the block."""


def session(session_id: str, claude_session_id: str = "c1") -> Session:
    return Session(
        id=session_id, run_id=f"run-{session_id}", query="q", claude_session_id=claude_session_id
    )


def event(
    session_id: str = "s1", claude_session_id: str = "c1", content: str = ""
) -> ConversationEvent:
    return ConversationEvent(
        session_id=session_id,
        claude_session_id=claude_session_id,
        event_type=EventType.MESSAGE,
        content=content,
    )


def approval(approval_id: str, session_id: str = "s1", tool_name: str = "Bash") -> Approval:
    return Approval(
        id=approval_id,
        run_id="r",
        session_id=session_id,
        tool_name=tool_name,
        tool_input={"command": "ls"},
    )


async def _fill(tx: Transaction) -> None:
    """Session s1 with three events, an approval, a raw event, a snapshot and a server."""
    await tx.sessions.create(session("s1"))
    await tx.conversations.add(event(content="one"))
    await tx.conversations.add_many([event(content="two"), event(content="three")])
    await tx.approvals.create(approval("a1"))
    await tx.raw_events.store("s1", '{"type":"system"}')
    await tx.snapshots.create(
        FileSnapshot(tool_id="t1", session_id="s1", file_path="/f", content="c")
    )
    await tx.mcp_servers.store("s1", [MCPServer(name="m", command="npx")])


async def _nothing_stored(store: Store) -> None:
    with pytest.raises(NotFoundError):
        await store.get_session("s1")
    assert await store.get_session_count() == 0
    assert await store.get_event_count() == 0
    assert await store.get_approval_count() == 0
    assert await store.raw_events.list("s1") == []
    assert await store.get_file_snapshots("s1") == []
    assert await store.get_mcp_servers("s1") == []


async def test_calls_commit_together(store: Store) -> None:
    async with store.transaction() as tx:
        await _fill(tx)
        # Inside the block its own writes are visible...
        assert [e.content for e in await tx.conversations.get_conversation("c1")] == [
            "one",
            "two",
            "three",
        ]
        assert (await tx.approvals.get("a1")).status == "pending"
        # ...and outside it (another task: the block's own task reads inside it) nothing
        # is, until the block commits.
        await asyncio.create_task(_nothing_stored(store))

    assert (await store.get_session("s1")).claude_session_id == "c1"
    conversation = await store.get_conversation("c1")
    assert [(e.sequence, e.content) for e in conversation] == [
        (1, "one"),
        (2, "two"),
        (3, "three"),
    ]
    assert (await store.get_approval("a1")).tool_name == "Bash"
    assert [r.event_json for r in await store.raw_events.list("s1")] == ['{"type":"system"}']
    assert [s.content for s in await store.get_file_snapshots("s1")] == ["c"]
    assert [m.name for m in await store.get_mcp_servers("s1")] == ["m"]


async def test_an_exception_rolls_everything_back(store: Store) -> None:
    with pytest.raises(Boom):
        async with store.transaction() as tx:
            await _fill(tx)
            await tx.approvals.decide("a1", "approved", "ok")
            raise Boom
    await _nothing_stored(store)

    # The store is usable afterwards, and numbering starts from scratch.
    await store.create_session(session("s1"))
    assert (await store.add_conversation_event(event())).sequence == 1


async def test_an_exception_rolls_back_updates_of_existing_rows(store: Store) -> None:
    await store.create_session(session("s1"))
    await store.create_approval(approval("a1"))
    await store.add_conversation_event(
        ConversationEvent(
            session_id="s1",
            claude_session_id="c1",
            event_type="tool_call",
            tool_id="t1",
            tool_name="Bash",
        )
    )
    with pytest.raises(Boom):
        async with store.transaction() as tx:
            await tx.approvals.decide("a1", "denied", "no")
            await tx.conversations.link_approval_by_tool_id("s1", "t1", "a1")
            await tx.conversations.update_approval_status("a1", "denied")
            await tx.conversations.mark_tool_call_completed("t1", "s1")
            raise Boom
    got = await store.get_approval("a1")
    assert (got.status, got.comment, got.responded_at) == ("pending", "", None)
    [call] = await store.get_conversation("c1")
    assert (call.approval_status, call.approval_id, call.is_completed) == ("", "", False)


async def test_a_caught_store_error_keeps_the_earlier_calls(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.sessions.create(session("s1"))
        await tx.approvals.create(approval("a1", tool_name="Bash"))
        await tx.conversations.add(event(content="before"))
        with pytest.raises(DuplicateError):
            await tx.approvals.create(approval("a1", tool_name="Edit"))
        with pytest.raises(DuplicateError):
            await tx.sessions.create(session("s1"))
        # The block carries on after the failed calls.
        await tx.conversations.add(event(content="after"))
        await tx.approvals.create(approval("a2"))

    assert (await store.get_approval("a1")).tool_name == "Bash"
    assert (await store.get_approval("a2")).status == "pending"
    assert await store.get_approval_count() == 2
    assert await store.get_session_count() == 1
    assert [(e.sequence, e.content) for e in await store.get_conversation("c1")] == [
        (1, "before"),
        (2, "after"),
    ]


async def test_a_failed_append_inside_a_transaction_leaves_no_gap(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.sessions.create(session("s1"))
        first = await tx.conversations.add(event(content="1"))
        with pytest.raises(NotFoundError):
            await tx.conversations.add(event("ghost", content="lost"))
        with pytest.raises(NotFoundError):
            await tx.conversations.add_many([event(content="x"), event("ghost", content="y")])
        with pytest.raises(InvalidStatusError):
            await tx.conversations.add(ConversationEvent(session_id="s1", event_type="bogus"))
        second = await tx.conversations.add(event(content="2"))
        batch = await tx.conversations.add_many([event(content="3"), event(content="4")])
    assert (first.sequence, second.sequence) == (1, 2)
    assert [e.sequence for e in batch] == [3, 4]
    got = await store.get_conversation("c1")
    assert [(e.sequence, e.content) for e in got] == [(1, "1"), (2, "2"), (3, "3"), (4, "4")]
    assert await store.get_event_count() == 4


async def test_a_caught_error_then_an_exception_still_rolls_back_all(store: Store) -> None:
    with pytest.raises(Boom):
        async with store.transaction() as tx:
            await tx.sessions.create(session("s1"))
            await tx.approvals.create(approval("a1"))
            with pytest.raises(DuplicateError):
                await tx.approvals.create(approval("a1"))
            await tx.conversations.add(event())
            raise Boom
    await _nothing_stored(store)


async def test_an_already_decided_approval_inside_a_transaction(store: Store) -> None:
    await store.create_session(session("s1"))
    await store.create_approval(approval("a1"))
    await store.update_approval_response("a1", "approved", "first")
    async with store.transaction() as tx:
        with pytest.raises(AlreadyDecidedError):
            await tx.approvals.decide("a1", "denied", "second")
        await tx.approvals.create(approval("a2"))
        await tx.approvals.decide("a2", "denied", "no")
    assert (await store.get_approval("a1")).comment == "first"
    assert (await store.get_approval("a2")).status == "denied"


async def test_transactions_one_after_another(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.sessions.create(session("s1"))
        await tx.conversations.add(event())
    async with store.transaction() as tx:
        await tx.conversations.add_many([event(), event()])
    with pytest.raises(Boom):
        async with store.transaction() as tx:
            await tx.conversations.add(event())
            raise Boom
    async with store.transaction() as tx:
        last = await tx.conversations.add(event())
    assert last.sequence == 4
    assert [e.sequence for e in await store.get_conversation("c1")] == [1, 2, 3, 4]
