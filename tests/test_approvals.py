"""Approvals: create, read, list pending, decide exactly once.

Every test runs on SQLite and PostgreSQL (the ``store`` fixture).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from agentstore import (
    AlreadyDecidedError,
    Approval,
    ApprovalStatus,
    DuplicateError,
    InvalidStatusError,
    InvalidValueError,
    NotFoundError,
    Session,
    Store,
)


async def new_session(store: Store, session_id: str = "s1") -> Session:
    return await store.create_session(Session(id=session_id, run_id=f"run-{session_id}", query="q"))


def approval(approval_id: str, session_id: str = "s1", **fields: Any) -> Approval:
    fields.setdefault("tool_name", "Bash")
    fields.setdefault("tool_input", {"command": "rm -rf build"})
    return Approval(id=approval_id, run_id=f"run-{session_id}", session_id=session_id, **fields)


# --- create / get -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tool_input",
    [
        {"command": "ls -la", "timeout": 30, "background": False},
        ["a", 1, 2.5, None, True],
        {"edits": [{"old": "x", "new": "y"}, {"old": "ä", "new": "ß"}], "meta": {"deep": [[1]]}},
        {"text": "héllo wörld ✓ 日本語 🚀👩‍💻", "emoji_key_🔑": "value"},
        "just a string",
        42,
        {},
        [],
        {"z": 1, "a": 2, "m": 3},
    ],
)
async def test_create_and_get_round_trip(store: Store, tool_input: Any) -> None:
    await new_session(store)
    created = datetime(2025, 1, 15, 10, 30, 0, 123456, tzinfo=UTC)
    given = approval("a1", tool_input=tool_input, created_at=created, comment="please")
    returned = await store.create_approval(given)
    assert returned is given

    got = await store.get_approval("a1")
    assert got == given
    assert got.tool_input == tool_input
    assert type(got.tool_input) is type(tool_input)
    if isinstance(tool_input, dict):
        assert list(got.tool_input) == list(tool_input)  # key order kept
    assert got.status == "pending"
    assert got.created_at == created
    assert got.responded_at is None
    assert got.comment == "please"
    assert got.session_id == "s1"
    assert got.run_id == "run-s1"
    assert got.tool_name == "Bash"
    assert await store.get_approval_count() == 1


async def test_tool_input_none_round_trips(store: Store) -> None:
    await new_session(store)
    await store.create_approval(approval("a1", tool_input=None))
    got = await store.get_approval("a1")
    assert got.tool_input is None


async def test_tool_use_id_none_or_set(store: Store) -> None:
    await new_session(store)
    await store.create_approval(approval("a-none"))
    await store.create_approval(approval("a-set", tool_use_id="toolu_01ABC"))
    assert (await store.get_approval("a-none")).tool_use_id is None
    assert (await store.get_approval("a-set")).tool_use_id == "toolu_01ABC"


async def test_defaults(store: Store) -> None:
    await new_session(store)
    before = datetime.now(UTC)
    a = Approval(id="a1", run_id="r", session_id="s1", tool_name="Bash", tool_input={})
    await store.create_approval(a)
    got = await store.get_approval("a1")
    assert got.status == ApprovalStatus.PENDING
    assert got.comment == ""
    assert got.tool_use_id is None
    assert got.responded_at is None
    assert got.created_at.utcoffset() == timedelta(0)
    assert got.created_at >= before - timedelta(seconds=1)


async def test_created_at_in_another_zone_reads_back_as_the_same_instant(store: Store) -> None:
    await new_session(store)
    created = datetime(2025, 1, 15, 10, 30, 0, 5, tzinfo=timezone(timedelta(hours=-8)))
    await store.create_approval(approval("a1", created_at=created))
    got = await store.get_approval("a1")
    assert got.created_at == created
    assert got.created_at.utcoffset() == timedelta(0)
    assert got.created_at.hour == 18


@pytest.mark.parametrize("status", ["approved", "denied", ApprovalStatus.DENIED])
async def test_create_an_already_decided_approval(store: Store, status: str) -> None:
    await new_session(store)
    await store.create_approval(approval("a1", status=status))
    got = await store.get_approval("a1")
    assert got.status == str(status)
    assert await store.get_pending_approvals("s1") == []


async def test_duplicate_keeps_the_original(store: Store) -> None:
    await new_session(store)
    await store.create_approval(approval("a1", tool_name="Bash", tool_input={"v": 1}))
    with pytest.raises(DuplicateError) as info:
        await store.create_approval(
            approval("a1", tool_name="Edit", tool_input={"v": 2}, status="approved")
        )
    assert info.value.id == "a1"
    got = await store.get_approval("a1")
    assert (got.tool_name, got.tool_input, got.status) == ("Bash", {"v": 1}, "pending")
    assert await store.get_approval_count() == 1


async def test_get_unknown_approval(store: Store) -> None:
    with pytest.raises(NotFoundError) as info:
        await store.get_approval("nope")
    assert isinstance(info.value, LookupError)
    assert (info.value.kind, info.value.id) == ("approval", "nope")


async def test_create_for_an_unknown_session(store: Store) -> None:
    with pytest.raises(NotFoundError) as info:
        await store.create_approval(approval("a1", session_id="ghost"))
    assert info.value.id == "ghost"
    assert await store.get_approval_count() == 0


@pytest.mark.parametrize("status", ["bogus", "", "resolved", "PENDING"])
async def test_create_refuses_an_invalid_status(store: Store, status: str) -> None:
    await new_session(store)
    with pytest.raises(InvalidStatusError):
        await store.create_approval(approval("a1", status=status))
    assert await store.get_approval_count() == 0


async def test_create_refuses_a_status_that_is_not_a_string(store: Store) -> None:
    await new_session(store)
    for status in (None, 1):
        with pytest.raises(InvalidValueError):
            await store.create_approval(approval("a1", status=status))
    assert await store.get_approval_count() == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", ""),
        ("session_id", ""),
        ("tool_name", 5),
        ("tool_input", {1, 2}),  # not JSON
        ("created_at", datetime(2025, 1, 1)),  # naive
        ("tool_use_id", 12),
        ("comment", None),
    ],
)
async def test_create_refuses_bad_values(store: Store, field: str, value: object) -> None:
    await new_session(store)
    a = approval("a1")
    setattr(a, field, value)
    with pytest.raises(InvalidValueError):
        await store.create_approval(a)
    assert await store.get_approval_count() == 0


# --- pending ------------------------------------------------------------------------------


async def test_pending_approvals_oldest_first_by_instant(store: Store) -> None:
    await new_session(store)
    await new_session(store, "s2")
    # As text the local times sort b, a, c; as instants they sort c, a, b.
    a = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)  # 12:00Z
    b = datetime(2025, 1, 15, 10, 0, tzinfo=timezone(timedelta(hours=-8)))  # 18:00Z
    c = datetime(2025, 1, 15, 20, 0, tzinfo=timezone(timedelta(hours=10)))  # 10:00Z
    d = datetime(2025, 1, 15, 11, 0, tzinfo=UTC)  # decided: left out
    await store.create_approval(approval("b", created_at=b))
    await store.create_approval(approval("a", created_at=a))
    await store.create_approval(approval("c", created_at=c))
    await store.create_approval(approval("d", created_at=d, status="approved"))
    await store.create_approval(approval("other", session_id="s2", created_at=a))

    pending = await store.get_pending_approvals("s1")
    assert [p.id for p in pending] == ["c", "a", "b"]
    assert [p.created_at for p in pending] == [c, a, b]
    assert all(p.status == "pending" for p in pending)

    await store.update_approval_response("a", "denied", "no")
    assert [p.id for p in await store.get_pending_approvals("s1")] == ["c", "b"]
    assert await store.get_pending_approvals("nope") == []


async def test_pending_approvals_order_hld_written_timestamps(store: Store) -> None:
    """Rows written by hld (Go's text with nanoseconds and an offset) sort by instant too."""
    await new_session(store)
    # Raw SQL, as hld writes it: on SQLite the text is stored as is, PostgreSQL parses it.
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO approvals (id, run_id, session_id, status, created_at, tool_name, "
                "tool_input, comment) VALUES "
                "('late', 'r', 's1', 'pending', '2025-01-15 10:30:00.123456089-08:00', 'Bash', "
                "'{}', ''), "
                "('early', 'r', 's1', 'pending', '2025-01-15 12:00:00', 'Bash', '{}', ''), "
                "('middle', 'r', 's1', 'pending', '2025-01-15 18:30:00.5+02:00', 'Bash', '{}', '')"
            )
        )
    pending = await store.get_pending_approvals("s1")
    assert [p.id for p in pending] == ["early", "middle", "late"]
    assert pending[2].created_at == datetime(2025, 1, 15, 18, 30, 0, 123456, tzinfo=UTC)
    assert pending[0].created_at == datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
    assert pending[1].created_at == datetime(2025, 1, 15, 16, 30, 0, 500000, tzinfo=UTC)


