"""File snapshots, raw events and MCP servers, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from agentstore import (
    FileSnapshot,
    InvalidValueError,
    MCPServer,
    NotFoundError,
    Session,
    Store,
)


async def new_session(store: Store, session_id: str = "s1") -> Session:
    return await store.create_session(Session(id=session_id, run_id=f"run-{session_id}", query="q"))


# --- file snapshots -----------------------------------------------------------------------


async def test_create_file_snapshot_sets_id_and_round_trips(store: Store) -> None:
    await new_session(store)
    snap = FileSnapshot(tool_id="t1", session_id="s1", file_path="/src/main.py", content="x = 1\n")
    returned = await store.create_file_snapshot(snap)
    assert returned is snap
    assert isinstance(snap.id, int)

    second = await store.create_file_snapshot(
        FileSnapshot(tool_id="t2", session_id="s1", file_path="/src/b.py", content="")
    )
    assert isinstance(second.id, int) and second.id != snap.id

    got = {s.id: s for s in await store.get_file_snapshots("s1")}
    assert got[snap.id] == snap
    assert got[second.id].content == ""
    assert got[snap.id].created_at.utcoffset() == timedelta(0)


async def test_large_and_non_ascii_content_round_trips(store: Store) -> None:
    await new_session(store)
    line = "def f(): return 'ünïcødé ✓ 日本語 🚀👩‍💻 \\t tab\\\\ quote\" ' # ßø\r\n"
    big = (line * (250_000 // len(line) + 1))[:250_000] + "🎉"
    assert len(big.encode("utf-8")) > 250_000
    odd = "emoji 🧪🧬 combining e\u0301 rtl \u05e9\u05dc\u05d5\u05dd zero-width \u200b end"
    a = await store.create_file_snapshot(
        FileSnapshot(tool_id="t1", session_id="s1", file_path="/big.py", content=big)
    )
    b = await store.create_file_snapshot(
        FileSnapshot(tool_id="t2", session_id="s1", file_path="/dïr/ファイル 🗂.txt", content=odd)
    )
    got = {s.id: s for s in await store.get_file_snapshots("s1")}
    assert got[a.id].content == big
    assert len(got[a.id].content) == len(big)
    assert got[b.id].content == odd
    assert got[b.id].file_path == "/dïr/ファイル 🗂.txt"


async def test_file_snapshots_newest_first_by_instant(store: Store) -> None:
    await new_session(store)
    await new_session(store, "s2")
    # Inserted out of order, in different zones: newest first means by instant.
    t_mid = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
    t_new = datetime(2025, 1, 15, 10, 0, tzinfo=timezone(timedelta(hours=-8)))  # 18:00Z
    t_old = datetime(2025, 1, 15, 20, 0, tzinfo=timezone(timedelta(hours=10)))  # 10:00Z
    for name, at in [("mid", t_mid), ("old", t_old), ("new", t_new)]:
        await store.create_file_snapshot(
            FileSnapshot(
                tool_id=name, session_id="s1", file_path=f"/{name}", content=name, created_at=at
            )
        )
    await store.create_file_snapshot(
        FileSnapshot(tool_id="x", session_id="s2", file_path="/x", content="x", created_at=t_new)
    )
    got = await store.get_file_snapshots("s1")
    assert [s.tool_id for s in got] == ["new", "mid", "old"]
    assert [s.created_at for s in got] == [t_new, t_mid, t_old]
    assert [s.tool_id for s in await store.get_file_snapshots("s2")] == ["x"]


async def test_file_snapshots_at_the_same_instant_latest_stored_first(store: Store) -> None:
    await new_session(store)
    at = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
    ids = []
    for i in range(3):
        snap = await store.create_file_snapshot(
            FileSnapshot(
                tool_id=f"t{i}", session_id="s1", file_path="/f", content="", created_at=at
            )
        )
        ids.append(snap.id)
    assert [s.id for s in await store.get_file_snapshots("s1")] == ids[::-1]


async def test_file_snapshots_of_an_unknown_session_are_empty(store: Store) -> None:
    await new_session(store)
    assert await store.get_file_snapshots("s1") == []
    assert await store.get_file_snapshots("nope") == []


async def test_file_snapshot_for_an_unknown_session_is_refused(store: Store) -> None:
    await new_session(store)
    snap = FileSnapshot(tool_id="t1", session_id="ghost", file_path="/f", content="c")
    with pytest.raises(NotFoundError) as info:
        await store.create_file_snapshot(snap)
    assert info.value.id == "ghost"
    assert snap.id is None
    assert await store.get_file_snapshots("ghost") == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("content", None),
        ("content", b"bytes"),
        ("file_path", 3),
        ("session_id", ""),
        ("created_at", datetime(2025, 1, 1)),
    ],
)
async def test_file_snapshot_bad_values_are_refused(
    store: Store, field: str, value: object
) -> None:
    await new_session(store)
    snap = FileSnapshot(tool_id="t1", session_id="s1", file_path="/f", content="c")
    setattr(snap, field, value)
    with pytest.raises(InvalidValueError):
        await store.create_file_snapshot(snap)
    assert await store.get_file_snapshots("s1") == []


async def test_returned_snapshots_are_detached(store: Store) -> None:
    await new_session(store)
    snap = await store.create_file_snapshot(
        FileSnapshot(tool_id="t1", session_id="s1", file_path="/f", content="original")
    )
    snap.content = "changed after create"
    [got] = await store.get_file_snapshots("s1")
    assert got.content == "original"
    got.content = "changed"
    [again] = await store.get_file_snapshots("s1")
    assert again.content == "original"


# --- raw events ---------------------------------------------------------------------------


async def test_store_raw_event(store: Store) -> None:
    await new_session(store)
    await new_session(store, "s2")
    payloads = [
        json.dumps({"type": "system", "subtype": "init", "session_id": "c1"}),
        json.dumps({"type": "assistant", "text": "héllo 🚀"}, ensure_ascii=False),
        '{"not": "reformatted",   "spacing":[1,  2]}',
    ]
    for payload in payloads:
        await store.store_raw_event("s1", payload)
    await store.store_raw_event("s2", "{}")

    stored = await store.raw_events.list("s1")
    assert [r.event_json for r in stored] == payloads
    assert all(r.session_id == "s1" for r in stored)
    assert all(isinstance(r.id, int) for r in stored)
    assert len({r.id for r in stored}) == 3
    assert all(r.created_at.utcoffset() == timedelta(0) for r in stored)
    assert [r.event_json for r in await store.raw_events.list("s2")] == ["{}"]
    assert await store.raw_events.list("nope") == []


async def test_store_raw_event_returns_the_row_from_the_repository(store: Store) -> None:
    await new_session(store)
    raw = await store.raw_events.store("s1", '{"a":1}')
    assert isinstance(raw.id, int)
    [stored] = await store.raw_events.list("s1")
    assert stored.id == raw.id
    assert stored.event_json == '{"a":1}'


async def test_store_raw_event_for_an_unknown_session(store: Store) -> None:
    await new_session(store)
    with pytest.raises(NotFoundError) as info:
        await store.store_raw_event("ghost", "{}")
    assert info.value.id == "ghost"
    assert await store.raw_events.list("ghost") == []


async def test_store_raw_event_refuses_non_text(store: Store) -> None:
    await new_session(store)
    bad: Any = {"type": "system"}
    with pytest.raises(InvalidValueError):
        await store.store_raw_event("s1", bad)
    with pytest.raises(InvalidValueError):
        await store.store_raw_event("", "{}")
    assert await store.raw_events.list("s1") == []


# --- MCP servers --------------------------------------------------------------------------


async def test_store_and_get_mcp_servers(store: Store) -> None:
    await new_session(store)
    await new_session(store, "s2")
    servers = [
        MCPServer(name="zeta", command="npx", args_json='["-y","zeta"]', env_json='{"K":"v"}'),
        MCPServer(name="alpha", command="http", args_json='["https://x"]', env_json="{}"),
    ]
    stored = await store.store_mcp_servers("s1", servers)
    assert [s.session_id for s in stored] == ["s1", "s1"]
    assert all(isinstance(s.id, int) for s in stored)

    got = await store.get_mcp_servers("s1")
    assert [(s.name, s.command, s.args_json, s.env_json) for s in got] == [
        ("zeta", "npx", '["-y","zeta"]', '{"K":"v"}'),
        ("alpha", "http", '["https://x"]', "{}"),
    ]
    assert [s.id for s in got] == [s.id for s in servers]
    assert await store.get_mcp_servers("s2") == []
    assert await store.get_mcp_servers("nope") == []


async def test_store_mcp_servers_appends(store: Store) -> None:
    await new_session(store)
    await store.store_mcp_servers("s1", [MCPServer(name="one", command="a")])
    await store.store_mcp_servers("s1", [MCPServer(name="two", command="b")])
    assert await store.store_mcp_servers("s1", []) == []
    assert [s.name for s in await store.get_mcp_servers("s1")] == ["one", "two"]


async def test_store_mcp_servers_uses_the_given_session(store: Store) -> None:
    await new_session(store)
    await new_session(store, "s2")
    await store.store_mcp_servers("s1", [MCPServer(session_id="s2", name="one", command="a")])
    assert [s.name for s in await store.get_mcp_servers("s1")] == ["one"]
    assert await store.get_mcp_servers("s2") == []


async def test_store_mcp_servers_for_an_unknown_session(store: Store) -> None:
    await new_session(store)
    with pytest.raises(NotFoundError):
        await store.store_mcp_servers("ghost", [MCPServer(name="one", command="a")])
    assert await store.get_mcp_servers("ghost") == []


async def test_store_mcp_servers_bad_values_write_nothing(store: Store) -> None:
    await new_session(store)
    bad = MCPServer(name="two", command="b")
    bad.args_json = ["not", "text"]  # type: ignore[assignment]
    with pytest.raises(InvalidValueError):
        await store.store_mcp_servers("s1", [MCPServer(name="one", command="a"), bad])
    assert await store.get_mcp_servers("s1") == []


async def test_mcp_server_empty_json_reads_as_empty_string(store: Store) -> None:
    await new_session(store)
    await store.store_mcp_servers("s1", [MCPServer(name="bare", command="run")])
    [got] = await store.get_mcp_servers("s1")
    assert (got.args_json, got.env_json) == ("", "")
