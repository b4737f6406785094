"""Conversation events: sequences, batches, paging, resume chains and tool-call tracking.

Every test runs on SQLite and PostgreSQL (the ``store`` fixture).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from agentstore import (
    ConversationEvent,
    EventType,
    InvalidStatusError,
    InvalidValueError,
    NotFoundError,
    Session,
    Store,
    StoreError,
)


async def new_session(
    store: Store, session_id: str, claude_session_id: str = "", parent: str = ""
) -> Session:
    return await store.create_session(
        Session(
            id=session_id,
            run_id=f"run-{session_id}",
            query="fix the bug",
            claude_session_id=claude_session_id,
            parent_session_id=parent,
        )
    )


def event(session_id: str, claude_session_id: str, **fields: Any) -> ConversationEvent:
    fields.setdefault("event_type", EventType.MESSAGE)
    return ConversationEvent(session_id=session_id, claude_session_id=claude_session_id, **fields)


def tool_call(
    session_id: str, claude_session_id: str, tool_id: str, tool_name: str, **fields: Any
) -> ConversationEvent:
    return event(
        session_id,
        claude_session_id,
        event_type=EventType.TOOL_CALL,
        tool_id=tool_id,
        tool_name=tool_name,
        tool_input_json='{"command":"ls"}',
        **fields,
    )


def sequences(events: list[ConversationEvent]) -> list[int]:
    return [e.sequence for e in events]


# --- add_conversation_event ---------------------------------------------------------------


async def test_add_assigns_sequence_and_id_per_claude_session(store: Store) -> None:
    await new_session(store, "s1", "c1")
    await new_session(store, "s2", "c2")
    added: list[ConversationEvent] = []
    for claude_id, session_id in [("c1", "s1"), ("c2", "s2"), ("c1", "s1"), ("c1", "s1")]:
        e = event(session_id, claude_id, content=f"to {claude_id}")
        returned = await store.add_conversation_event(e)
        assert returned is e
        added.append(e)

    assert [(e.claude_session_id, e.sequence) for e in added] == [
        ("c1", 1),
        ("c2", 1),
        ("c1", 2),
        ("c1", 3),
    ]
    ids = [e.id for e in added]
    assert all(isinstance(i, int) for i in ids)
    assert len(set(ids)) == 4

    stored = await store.get_conversation("c1")
    assert sequences(stored) == [1, 2, 3]
    assert [e.id for e in stored] == [added[0].id, added[2].id, added[3].id]
    assert sequences(await store.get_conversation("c2")) == [1]
    assert await store.get_event_count() == 4


async def test_one_session_may_hold_several_claude_sessions(store: Store) -> None:
    await new_session(store, "s1", "c1")
    first = await store.add_conversation_event(event("s1", "c1"))
    other = await store.add_conversation_event(event("s1", "c-other"))
    second = await store.add_conversation_event(event("s1", "c1"))
    assert (first.sequence, other.sequence, second.sequence) == (1, 1, 2)


async def test_empty_claude_session_id_shares_one_sequence_space(store: Store) -> None:
    await new_session(store, "s1")
    await new_session(store, "s2")
    a = await store.add_conversation_event(event("s1", ""))
    b = await store.add_conversation_event(event("s2", ""))
    c = await store.add_conversation_event(event("s1", ""))
    assert sequences([a, b, c]) == [1, 2, 3]
    stored = await store.get_conversation("")
    assert [(e.session_id, e.sequence) for e in stored] == [("s1", 1), ("s2", 2), ("s1", 3)]


async def test_add_overwrites_a_given_sequence_and_id(store: Store) -> None:
    await new_session(store, "s1", "c1")
    first = await store.add_conversation_event(event("s1", "c1"))
    e = event("s1", "c1", sequence=42, id=9999)
    await store.add_conversation_event(e)
    assert e.sequence == 2
    assert e.id != 9999
    assert e.id != first.id
    assert sequences(await store.get_conversation("c1")) == [1, 2]


async def test_event_round_trips_every_field(store: Store) -> None:
    await new_session(store, "s1", "c1")
    created = datetime(2025, 1, 15, 10, 30, 0, 123456, tzinfo=timezone(timedelta(hours=-8)))
    e = event(
        "s1",
        "c1",
        event_type=EventType.TOOL_CALL,
        created_at=created,
        role="assistant",
        content="Running ünïcødé 🚀",
        tool_id="toolu_01",
        tool_name="Bash",
        tool_input_json='{"command":"ls -la"}',
        tool_result_for_id="",
        tool_result_content="",
        is_completed=True,
        approval_status="pending",
        approval_id="appr-1",
        parent_tool_use_id="toolu_parent",
    )
    await store.add_conversation_event(e)
    [got] = await store.get_conversation("c1")
    assert got == e
    assert got.created_at == created
    assert got.created_at.utcoffset() == timedelta(0)
    assert got.event_type == "tool_call"
    assert got.is_completed is True
    assert got.parent_tool_use_id == "toolu_parent"


async def test_event_defaults_read_back_as_empty_strings(store: Store) -> None:
    await new_session(store, "s1", "c1")
    await store.add_conversation_event(ConversationEvent(session_id="s1", claude_session_id="c1"))
    [got] = await store.get_conversation("c1")
    assert got.event_type == "message"
    for name in (
        "role",
        "content",
        "tool_id",
        "tool_name",
        "tool_input_json",
        "tool_result_for_id",
        "tool_result_content",
        "approval_status",
        "approval_id",
        "parent_tool_use_id",
    ):
        assert getattr(got, name) == "", name
    assert got.is_completed is False
    assert got.created_at.tzinfo is not None


@pytest.mark.parametrize("bad_type", ["bogus", "", "TOOL_CALL", "resolved"])
async def test_add_refuses_an_unknown_event_type(store: Store, bad_type: str) -> None:
    await new_session(store, "s1", "c1")
    e = event("s1", "c1", event_type=bad_type)
    with pytest.raises(InvalidStatusError):
        await store.add_conversation_event(e)
    assert await store.get_event_count() == 0
    assert e.id is None
    assert e.sequence == 0


async def test_add_refuses_an_unknown_approval_status(store: Store) -> None:
    await new_session(store, "s1", "c1")
    with pytest.raises(InvalidStatusError):
        await store.add_conversation_event(event("s1", "c1", approval_status="maybe"))
    assert await store.get_event_count() == 0


async def test_add_refuses_an_unknown_session(store: Store) -> None:
    await new_session(store, "s1", "c1")
    await store.add_conversation_event(event("s1", "c1"))
    e = event("nope", "c1")
    with pytest.raises(NotFoundError) as info:
        await store.add_conversation_event(e)
    assert isinstance(info.value, LookupError)
    assert info.value.kind == "session"
    assert info.value.id == "nope"
    assert await store.get_event_count() == 1
    assert e.id is None
    # The failed append did not use up a sequence number.
    nxt = await store.add_conversation_event(event("s1", "c1"))
    assert nxt.sequence == 2


async def test_add_refuses_a_missing_session_id(store: Store) -> None:
    with pytest.raises(InvalidValueError):
        await store.add_conversation_event(event("", "c1"))
    assert await store.get_event_count() == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("content", 123),
        ("role", None),
        ("is_completed", "yes"),
        ("is_completed", 1),
        ("tool_input_json", {"command": "ls"}),
        ("claude_session_id", None),
        ("created_at", datetime(2025, 1, 15, 10, 30)),  # naive
        ("created_at", "2025-01-15 10:30:00"),
        ("session_id", 7),
    ],
)
async def test_add_refuses_wrong_types(store: Store, field: str, value: object) -> None:
    await new_session(store, "s1", "c1")
    e = event("s1", "c1")
    setattr(e, field, value)
    with pytest.raises(InvalidValueError):
        await store.add_conversation_event(e)
    assert await store.get_event_count() == 0


async def test_add_refuses_something_that_is_not_an_event(store: Store) -> None:
    await new_session(store, "s1", "c1")
    not_an_event: Any = {"session_id": "s1", "claude_session_id": "c1"}
    with pytest.raises(InvalidValueError):
        await store.add_conversation_event(not_an_event)
    assert await store.get_event_count() == 0


# --- add_conversation_events (batch) ------------------------------------------------------


async def test_batch_continues_numbering_with_contiguous_sequences(store: Store) -> None:
    await new_session(store, "s1", "c1")
    await new_session(store, "s2", "c2")
    await store.add_conversation_event(event("s1", "c1"))
    await store.add_conversation_event(event("s1", "c1"))

    batch = [
        event("s1", "c1", content="a"),
        event("s2", "c2", content="b"),
        event("s1", "c1", content="c"),
        event("s1", "c1", content="d"),
        event("s2", "c2", content="e"),
    ]
    result = await store.add_conversation_events(batch)

    assert result == batch
    assert all(r is b for r, b in zip(result, batch, strict=True))
    assert [(e.claude_session_id, e.sequence) for e in batch] == [
        ("c1", 3),
        ("c2", 1),
        ("c1", 4),
        ("c1", 5),
        ("c2", 2),
    ]
    ids = [e.id for e in batch]
    assert all(isinstance(i, int) for i in ids)
    assert len(set(ids)) == len(ids)

    stored = {e.id: e for e in await store.get_conversation("c1")}
    stored.update({e.id: e for e in await store.get_conversation("c2")})
    assert len(stored) == 7
    for e in batch:
        assert stored[e.id].content == e.content
        assert stored[e.id].sequence == e.sequence
        assert stored[e.id].claude_session_id == e.claude_session_id
    assert [e.content for e in await store.get_conversation("c1")] == ["", "", "a", "c", "d"]

    again = await store.add_conversation_events([event("s1", "c1")])
    assert again[0].sequence == 6


async def test_batch_accepts_any_sequence(store: Store) -> None:
    await new_session(store, "s1", "c1")
    batch = tuple(event("s1", "c1", content=str(i)) for i in range(3))
    result = await store.add_conversation_events(batch)
    assert sequences(result) == [1, 2, 3]
    assert isinstance(result, list)


async def test_empty_batch_returns_empty_list(store: Store) -> None:
    assert await store.add_conversation_events([]) == []
    assert await store.get_event_count() == 0


async def test_batch_with_an_invalid_event_writes_nothing(store: Store) -> None:
    await new_session(store, "s1", "c1")
    await store.add_conversation_event(event("s1", "c1"))
    batch = [event("s1", "c1"), event("s1", "c1", event_type="bogus"), event("s1", "c1")]
    with pytest.raises(InvalidStatusError):
        await store.add_conversation_events(batch)
    assert await store.get_event_count() == 1
    assert [e.id for e in batch] == [None, None, None]
    assert await store.add_conversation_events([event("s1", "c1")]) != []
    assert sequences(await store.get_conversation("c1")) == [1, 2]


async def test_batch_with_a_wrongly_typed_event_writes_nothing(store: Store) -> None:
    await new_session(store, "s1", "c1")
    bad = event("s1", "c1")
    bad.content = 5  # type: ignore[assignment]
    with pytest.raises(InvalidValueError):
        await store.add_conversation_events([event("s1", "c1"), bad])
    assert await store.get_event_count() == 0


async def test_batch_with_a_missing_session_writes_nothing(store: Store) -> None:
    await new_session(store, "s1", "c1")
    await store.add_conversation_event(event("s1", "c1"))
    batch = [event("s1", "c1"), event("s1", "c2"), event("ghost", "c1"), event("s1", "c1")]
    with pytest.raises(NotFoundError) as info:
        await store.add_conversation_events(batch)
    assert info.value.id == "ghost"
    assert await store.get_event_count() == 1
    assert await store.get_conversation("c2") == []
    assert [e.id for e in batch] == [None, None, None, None]
    # Nothing of the failed batch took a sequence number.
    assert (await store.add_conversation_event(event("s1", "c1"))).sequence == 2


# --- get_conversation ---------------------------------------------------------------------


async def _ten_events(store: Store) -> None:
    await new_session(store, "s1", "c1")
    await new_session(store, "s2", "c2")
    for i in range(1, 11):
        await store.add_conversation_event(event("s1", "c1", content=f"m{i}"))
        await store.add_conversation_event(event("s2", "c2", content=f"other{i}"))


async def test_get_conversation_ascending_by_sequence(store: Store) -> None:
    await _ten_events(store)
    got = await store.get_conversation("c1")
    assert sequences(got) == list(range(1, 11))
    assert [e.content for e in got] == [f"m{i}" for i in range(1, 11)]
    assert {e.claude_session_id for e in got} == {"c1"}


async def test_get_conversation_unknown_is_empty(store: Store) -> None:
    await _ten_events(store)
    assert await store.get_conversation("c-unknown") == []


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"after_sequence": 3}, list(range(4, 11))),
        ({"before_sequence": 4}, [1, 2, 3]),
        ({"after_sequence": 2, "before_sequence": 6}, [3, 4, 5]),
        ({"limit": 3}, [8, 9, 10]),
        ({"limit": 20}, list(range(1, 11))),
        ({"limit": 0}, []),
        ({"after_sequence": 2, "limit": 3}, [3, 4, 5]),
        ({"after_sequence": 9, "limit": 3}, [10]),
        ({"before_sequence": 6, "limit": 2}, [4, 5]),
        ({"after_sequence": 1, "before_sequence": 9, "limit": 2}, [2, 3]),
        ({"after_sequence": 10}, []),
        ({"before_sequence": 1}, []),
        ({"after_sequence": 0}, list(range(1, 11))),
    ],
)
async def test_get_conversation_pages(
    store: Store, kwargs: dict[str, int], expected: list[int]
) -> None:
    await _ten_events(store)
    got = await store.get_conversation("c1", **kwargs)
    assert sequences(got) == expected
    assert [e.content for e in got] == [f"m{i}" for i in expected]


async def test_get_conversation_pages_cover_history_without_overlap(store: Store) -> None:
    await _ten_events(store)
    seen: list[int] = []
    after = 0
    while True:
        page = await store.get_conversation("c1", after_sequence=after, limit=3)
        if not page:
            break
        seen.extend(sequences(page))
        after = page[-1].sequence
    assert seen == list(range(1, 11))

    backwards: list[int] = []
    page = await store.get_conversation("c1", limit=4)
    while page:
        backwards = sequences(page) + backwards
        page = await store.get_conversation("c1", before_sequence=page[0].sequence, limit=4)
    assert backwards == list(range(1, 11))


async def test_get_conversation_refuses_a_negative_limit(store: Store) -> None:
    await _ten_events(store)
    with pytest.raises(InvalidValueError):
        await store.get_conversation("c1", limit=-1)


async def test_get_conversation_gives_the_stored_claude_id_on_every_path(store: Store) -> None:
    # The fast path does not read claude_session_id back per row: it must still be the
    # stored value, a plain str, also when asked with a str subclass (a StrEnum, say).
    class ClaudeId(str):
        pass

    await _ten_events(store)
    asked = ClaudeId("c1")
    for got in (
        await store.get_conversation(asked),
        await store.get_conversation(asked, limit=2),
    ):
        assert got and all(type(e.claude_session_id) is str for e in got)
        assert {e.claude_session_id for e in got} == {"c1"}
    async with store.transaction() as tx:
        inside = await tx.conversations.get_conversation("c1")
    assert [e.__dict__ for e in inside] == [e.__dict__ for e in await store.get_conversation("c1")]


@pytest.mark.parametrize("bad", [1, None, b"c1"])
async def test_get_conversation_refuses_a_claude_id_that_is_not_text(
    store: Store, bad: object
) -> None:
    await _ten_events(store)
    with pytest.raises(InvalidValueError, match="claude_session_id"):
        await store.get_conversation(bad)  # type: ignore[arg-type]


# --- get_session_conversation -------------------------------------------------------------


async def test_session_conversation_walks_the_resume_chain(store: Store) -> None:
    await new_session(store, "root", "c-root")
    await new_session(store, "mid", "c-mid", parent="root")
    await new_session(store, "leaf", "c-leaf", parent="mid")
    await new_session(store, "other", "c-other")
    # Interleave the appends so that insertion order differs from chain order.
    await store.add_conversation_event(event("leaf", "c-leaf", content="leaf1"))
    await store.add_conversation_event(event("root", "c-root", content="root1"))
    await store.add_conversation_event(event("other", "c-other", content="other1"))
    await store.add_conversation_event(event("mid", "c-mid", content="mid1"))
    await store.add_conversation_event(event("leaf", "c-leaf", content="leaf2"))
    await store.add_conversation_event(event("root", "c-root", content="root2"))
    await store.add_conversation_event(event("mid", "c-mid", content="mid2"))

    got = await store.get_session_conversation("leaf")
    assert [e.content for e in got] == ["root1", "root2", "mid1", "mid2", "leaf1", "leaf2"]

    assert [e.content for e in await store.get_session_conversation("mid")] == [
        "root1",
        "root2",
        "mid1",
        "mid2",
    ]
    assert [e.content for e in await store.get_session_conversation("root")] == [
        "root1",
        "root2",
    ]


async def test_session_conversation_of_an_unknown_session(store: Store) -> None:
    with pytest.raises(NotFoundError) as info:
        await store.get_session_conversation("nope")
    assert info.value.id == "nope"
    assert isinstance(info.value, LookupError)


async def test_session_conversation_without_claude_ids_is_empty(store: Store) -> None:
    await new_session(store, "root")
    await new_session(store, "child", parent="root")
    # Events with an empty claude id exist, but the chain names no claude session.
    await store.add_conversation_event(event("child", ""))
    assert await store.get_session_conversation("child") == []


async def test_session_conversation_with_a_missing_parent(store: Store) -> None:
    await new_session(store, "orphan", "c-orphan", parent="deleted-parent")
    await store.add_conversation_event(event("orphan", "c-orphan", content="mine"))
    got = await store.get_session_conversation("orphan")
    assert [e.content for e in got] == ["mine"]


async def test_session_conversation_skips_ancestors_without_claude_id(store: Store) -> None:
    await new_session(store, "root", "c-root")
    await new_session(store, "draft", "", parent="root")
    await new_session(store, "leaf", "c-leaf", parent="draft")
    await store.add_conversation_event(event("leaf", "c-leaf", content="leaf1"))
    await store.add_conversation_event(event("root", "c-root", content="root1"))
    got = await store.get_session_conversation("leaf")
    assert [e.content for e in got] == ["root1", "leaf1"]


async def test_session_conversation_with_a_repeated_claude_id(store: Store) -> None:
    await new_session(store, "root", "c-same")
    await new_session(store, "child", "c-same", parent="root")
    await store.add_conversation_event(event("root", "c-same", content="one"))
    await store.add_conversation_event(event("child", "c-same", content="two"))
    got = await store.get_session_conversation("child")
    assert [e.content for e in got] == ["one", "two"]


async def test_session_conversation_survives_a_parent_cycle(store: Store) -> None:
    await new_session(store, "a", "c-a", parent="b")
    await new_session(store, "b", "c-b", parent="a")
    await store.add_conversation_event(event("a", "c-a", content="a1"))
    await store.add_conversation_event(event("b", "c-b", content="b1"))
    got = await store.get_session_conversation("a")
    assert [e.content for e in got] == ["b1", "a1"]


# --- tool calls ---------------------------------------------------------------------------


async def _tool_calls(store: Store) -> dict[str, ConversationEvent]:
    """s1 has calls t1 (Bash), t2 (Edit), t3 (Bash), a result for t1 and a message."""
    await new_session(store, "s1", "c1")
    await new_session(store, "s2", "c2")
    calls = {
        "t1": await store.add_conversation_event(tool_call("s1", "c1", "t1", "Bash")),
        "t2": await store.add_conversation_event(tool_call("s1", "c1", "t2", "Edit")),
        "t3": await store.add_conversation_event(tool_call("s1", "c1", "t3", "Bash")),
        "other": await store.add_conversation_event(tool_call("s2", "c2", "t9", "Bash")),
    }
    await store.add_conversation_event(
        event(
            "s1",
            "c1",
            event_type=EventType.TOOL_RESULT,
            tool_result_for_id="t1",
            tool_result_content="ok",
            tool_id="t1",
            tool_name="Bash",
        )
    )
    await store.add_conversation_event(event("s1", "c1", content="done?"))
    return calls


async def _event(store: Store, event_id: int | None) -> ConversationEvent:
    for claude_id in ("c1", "c2"):
        for e in await store.get_conversation(claude_id):
            if e.id == event_id:
                return e
    raise AssertionError(f"event {event_id} not stored")


async def test_get_pending_tool_call_is_the_latest_uncompleted(store: Store) -> None:
    calls = await _tool_calls(store)
    got = await store.get_pending_tool_call("s1", "Bash")
    assert got is not None
    assert got.id == calls["t3"].id
    assert got.tool_id == "t3"
    assert got.event_type == "tool_call"

    await store.mark_tool_call_completed("t3", "s1")
    got = await store.get_pending_tool_call("s1", "Bash")
    assert got is not None and got.tool_id == "t1"

    await store.mark_tool_call_completed("t1", "s1")
    assert await store.get_pending_tool_call("s1", "Bash") is None
    assert await store.get_pending_tool_call("s1", "Write") is None
    assert await store.get_pending_tool_call("nope", "Bash") is None
    edit = await store.get_pending_tool_call("s1", "Edit")
    assert edit is not None and edit.tool_id == "t2"


async def test_get_pending_tool_calls_newest_first(store: Store) -> None:
    await _tool_calls(store)
    assert [e.tool_id for e in await store.get_pending_tool_calls("s1")] == ["t3", "t2", "t1"]
    await store.mark_tool_call_completed("t2", "s1")
    assert [e.tool_id for e in await store.get_pending_tool_calls("s1")] == ["t3", "t1"]
    assert [e.tool_id for e in await store.get_pending_tool_calls("s2")] == ["t9"]
    assert await store.get_pending_tool_calls("nope") == []


async def test_get_uncorrelated_pending_tool_call(store: Store) -> None:
    await _tool_calls(store)
    got = await store.get_uncorrelated_pending_tool_call("s1", "Bash")
    assert got is not None and got.tool_id == "t3"

    await store.correlate_approval("s1", "Bash", "a1")
    got = await store.get_uncorrelated_pending_tool_call("s1", "Bash")
    assert got is not None and got.tool_id == "t1"

    await store.mark_tool_call_completed("t1", "s1")
    assert await store.get_uncorrelated_pending_tool_call("s1", "Bash") is None
    assert await store.get_uncorrelated_pending_tool_call("s1", "Grep") is None


async def test_get_tool_call_by_id(store: Store) -> None:
    calls = await _tool_calls(store)
    got = await store.get_tool_call_by_id("t2")
    assert got is not None
    assert got.id == calls["t2"].id
    assert got.tool_name == "Edit"
    assert got.session_id == "s1"
    # Across sessions, and completed calls too.
    await store.mark_tool_call_completed("t9", "s2")
    other = await store.get_tool_call_by_id("t9")
    assert other is not None and other.session_id == "s2" and other.is_completed is True
    assert await store.get_tool_call_by_id("nope") is None


async def test_get_tool_call_by_id_ignores_other_event_types(store: Store) -> None:
    await new_session(store, "s1", "c1")
    await store.add_conversation_event(
        event("s1", "c1", event_type=EventType.TOOL_RESULT, tool_id="t-result")
    )
    assert await store.get_tool_call_by_id("t-result") is None


async def test_mark_tool_call_completed(store: Store) -> None:
    calls = await _tool_calls(store)
    await store.mark_tool_call_completed("t2", "s1")
    assert (await _event(store, calls["t2"].id)).is_completed is True
    assert (await _event(store, calls["t1"].id)).is_completed is False
    assert (await _event(store, calls["t3"].id)).is_completed is False

    # The session must match: t9 belongs to s2.
    await store.mark_tool_call_completed("t9", "s1")
    assert (await _event(store, calls["other"].id)).is_completed is False

    # No match: no error, nothing changes.
    before = [(e.id, e.is_completed) for e in await store.get_conversation("c1")]
    await store.mark_tool_call_completed("nope", "s1")
    await store.mark_tool_call_completed("t1", "nope")
    assert [(e.id, e.is_completed) for e in await store.get_conversation("c1")] == before
    assert await store.get_event_count() == 6


async def test_mark_tool_call_completed_leaves_results_alone(store: Store) -> None:
    await _tool_calls(store)
    await store.mark_tool_call_completed("t1", "s1")
    [result] = [
        e for e in await store.get_conversation("c1") if e.event_type == EventType.TOOL_RESULT
    ]
    assert result.is_completed is False


async def test_correlate_approval_sets_the_latest_pending_call(store: Store) -> None:
    calls = await _tool_calls(store)
    await store.correlate_approval("s1", "Bash", "a1")
    t3 = await _event(store, calls["t3"].id)
    assert (t3.approval_status, t3.approval_id) == ("pending", "a1")
    t1 = await _event(store, calls["t1"].id)
    assert (t1.approval_status, t1.approval_id) == ("", "")
    other = await _event(store, calls["other"].id)
    assert (other.approval_status, other.approval_id) == ("", "")


async def test_correlate_approval_does_nothing_if_the_call_has_a_status(store: Store) -> None:
    calls = await _tool_calls(store)
    await store.correlate_approval("s1", "Bash", "a1")
    # The latest pending Bash call already has a status: nothing changes, and the seed does
    # not fall back to the older call t1.
    await store.correlate_approval("s1", "Bash", "a2")
    t3 = await _event(store, calls["t3"].id)
    assert (t3.approval_status, t3.approval_id) == ("pending", "a1")
    t1 = await _event(store, calls["t1"].id)
    assert (t1.approval_status, t1.approval_id) == ("", "")


async def test_correlate_approval_without_a_pending_call(store: Store) -> None:
    await _tool_calls(store)
    before = await store.get_conversation("c1")
    await store.correlate_approval("s1", "Write", "a1")
    await store.correlate_approval("nope", "Bash", "a1")
    for tool_id in ("t1", "t3"):
        await store.mark_tool_call_completed(tool_id, "s1")
    await store.correlate_approval("s1", "Bash", "a1")
    after = await store.get_conversation("c1")
    assert [(e.approval_status, e.approval_id) for e in after] == [
        (e.approval_status, e.approval_id) for e in before
    ]


async def test_link_approval_using_tool_id(store: Store) -> None:
    calls = await _tool_calls(store)
    await store.link_conversation_event_to_approval_using_tool_id("s1", "t1", "a1")
    t1 = await _event(store, calls["t1"].id)
    assert (t1.approval_status, t1.approval_id) == ("pending", "a1")
    t3 = await _event(store, calls["t3"].id)
    assert (t3.approval_status, t3.approval_id) == ("", "")

    # Already correlated: left alone.
    await store.link_conversation_event_to_approval_using_tool_id("s1", "t1", "a2")
    assert (await _event(store, calls["t1"].id)).approval_id == "a1"

    # Completed: left alone.
    await store.mark_tool_call_completed("t2", "s1")
    await store.link_conversation_event_to_approval_using_tool_id("s1", "t2", "a3")
    assert (await _event(store, calls["t2"].id)).approval_id == ""

    # Another session's tool id: left alone; unknown ids: no error.
    await store.link_conversation_event_to_approval_using_tool_id("s1", "t9", "a4")
    assert (await _event(store, calls["other"].id)).approval_id == ""
    await store.link_conversation_event_to_approval_using_tool_id("s1", "nope", "a5")
    await store.link_conversation_event_to_approval_using_tool_id("nope", "t3", "a5")
    assert (await _event(store, calls["t3"].id)).approval_id == ""


async def test_update_approval_status(store: Store) -> None:
    calls = await _tool_calls(store)
    await store.link_conversation_event_to_approval_using_tool_id("s1", "t1", "a1")
    await store.link_conversation_event_to_approval_using_tool_id("s1", "t3", "a3")

    await store.update_approval_status("a1", "approved")
    assert (await _event(store, calls["t1"].id)).approval_status == "approved"
    assert (await _event(store, calls["t3"].id)).approval_status == "pending"

    # "resolved" only replaces "pending".
    await store.update_approval_status("a1", "resolved")
    assert (await _event(store, calls["t1"].id)).approval_status == "approved"
    await store.update_approval_status("a3", "resolved")
    assert (await _event(store, calls["t3"].id)).approval_status == "resolved"

    # Any other status overwrites unconditionally.
    await store.update_approval_status("a1", "denied")
    assert (await _event(store, calls["t1"].id)).approval_status == "denied"
    await store.update_approval_status("a3", "pending")
    assert (await _event(store, calls["t3"].id)).approval_status == "pending"

    # Unknown approval id: no error, nothing changes.
    await store.update_approval_status("nope", "approved")
    assert (await _event(store, calls["t2"].id)).approval_status == ""


async def test_update_approval_status_refuses_an_unknown_status(store: Store) -> None:
    calls = await _tool_calls(store)
    await store.link_conversation_event_to_approval_using_tool_id("s1", "t1", "a1")
    with pytest.raises(InvalidStatusError):
        await store.update_approval_status("a1", "bogus")
    with pytest.raises(StoreError):
        await store.update_approval_status("a1", "")
    assert (await _event(store, calls["t1"].id)).approval_status == "pending"


async def test_update_approval_status_updates_every_linked_event(store: Store) -> None:
    await new_session(store, "s1", "c1")
    a = await store.add_conversation_event(
        tool_call("s1", "c1", "t1", "Bash", approval_status="pending", approval_id="a1")
    )
    b = await store.add_conversation_event(
        tool_call("s1", "c1", "t2", "Bash", approval_status="pending", approval_id="a1")
    )
    await store.update_approval_status("a1", "approved")
    assert (await _event(store, a.id)).approval_status == "approved"
    assert (await _event(store, b.id)).approval_status == "approved"


# --- detached values ----------------------------------------------------------------------


async def test_returned_events_are_detached_values(store: Store) -> None:
    await new_session(store, "s1", "c1")
    given = await store.add_conversation_event(event("s1", "c1", content="original"))
    # Changing the object given to the store changes nothing stored.
    given.content = "changed after add"

    [got] = await store.get_conversation("c1")
    assert got.content == "original"
    got.content = "mutated"
    got.sequence = 99
    got.is_completed = True

    [again] = await store.get_conversation("c1")
    assert (again.content, again.sequence, again.is_completed) == ("original", 1, False)
    assert again is not got

    pending = await store.add_conversation_event(tool_call("s1", "c1", "t1", "Bash"))
    call = await store.get_tool_call_by_id("t1")
    assert call is not None and call.id == pending.id
    call.is_completed = True
    call.tool_name = "Changed"
    fresh = await store.get_pending_tool_call("s1", "Bash")
    assert fresh is not None and fresh.is_completed is False and fresh.tool_name == "Bash"


async def test_returned_events_are_readable_after_close(db_url: str) -> None:
    opened = await Store.open(db_url)
    try:
        await new_session(opened, "s1", "c1")
        await opened.add_conversation_event(event("s1", "c1", content="hello"))
        events = await opened.get_conversation("c1")
    finally:
        await opened.close()
    # Every attribute is loaded: reading needs no database.
    [e] = events
    assert (e.content, e.sequence, e.session_id) == ("hello", 1, "s1")
    assert e.created_at <= datetime.now(UTC)


async def test_batch_ids_are_the_stored_ids_after_deletions(store: Store) -> None:
    # Deleted rows leave AUTOINCREMENT's counter above MAX(id); the ids set on a batch must
    # still be exactly the ids the rows got.
    await store.create_session(Session(id="gone", run_id="r-gone", query="q"))
    await store.add_conversation_events(
        [
            ConversationEvent(session_id="gone", claude_session_id="cg", event_type="message")
            for _ in range(5)
        ]
    )
    await store.hard_delete_session("gone")
    await store.create_session(Session(id="kept", run_id="r-kept", query="q"))
    added = await store.add_conversation_events(
        [
            ConversationEvent(
                session_id="kept", claude_session_id="ck", event_type="message", content=f"m{i}"
            )
            for i in range(3)
        ]
    )
    stored = await store.get_conversation("ck")
    assert [(e.id, e.sequence, e.content) for e in added] == [
        (e.id, e.sequence, e.content) for e in stored
    ]
    assert all(e.id is not None and e.id > 5 for e in added)


async def test_a_batch_larger_than_one_insert_statement(store: Store) -> None:
    await store.create_session(Session(id="big", run_id="r-big", query="q"))
    await store.add_conversation_event(
        ConversationEvent(session_id="big", claude_session_id="cb", event_type="message")
    )
    added = await store.add_conversation_events(
        [
            ConversationEvent(
                session_id="big", claude_session_id="cb", event_type="message", content=f"m{i}"
            )
            for i in range(2_345)
        ]
    )
    stored = await store.get_conversation("cb")
    assert [e.sequence for e in stored] == list(range(1, 2_347))
    assert [(e.id, e.sequence, e.content) for e in added] == [
        (e.id, e.sequence, e.content) for e in stored[1:]
    ]