# --- decide -------------------------------------------------------------------------------


@pytest.mark.parametrize("decision", ["approved", "denied", ApprovalStatus.APPROVED])
async def test_update_approval_response(store: Store, decision: str) -> None:
    await new_session(store)
    await store.create_approval(approval("a1"))
    before = datetime.now(UTC) - timedelta(seconds=1)
    decided = await store.update_approval_response("a1", decision, "looks fine")
    assert decided.status == str(decision)
    assert decided.comment == "looks fine"
    assert decided.responded_at is not None
    assert decided.responded_at.utcoffset() == timedelta(0)
    assert decided.responded_at >= before

    got = await store.get_approval("a1")
    assert got.status == str(decision)
    assert got.comment == "looks fine"
    assert got.responded_at == decided.responded_at
    assert got.tool_input == {"command": "rm -rf build"}
    assert await store.get_pending_approvals("s1") == []


async def test_update_approval_response_overwrites_comment_with_empty(store: Store) -> None:
    await new_session(store)
    await store.create_approval(approval("a1", comment="asked politely"))
    await store.update_approval_response("a1", "approved")
    assert (await store.get_approval("a1")).comment == ""


async def test_second_decision_is_refused_and_the_first_stands(store: Store) -> None:
    await new_session(store)
    await store.create_approval(approval("a1"))
    first = await store.update_approval_response("a1", "approved", "yes")
    with pytest.raises(AlreadyDecidedError) as info:
        await store.update_approval_response("a1", "denied", "no")
    assert info.value.id == "a1"
    assert info.value.status == "approved"
    with pytest.raises(AlreadyDecidedError):
        await store.update_approval_response("a1", "approved", "again")
    got = await store.get_approval("a1")
    assert (got.status, got.comment, got.responded_at) == ("approved", "yes", first.responded_at)


async def test_deciding_an_approval_created_decided_is_refused(store: Store) -> None:
    await new_session(store)
    await store.create_approval(approval("a1", status="denied", comment="auto"))
    with pytest.raises(AlreadyDecidedError) as info:
        await store.update_approval_response("a1", "approved", "")
    assert info.value.status == "denied"
    assert (await store.get_approval("a1")).comment == "auto"


async def test_deciding_an_unknown_approval(store: Store) -> None:
    await new_session(store)
    with pytest.raises(NotFoundError) as info:
        await store.update_approval_response("nope", "approved", "")
    assert info.value.id == "nope"
    assert await store.get_approval_count() == 0


@pytest.mark.parametrize("status", ["pending", "bogus", "", "resolved", "Approved", None, 1])
async def test_deciding_with_an_invalid_status(store: Store, status: Any) -> None:
    await new_session(store)
    await store.create_approval(approval("a1"))
    with pytest.raises(InvalidStatusError):
        await store.update_approval_response("a1", status, "x")
    got = await store.get_approval("a1")
    assert (got.status, got.comment, got.responded_at) == ("pending", "", None)


async def test_deciding_with_a_non_string_comment(store: Store) -> None:
    await new_session(store)
    await store.create_approval(approval("a1"))
    bad: Any = 5
    with pytest.raises(InvalidValueError):
        await store.update_approval_response("a1", "approved", bad)
    assert (await store.get_approval("a1")).status == "pending"


async def test_returned_approvals_are_detached(store: Store) -> None:
    await new_session(store)
    given = approval("a1", tool_input={"list": [1, 2]})
    await store.create_approval(given)
    given.tool_input["list"].append(3)
    given.tool_name = "Changed"

    got = await store.get_approval("a1")
    assert got.tool_input == {"list": [1, 2]}
    assert got.tool_name == "Bash"
    got.status = "approved"
    got.tool_input["list"].clear()
    [pending] = await store.get_pending_approvals("s1")
    assert pending.status == "pending"
    assert pending.tool_input == {"list": [1, 2]}
