"""Sessions: create, read, update, delete, list, search and the session queries.

Every test runs on SQLite and (when configured) PostgreSQL through the ``store`` fixture.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from agentstore import (
    UNSET,
    Approval,
    ConversationEvent,
    DuplicateError,
    FileSnapshot,
    InvalidStatusError,
    InvalidValueError,
    MCPServer,
    NotFoundError,
    Session,
    SessionStatus,
    SessionUpdate,
    Store,
    StoreError,
)

PST = timezone(timedelta(hours=-8))
IST = timezone(timedelta(hours=5, minutes=30))
T0 = datetime(2025, 1, 15, 10, 30, 0, 123456, tzinfo=UTC)
COLUMNS = [c.key for c in Session.__table__.columns]

STRING_FIELDS = [
    "claude_session_id",
    "parent_session_id",
    "summary",
    "title",
    "model",
    "model_id",
    "working_dir",
    "system_prompt",
    "append_system_prompt",
    "custom_instructions",
    "permission_prompt_tool",
    "allowed_tools",
    "disallowed_tools",
    "additional_directories",
    "result_content",
    "error_message",
    "proxy_base_url",
    "proxy_model_override",
    "proxy_api_key",
]
POINTER_FIELDS = [
    "completed_at",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "effective_context_tokens",
    "duration_ms",
    "num_turns",
    "dangerously_skip_permissions_expires_at",
    "dangerously_skip_permissions_timeout_ms",
    "editor_state",
]
BOOL_FIELDS = ["auto_accept_edits", "dangerously_skip_permissions", "archived", "proxy_enabled"]


# --- helpers ---------------------------------------------------------------------------------


def mk(id: str, **fields: Any) -> Session:
    """A session with a run id derived from its id."""
    fields.setdefault("query", f"query of {id}")
    return Session(id=id, run_id=f"run-{id}", **fields)


def full_session(id: str = "s-full") -> Session:
    """A session with every field set to a value that is not its default."""
    return Session(
        id=id,
        run_id=f"run-{id}",
        claude_session_id="claude-abc",
        parent_session_id="parent-0",
        query="fix the bug in login.py",
        summary="Fixed the login bug",
        title="Login bug",
        model="opus",
        model_id="claude-opus-4-1-20250805",
        working_dir="/home/dev/project",
        max_turns=42,
        system_prompt="You are helpful.",
        append_system_prompt="Be brief.",
        custom_instructions="Use tabs.",
        permission_prompt_tool="mcp__codelayer__request_approval",
        allowed_tools='["Read","Edit"]',
        disallowed_tools='["Bash"]',
        additional_directories='["/tmp/extra"]',
        status=SessionStatus.WAITING_INPUT,
        created_at=datetime(2025, 1, 15, 2, 30, 0, 123456, tzinfo=PST),
        last_activity_at=datetime(2025, 1, 15, 10, 45, 1, 654321, tzinfo=UTC),
        completed_at=datetime(2025, 1, 15, 16, 15, 2, 5, tzinfo=IST),
        cost_usd=0.123456789,
        input_tokens=1234,
        output_tokens=5678,
        cache_creation_input_tokens=91011,
        cache_read_input_tokens=121314,
        effective_context_tokens=151617,
        duration_ms=987654,
        num_turns=7,
        result_content="All tests pass.",
        error_message="transient: retried",
        auto_accept_edits=True,
        dangerously_skip_permissions=True,
        dangerously_skip_permissions_expires_at=datetime(2025, 1, 15, 11, 0, tzinfo=UTC),
        dangerously_skip_permissions_timeout_ms=900_000,
        archived=True,
        proxy_enabled=True,
        proxy_base_url="https://proxy.example/v1",
        proxy_model_override="openrouter/some-model",
        proxy_api_key="sk-proxy-SECRET-123",
        editor_state='{"doc":{"type":"doc","content":[]}}',
    )


def fields_of(session: Session) -> dict[str, Any]:
    return {name: getattr(session, name) for name in COLUMNS}


def assert_utc(value: datetime | None) -> None:
    assert isinstance(value, datetime)
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)


async def set_raw_timestamp(store: Store, column: str, session_id: str, text: str | None) -> None:
    """Write a timestamp as hld would have (Go text with an offset), bypassing agentstore."""
    table = sa.table("sessions", sa.column("id"), sa.column(column))
    value: sa.ColumnElement[Any] = sa.bindparam("v", text, type_=sa.String())
    async with store.engine.begin() as conn:
        if store.dialect_name == "postgresql":
            # Text without an offset means UTC, as SQLite's CURRENT_TIMESTAMP does.
            await conn.execute(sa.text("SET LOCAL TIME ZONE 'UTC'"))
            value = sa.cast(value, sa.TIMESTAMP(timezone=True))
        result = await conn.execute(
            sa.update(table).where(table.c.id == session_id).values({column: value})
        )
        assert result.rowcount == 1


async def set_raw_null_working_dir(store: Store, session_id: str) -> None:
    table = sa.table("sessions", sa.column("id"), sa.column("working_dir"))
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.update(table).where(table.c.id == session_id).values(working_dir=sa.null())
        )


# --- create / get ----------------------------------------------------------------------------


async def test_create_session_defaults(store: Store) -> None:
    before = datetime.now(UTC)
    created = await store.create_session(Session(id="s1", run_id="r1", query="fix the bug"))
    after = datetime.now(UTC)
    got = await store.get_session("s1")

    assert got.id == "s1"
    assert got.run_id == "r1"
    assert got.query == "fix the bug"
    for name in STRING_FIELDS:
        assert getattr(got, name) == "", name
    for name in POINTER_FIELDS:
        assert getattr(got, name) is None, name
    for name in BOOL_FIELDS:
        assert getattr(got, name) is False, name
    assert got.max_turns == 0
    assert got.status == "starting"
    assert isinstance(got.status, str)
    for stamp in (got.created_at, got.last_activity_at):
        assert_utc(stamp)
        assert before <= stamp <= after
    assert got.created_at == created.created_at
    assert got.last_activity_at == created.last_activity_at


async def test_round_trip_every_field(store: Store) -> None:
    original = full_session()
    expected = fields_of(original)
    await store.create_session(original)

    by_id = await store.get_session("s-full")
    by_run = await store.get_session_by_run_id("run-s-full")
    assert by_run is not None
    for got in (by_id, by_run):
        assert fields_of(got) == expected
        for name in ("created_at", "last_activity_at", "completed_at"):
            assert_utc(getattr(got, name))
        assert_utc(got.dangerously_skip_permissions_expires_at)
    # A non-UTC input comes back as the same instant, in UTC.
    assert by_id.created_at == datetime(2025, 1, 15, 10, 30, 0, 123456, tzinfo=UTC)
    assert by_id.created_at.hour == 10
    assert by_id.completed_at == datetime(2025, 1, 15, 10, 45, 2, 5, tzinfo=UTC)
    assert by_id.cost_usd == 0.123456789
    assert by_id.proxy_api_key == "sk-proxy-SECRET-123"
    assert by_id.status == "waiting_input"


async def test_int64_fields_round_trip(store: Store) -> None:
    # hld's counters and its timeout are Go int / int64 (64 bits); SQLite stores 64 bits.
    big = 5_000_000_000
    session = mk(
        "big",
        input_tokens=big,
        cache_read_input_tokens=big + 1,
        duration_ms=big + 2,
        dangerously_skip_permissions_timeout_ms=big + 3,
    )
    await store.create_session(session)
    got = await store.get_session("big")
    assert got.input_tokens == big
    assert got.cache_read_input_tokens == big + 1
    assert got.duration_ms == big + 2
    assert got.dangerously_skip_permissions_timeout_ms == big + 3


async def test_editor_state_none_and_empty_are_distinct(store: Store) -> None:
    await store.create_session(mk("none"))
    await store.create_session(mk("empty", editor_state=""))
    assert (await store.get_session("none")).editor_state is None
    assert (await store.get_session("empty")).editor_state == ""


async def test_get_session_by_run_id(store: Store) -> None:
    await store.create_session(mk("a"))
    await store.create_session(mk("b"))
    got = await store.get_session_by_run_id("run-b")
    assert got is not None
    assert got.id == "b"
    assert await store.get_session_by_run_id("run-zzz") is None


async def test_get_unknown_session_raises_not_found(store: Store) -> None:
    await store.create_session(mk("a"))
    with pytest.raises(NotFoundError) as info:
        await store.get_session("missing")
    assert isinstance(info.value, LookupError)
    assert isinstance(info.value, StoreError)
    assert info.value.kind == "session"
    assert info.value.id == "missing"
    with pytest.raises(LookupError):
        await store.get_session("also-missing")


async def test_duplicate_id_keeps_original(store: Store) -> None:
    await store.create_session(mk("dup", query="original", title="first"))
    with pytest.raises(DuplicateError):
        await store.create_session(
            Session(id="dup", run_id="other-run", query="intruder", title="second")
        )
    got = await store.get_session("dup")
    assert got.query == "original"
    assert got.title == "first"
    assert got.run_id == "run-dup"
    assert await store.get_session_by_run_id("other-run") is None
    assert await store.get_session_count() == 1


async def test_duplicate_run_id_keeps_original(store: Store) -> None:
    await store.create_session(Session(id="one", run_id="shared", query="original"))
    with pytest.raises(DuplicateError):
        await store.create_session(Session(id="two", run_id="shared", query="intruder"))
    got = await store.get_session_by_run_id("shared")
    assert got is not None
    assert got.id == "one"
    assert got.query == "original"
    with pytest.raises(NotFoundError):
        await store.get_session("two")
    assert await store.get_session_count() == 1


BAD_SESSIONS: dict[str, tuple[Callable[[], Session], type[Exception]]] = {
    "unknown status": (lambda: mk("bad", status="sleeping"), InvalidStatusError),
    "max_turns as str": (lambda: mk("bad", max_turns="3"), InvalidValueError),
    "naive created_at": (
        lambda: mk("bad", created_at=datetime(2025, 1, 1, 12, 0)),
        InvalidValueError,
    ),
    "naive expiry": (
        lambda: mk("bad", dangerously_skip_permissions_expires_at=datetime(2025, 1, 1)),
        InvalidValueError,
    ),
    "empty id": (lambda: Session(id="", run_id="r", query="q"), InvalidValueError),
    "empty run_id": (lambda: Session(id="bad", run_id="", query="q"), InvalidValueError),
    "cost as str": (lambda: mk("bad", cost_usd="1.5"), InvalidValueError),
    "archived as int": (lambda: mk("bad", archived=1), InvalidValueError),
    "tokens as float": (lambda: mk("bad", input_tokens=1.5), InvalidValueError),
    "query None": (lambda: mk("bad", query=None), InvalidValueError),
    "status None": (lambda: mk("bad", status=None), InvalidValueError),
}


@pytest.mark.parametrize("case", sorted(BAD_SESSIONS))
async def test_bad_input_is_refused_before_writing(store: Store, case: str) -> None:
    await store.create_session(mk("good"))
    factory, error = BAD_SESSIONS[case]
    with pytest.raises(error) as info:
        await store.create_session(factory())
    assert isinstance(info.value, ValueError)
    assert await store.get_session_count() == 1
    with pytest.raises(NotFoundError):
        await store.get_session("bad")


async def test_status_accepts_enum_and_plain_string(store: Store) -> None:
    await store.create_session(mk("enum", status=SessionStatus.RUNNING))
    await store.create_session(mk("text", status="interrupted"))
    assert (await store.get_session("enum")).status == "running"
    assert (await store.get_session("text")).status == "interrupted"


# --- update ----------------------------------------------------------------------------------


async def test_update_changes_only_set_fields(store: Store) -> None:
    await store.create_session(full_session())
    before = fields_of(await store.get_session("s-full"))

    await store.update_session(
        "s-full", SessionUpdate(status="completed", cost_usd=1.5, title="New title")
    )
    after = fields_of(await store.get_session("s-full"))

    assert after["status"] == "completed"
    assert after["cost_usd"] == 1.5
    assert after["title"] == "New title"
    unchanged = {k: v for k, v in after.items() if k not in {"status", "cost_usd", "title"}}
    assert unchanged == {k: v for k, v in before.items() if k in unchanged}
    # last_activity_at is not bumped implicitly (the seed's behaviour).
    assert after["last_activity_at"] == before["last_activity_at"]


async def test_update_every_field(store: Store) -> None:
    await store.create_session(mk("u"))
    await store.create_session(mk("other"))
    other_before = fields_of(await store.get_session("other"))
    values: dict[str, Any] = {
        "claude_session_id": "claude-2",
        "query": "new query",
        "summary": "new summary",
        "title": "new title",
        "status": "failed",
        "last_activity_at": datetime(2025, 2, 1, 4, 0, 0, 7, tzinfo=PST),
        "completed_at": datetime(2025, 2, 1, 12, 0, 1, tzinfo=UTC),
        "cost_usd": 2.25,
        "input_tokens": 1,
        "output_tokens": 2,
        "cache_creation_input_tokens": 3,
        "cache_read_input_tokens": 4,
        "effective_context_tokens": 5,
        "duration_ms": 6,
        "num_turns": 7,
        "result_content": "result",
        "error_message": "boom",
        "model": "sonnet",
        "model_id": "claude-sonnet-4-5",
        "auto_accept_edits": True,
        "dangerously_skip_permissions": True,
        "dangerously_skip_permissions_expires_at": datetime(2025, 2, 1, 13, 0, tzinfo=IST),
        "dangerously_skip_permissions_timeout_ms": 60_000,
        "archived": True,
        "additional_directories": '["/x"]',
        "working_dir": "/work",
        "editor_state": "{}",
        "proxy_enabled": True,
        "proxy_base_url": "https://p.example",
        "proxy_model_override": "m",
        "proxy_api_key": "key-2",
    }
    update = SessionUpdate(**values)
    assert set(update.changes()) == set(values), "every SessionUpdate field is exercised"

    await store.update_session("u", update)
    got = fields_of(await store.get_session("u"))
    for name, value in values.items():
        assert got[name] == value, name
    assert_utc(got["last_activity_at"])
    assert got["id"] == "u"
    assert got["run_id"] == "run-u"
    assert fields_of(await store.get_session("other")) == other_before


async def test_update_none_sets_nullable_fields_to_null(store: Store) -> None:
    await store.create_session(full_session())
    await store.update_session(
        "s-full",
        SessionUpdate(
            completed_at=None,
            dangerously_skip_permissions_expires_at=None,
            editor_state=None,
            cost_usd=None,
        ),
    )
    got = await store.get_session("s-full")
    assert got.completed_at is None
    assert got.dangerously_skip_permissions_expires_at is None
    assert got.editor_state is None
    assert got.cost_usd is None
    # The rest is untouched.
    assert got.dangerously_skip_permissions is True
    assert got.input_tokens == 1234


async def test_update_editor_state_to_empty_string_is_not_null(store: Store) -> None:
    await store.create_session(full_session())
    await store.update_session("s-full", SessionUpdate(editor_state=""))
    assert (await store.get_session("s-full")).editor_state == ""


async def test_unset_is_the_default_and_touches_nothing(store: Store) -> None:
    update = SessionUpdate()
    assert update.status is UNSET
    assert update.changes() == {}
    await store.create_session(full_session())
    before = fields_of(await store.get_session("s-full"))
    await store.update_session("s-full", update)
    assert fields_of(await store.get_session("s-full")) == before


BAD_UPDATES: dict[str, tuple[Callable[[], SessionUpdate], type[Exception]]] = {
    "unknown status": (lambda: SessionUpdate(title="changed", status="bogus"), InvalidStatusError),
    "num_turns as str": (
        lambda: SessionUpdate(title="changed", num_turns="3"),  # type: ignore[arg-type]
        InvalidValueError,
    ),
    "naive datetime": (
        lambda: SessionUpdate(title="changed", completed_at=datetime(2025, 1, 1)),
        InvalidValueError,
    ),
    "None for non-nullable title": (
        lambda: SessionUpdate(summary="changed", title=None),  # type: ignore[arg-type]
        InvalidValueError,
    ),
    "None for last_activity_at": (
        lambda: SessionUpdate(title="changed", last_activity_at=None),  # type: ignore[arg-type]
        InvalidValueError,
    ),
    "None for status": (
        lambda: SessionUpdate(title="changed", status=None),  # type: ignore[arg-type]
        InvalidValueError,
    ),
    "archived as str": (
        lambda: SessionUpdate(title="changed", archived="yes"),  # type: ignore[arg-type]
        InvalidValueError,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_UPDATES))
async def test_bad_update_is_refused_before_writing(store: Store, case: str) -> None:
    await store.create_session(full_session())
    before = fields_of(await store.get_session("s-full"))
    factory, error = BAD_UPDATES[case]
    with pytest.raises(error):
        await store.update_session("s-full", factory())
    assert fields_of(await store.get_session("s-full")) == before


async def test_update_unknown_session_raises_not_found(store: Store) -> None:
    await store.create_session(mk("a"))
    with pytest.raises(NotFoundError) as info:
        await store.update_session("missing", SessionUpdate(title="x"))
    assert isinstance(info.value, LookupError)
    assert info.value.id == "missing"
    with pytest.raises(NotFoundError):
        await store.update_session("missing", SessionUpdate())
    assert await store.get_session_count() == 1
    assert (await store.get_session("a")).title == ""


async def test_update_with_same_values_still_finds_the_session(store: Store) -> None:
    await store.create_session(mk("a", title="same"))
    await store.update_session("a", SessionUpdate(title="same"))
    assert (await store.get_session("a")).title == "same"


# --- detached values -------------------------------------------------------------------------


async def test_returned_sessions_are_detached(store: Store) -> None:
    session = full_session()
    await store.create_session(session)
    # Changing the object that was created changes nothing stored.
    session.title = "changed after create"
    session.archived = False

    got = await store.get_session("s-full")
    assert got.title == "Login bug"
    got.title = "changed after get"
    got.status = "completed"
    got.cost_usd = None
    listed = await store.list_sessions()
    listed[0].summary = "changed after list"

    again = await store.get_session("s-full")
    assert again.title == "Login bug"
    assert again.status == "waiting_input"
    assert again.cost_usd == 0.123456789
    assert again.summary == "Fixed the login bug"
    assert again.archived is True
    assert again is not got


async def test_attributes_readable_after_close(db_url: str) -> None:
    store = await Store.open(db_url)
    await store.create_session(full_session())
    await store.create_session(mk("other", last_activity_at=T0))
    got = await store.get_session("s-full")
    listed = await store.list_sessions()
    found = await store.search_sessions_by_title("other")
    await store.close()

    values = fields_of(got)
    assert values["title"] == "Login bug"
    assert values["proxy_api_key"] == "sk-proxy-SECRET-123"
    assert values["completed_at"] == datetime(2025, 1, 15, 10, 45, 2, 5, tzinfo=UTC)
    assert [s.id for s in listed] == ["s-full", "other"]
    assert [fields_of(s)["query"] for s in listed] == ["fix the bug in login.py", "query of other"]
    assert [s.id for s in found] == ["other"]


_FRESH_PROCESS_SCRIPT = """
import asyncio, sys
from agentstore import Store

async def main(url):
    store = await Store.open(url)
    try:
        session = await store.get_session("s-full")
        listed = await store.list_sessions()
        settings = await store.get_user_settings()
        print(session.title, session.status, len(listed), settings.advanced_providers)
    finally:
        await store.close()

asyncio.run(main(sys.argv[1]))
"""


async def test_reading_in_a_process_that_never_built_a_model(store: Store, db_url: str) -> None:
    # A daemon that opens an existing database and only reads has never instantiated a model
    # itself; the objects the store returns must still be readable.
    await store.create_session(full_session())
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _FRESH_PROCESS_SCRIPT,
        db_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert out.decode().split() == ["Login", "bug", "waiting_input", "1", "False"]


# --- hard delete -----------------------------------------------------------------------------


async def _populate(store: Store, session_id: str, claude_id: str) -> None:
    await store.create_session(mk(session_id, claude_session_id=claude_id))
    await store.add_conversation_event(
        ConversationEvent(
            session_id=session_id,
            claude_session_id=claude_id,
            event_type="tool_call",
            tool_id=f"tool-{session_id}",
            tool_name="Bash",
        )
    )
    await store.add_conversation_event(
        ConversationEvent(
            session_id=session_id, claude_session_id=claude_id, role="user", content="hi"
        )
    )
    await store.create_approval(
        Approval(
            id=f"appr-{session_id}",
            run_id=f"run-{session_id}",
            session_id=session_id,
            tool_name="Bash",
            tool_input={"command": "ls"},
        )
    )
    await store.store_mcp_servers(
        session_id,
        [MCPServer(name="fs", command="npx", args_json='["fs"]', env_json="null")],
    )
    await store.store_raw_event(session_id, '{"type":"system"}')
    await store.create_file_snapshot(
        FileSnapshot(
            tool_id=f"tool-{session_id}",
            session_id=session_id,
            file_path="/a.py",
            content="print(1)",
        )
    )


async def test_hard_delete_removes_session_and_all_dependent_rows(store: Store) -> None:
    await _populate(store, "gone", "claude-gone")
    await _populate(store, "kept", "claude-kept")
    await store.create_session(mk("child", parent_session_id="gone"))

    await store.hard_delete_session("gone")

    with pytest.raises(NotFoundError):
        await store.get_session("gone")
    assert await store.get_conversation("claude-gone") == []
    with pytest.raises(NotFoundError):
        await store.get_approval("appr-gone")
    assert await store.get_mcp_servers("gone") == []
    assert await store.raw_events.list("gone") == []
    assert await store.get_file_snapshots("gone") == []

    # The other session's rows are untouched.
    assert len(await store.get_conversation("claude-kept")) == 2
    assert (await store.get_approval("appr-kept")).session_id == "kept"
    assert [s.name for s in await store.get_mcp_servers("kept")] == ["fs"]
    assert len(await store.raw_events.list("kept")) == 1
    assert len(await store.get_file_snapshots("kept")) == 1
    assert await store.get_event_count() == 2
    assert await store.get_approval_count() == 1
    # A child session is kept and still names its parent, as in hld.
    assert (await store.get_session("child")).parent_session_id == "gone"
    assert await store.get_session_count() == 2


async def test_hard_delete_is_one_transaction(store: Store) -> None:
    await _populate(store, "s", "claude-s")

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with store.transaction() as tx:
            await tx.sessions.hard_delete("s")
            raise Abort

    # Rolled back as a whole: the session and every dependent row are still there.
    assert (await store.get_session("s")).claude_session_id == "claude-s"
    assert len(await store.get_conversation("claude-s")) == 2
    assert (await store.get_approval("appr-s")).status == "pending"
    assert len(await store.get_mcp_servers("s")) == 1
    assert len(await store.raw_events.list("s")) == 1
    assert len(await store.get_file_snapshots("s")) == 1


async def test_hard_delete_unknown_session_raises_not_found(store: Store) -> None:
    await _populate(store, "kept", "claude-kept")
    with pytest.raises(NotFoundError) as info:
        await store.hard_delete_session("missing")
    assert info.value.id == "missing"
    assert await store.get_session_count() == 1
    assert await store.get_event_count() == 2
    assert await store.get_approval_count() == 1
    with pytest.raises(NotFoundError):
        await store.hard_delete_session("kept-but-not-this")
    await store.hard_delete_session("kept")
    with pytest.raises(NotFoundError):
        await store.hard_delete_session("kept")


# --- list ------------------------------------------------------------------------------------


async def test_list_sessions_empty(store: Store) -> None:
    assert await store.list_sessions() == []
    assert await store.list_sessions(limit=5, include_archived=False, statuses=["running"]) == []


async def test_list_sessions_orders_by_instant_then_id(store: Store) -> None:
    # Wall-clock text order would be c, b, tie-*, a; the instants say otherwise.
    await store.create_session(mk("a", last_activity_at=datetime(2025, 1, 15, 20, 0, tzinfo=UTC)))
    await store.create_session(
        mk("b", last_activity_at=datetime(2025, 1, 15, 9, 0, tzinfo=PST))  # 17:00 UTC
    )
    await store.create_session(
        mk("c", last_activity_at=datetime(2025, 1, 16, 1, 0, tzinfo=IST))  # 19:30 UTC on 15th
    )
    tie = datetime(2025, 1, 15, 18, 0, tzinfo=UTC)
    await store.create_session(mk("tie-1", last_activity_at=tie))
    await store.create_session(mk("tie-3", last_activity_at=tie.astimezone(PST)))
    await store.create_session(mk("tie-2", last_activity_at=tie))

    listed = await store.list_sessions()
    assert [s.id for s in listed] == ["a", "c", "tie-3", "tie-2", "tie-1", "b"]
    for s in listed:
        assert_utc(s.last_activity_at)


async def test_list_sessions_orders_hld_written_timestamps_by_instant(store: Store) -> None:
    # Rows as hld (go-sqlite3) wrote them: local offsets, 9 fraction digits or none at all.
    # By text the order would be ist, pst, bare, utc; by instant it is pst, bare, utc, ist.
    stamps = {
        "pst-1900": "2025-01-15 11:00:00.123456489-08:00",
        "ist-1730": "2025-01-15 23:00:00+05:30",
        "utc-1800": "2025-01-15 18:00:00.000000400+00:00",
        "bare-1830": "2025-01-15 18:30:00",
    }
    for sid, stamp in stamps.items():
        await store.create_session(mk(sid))
        await set_raw_timestamp(store, "last_activity_at", sid, stamp)

    listed = await store.list_sessions()
    assert [s.id for s in listed] == ["pst-1900", "bare-1830", "utc-1800", "ist-1730"]
    pst = listed[0]
    assert pst.last_activity_at == datetime(2025, 1, 15, 19, 0, 0, 123456, tzinfo=UTC)
    assert listed[3].last_activity_at == datetime(2025, 1, 15, 17, 30, tzinfo=UTC)

    # The cursor is the bare-1830 row, given as the same instant in -08:00.
    page = await store.list_sessions(
        before=(datetime(2025, 1, 15, 10, 30, tzinfo=PST), "bare-1830")
    )
    assert [s.id for s in page] == ["utc-1800", "ist-1730"]
    page = await store.list_sessions(limit=1, before=pst)
    assert [s.id for s in page] == ["bare-1830"]


async def _make_many(store: Store, count: int, prefix: str, base: datetime) -> list[str]:
    ids = []
    for i in range(count):
        # Every third pair shares an instant (tie broken by id), some in another time zone.
        at = base + timedelta(minutes=(i // 2) * 7)
        if i % 5 == 0:
            at = at.astimezone(PST)
        sid = f"{prefix}{i:03d}"
        await store.create_session(mk(sid, last_activity_at=at))
        ids.append(sid)
    return ids


async def test_list_sessions_paging_covers_every_row_once(store: Store) -> None:
    await _make_many(store, 23, "s", T0)
    full = [s.id for s in await store.list_sessions()]
    assert len(full) == 23
    assert len(set(full)) == 23

    seen: list[str] = []
    cursor: Session | None = None
    pages = 0
    while True:
        page = await store.list_sessions(limit=5, before=cursor)
        if not page:
            break
        pages += 1
        seen.extend(s.id for s in page)
        cursor = page[-1]
        # Sessions inserted between pages, newer and older than the cursor.
        await store.create_session(mk(f"new-{pages}", last_activity_at=T0 + timedelta(days=1)))
    assert pages == 5
    assert seen == full
    # Sessions inserted later with a newer activity never show up behind the cursor.
    assert not any(sid.startswith("new-") for sid in seen)


async def test_list_sessions_paging_with_tuple_cursor(store: Store) -> None:
    await _make_many(store, 11, "t", T0)
    full = [s.id for s in await store.list_sessions()]
    seen: list[str] = []
    cursor: tuple[datetime, str] | None = None
    pages = 0
    while True:
        page = await store.list_sessions(limit=4, before=cursor)
        if not page:
            break
        pages += 1
        seen.extend(s.id for s in page)
        # The same instant given in another time zone is the same cursor.
        cursor = (page[-1].last_activity_at.astimezone(IST), page[-1].id)
        if pages <= 2:
            # Older than every original: they belong after the cursor, in a later page.
            await store.create_session(
                mk(f"old-{pages}", last_activity_at=T0 - timedelta(days=1, seconds=pages))
            )
    originals = [sid for sid in seen if not sid.startswith("old-")]
    assert originals == full
    assert len(seen) == len(set(seen))
    # Older sessions inserted meanwhile come after every original, each exactly once.
    assert seen[: len(full)] == full
    assert seen[len(full) :] == ["old-1", "old-2"]


async def test_list_sessions_filters(store: Store) -> None:
    await store.create_session(mk("run", status="running", last_activity_at=T0))
    await store.create_session(
        mk("done", status="completed", last_activity_at=T0 + timedelta(seconds=1))
    )
    await store.create_session(
        mk("arch", status="completed", archived=True, last_activity_at=T0 + timedelta(seconds=2))
    )
    await store.create_session(mk("draft", status="draft", last_activity_at=T0 + timedelta(3)))

    assert [s.id for s in await store.list_sessions()] == ["draft", "arch", "done", "run"]
    assert [s.id for s in await store.list_sessions(include_archived=False)] == [
        "draft",
        "done",
        "run",
    ]
    assert [s.id for s in await store.list_sessions(statuses=["completed", "running"])] == [
        "arch",
        "done",
        "run",
    ]
    assert [
        s.id
        for s in await store.list_sessions(
            statuses=[SessionStatus.COMPLETED], include_archived=False
        )
    ] == ["done"]
    assert await store.list_sessions(statuses=[]) == []
    assert await store.list_sessions(limit=0) == []
    assert [s.id for s in await store.list_sessions(limit=2)] == ["draft", "arch"]


async def test_list_sessions_refuses_bad_arguments(store: Store) -> None:
    await store.create_session(mk("a"))
    with pytest.raises(InvalidStatusError):
        await store.list_sessions(statuses=["sleeping"])
    with pytest.raises(InvalidValueError):
        await store.list_sessions(limit=-1)
    with pytest.raises(InvalidValueError):
        await store.list_sessions(before=(datetime(2025, 1, 1), "a"))  # naive
    with pytest.raises(InvalidValueError):
        await store.list_sessions(before=("2025-01-01", "a"))  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError):
        await store.list_sessions(limit="5")  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError):
        await store.search_sessions_by_title(None, 10)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError):
        await store.search_sessions_by_title("a", "10")  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError):
        await store.get_recent_working_dirs("5")  # type: ignore[arg-type]


# --- search ----------------------------------------------------------------------------------


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def test_search_matches_title_summary_or_query_case_insensitively(store: Store) -> None:
    await store.create_session(mk("t", title="Fix LOGIN bug", last_activity_at=at(1)))
    await store.create_session(mk("s", summary="the login page", last_activity_at=at(3)))
    await store.create_session(mk("q", query="LoGiN flow", last_activity_at=at(2)))
    await store.create_session(mk("x", title="unrelated", query="other", last_activity_at=at(4)))

    assert [s.id for s in await store.search_sessions_by_title("login", 10)] == ["s", "q", "t"]
    assert [s.id for s in await store.search_sessions_by_title("LOGIN PAGE", 10)] == ["s"]
    assert await store.search_sessions_by_title("nothing like it", 10) == []


async def test_search_identical_non_ascii_text_matches(store: Store) -> None:
    await store.create_session(mk("fr", title="Réparer l'ÉCOLE", last_activity_at=at(1)))
    await store.create_session(mk("de", summary="Größe ändern", last_activity_at=at(2)))
    assert [s.id for s in await store.search_sessions_by_title("ÉCOLE", 10)] == ["fr"]
    assert [s.id for s in await store.search_sessions_by_title("Größe", 10)] == ["de"]
    assert [s.id for s in await store.search_sessions_by_title("Réparer", 10)] == ["fr"]


async def test_search_returns_only_leaf_sessions(store: Store) -> None:
    await store.create_session(mk("parent", title="feature work", last_activity_at=at(5)))
    await store.create_session(
        mk("child", title="feature work", parent_session_id="parent", last_activity_at=at(1))
    )
    await store.create_session(mk("grandparent", title="feature x", last_activity_at=at(9)))
    await store.create_session(
        mk("middle", title="feature y", parent_session_id="grandparent", last_activity_at=at(8))
    )
    await store.create_session(
        mk("leaf", title="other", parent_session_id="middle", last_activity_at=at(7))
    )
    assert [s.id for s in await store.search_sessions_by_title("feature", 10)] == ["child"]


async def test_search_excludes_archived_draft_and_discarded(store: Store) -> None:
    visible = [s for s in SessionStatus if s not in (SessionStatus.DRAFT, SessionStatus.DISCARDED)]
    for i, status in enumerate(SessionStatus):
        await store.create_session(
            mk(f"st-{status}", title="needle", status=status, last_activity_at=at(i))
        )
    await store.create_session(
        mk("archived", title="needle", archived=True, last_activity_at=at(100))
    )
    found = await store.search_sessions_by_title("needle", 50)
    assert {s.id for s in found} == {f"st-{s}" for s in visible}
    assert [s.id for s in found] == [
        f"st-{s}" for s in reversed(list(SessionStatus)) if s in visible
    ]


async def test_search_empty_query_returns_newest_eligible(store: Store) -> None:
    await store.create_session(mk("a", last_activity_at=at(1)))
    await store.create_session(mk("b", last_activity_at=at(3)))
    await store.create_session(mk("c", archived=True, last_activity_at=at(5)))
    await store.create_session(mk("d", last_activity_at=at(2)))
    assert [s.id for s in await store.search_sessions_by_title("", 10)] == ["b", "d", "a"]


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(0, 10), (-5, 10), (1, 1), (20, 20), (21, 21), (50, 50), (51, 50), (1000, 50)],
)
async def test_search_limits(store: Store, limit: int, expected: int) -> None:
    for i in range(60):
        await store.create_session(mk(f"m{i:02d}", title=f"match {i}", last_activity_at=at(i)))
    found = await store.search_sessions_by_title("MATCH", limit)
    assert len(found) == expected
    # The newest ones, newest first.
    assert [s.id for s in found] == [f"m{i:02d}" for i in range(59, 59 - expected, -1)]


async def test_search_default_limit_is_ten(store: Store) -> None:
    for i in range(12):
        await store.create_session(mk(f"m{i:02d}", title="match", last_activity_at=at(i)))
    assert len(await store.search_sessions_by_title("match")) == 10


@pytest.mark.parametrize(
    ("query", "matching", "not_matching"),
    [
        ("100%", "100% done", "1000 items"),
        ("%", "50% off", "no percent here"),
        ("a_b", "call a_b now", "call axb now"),
        ("_", "snake_case", "plain"),
        ("back\\slash", "a back\\slash here", "a backslash here"),
        ("\\", "C:\\dir", "C:/dir"),
        ("\\%", "odd \\% text", "odd % text"),
        ("[a]", "list [a] item", "list a item"),
    ],
)
async def test_search_wildcards_match_themselves(
    store: Store, query: str, matching: str, not_matching: str
) -> None:
    await store.create_session(mk("yes-title", title=matching, last_activity_at=at(3)))
    await store.create_session(mk("yes-query", query=matching.upper(), last_activity_at=at(2)))
    await store.create_session(mk("no", title=not_matching, last_activity_at=at(4)))
    await store.create_session(mk("no-summary", summary=not_matching, last_activity_at=at(5)))
    found = await store.search_sessions_by_title(query, 10)
    assert [s.id for s in found] == ["yes-title", "yes-query"]


# --- expired dangerous permissions ------------------------------------------------------------


async def test_expired_dangerous_permissions(store: Store) -> None:
    now = datetime.now(UTC)

    async def add(id: str, *, on: bool = True, expires: datetime | None, status: str) -> None:
        await store.create_session(
            mk(
                id,
                dangerously_skip_permissions=on,
                dangerously_skip_permissions_expires_at=expires,
                status=status,
            )
        )

    await add("e-1h", expires=now - timedelta(hours=1), status="running")
    await add("e-2h", expires=now - timedelta(hours=2), status="waiting_input")
    # 30 minutes ago, written in +05:30: its wall clock is later than now's in UTC.
    await add("e-30m-ist", expires=(now - timedelta(minutes=30)).astimezone(IST), status="starting")
    await add("off", on=False, expires=now - timedelta(hours=3), status="running")
    await add("future", expires=now + timedelta(hours=1), status="running")
    # In one hour, written in -08:00: its wall clock is earlier than now's in UTC.
    await add("future-pst", expires=(now + timedelta(hours=1)).astimezone(PST), status="running")
    await add("no-expiry", expires=None, status="running")
    for status in ("completed", "failed", "interrupted", "interrupting", "draft", "discarded"):
        await add(f"st-{status}", expires=now - timedelta(hours=4), status=status)

    found = await store.get_expired_dangerous_permissions_sessions()
    assert [s.id for s in found] == ["e-2h", "e-1h", "e-30m-ist"]
    for s in found:
        assert s.dangerously_skip_permissions is True
        assert_utc(s.dangerously_skip_permissions_expires_at)


async def test_expired_dangerous_permissions_with_hld_written_expiry(store: Store) -> None:
    now = datetime.now(UTC)
    past = (now - timedelta(minutes=10)).astimezone(IST)
    future = (now + timedelta(minutes=10)).astimezone(PST)
    await store.create_session(mk("past", dangerously_skip_permissions=True, status="running"))
    await store.create_session(mk("future", dangerously_skip_permissions=True, status="running"))
    await set_raw_timestamp(
        store,
        "dangerously_skip_permissions_expires_at",
        "past",
        past.strftime("%Y-%m-%d %H:%M:%S.%f123+05:30"),
    )
    await set_raw_timestamp(
        store,
        "dangerously_skip_permissions_expires_at",
        "future",
        future.strftime("%Y-%m-%d %H:%M:%S.%f-08:00"),
    )
    found = await store.get_expired_dangerous_permissions_sessions()
    assert [s.id for s in found] == ["past"]
    assert found[0].dangerously_skip_permissions_expires_at == past


async def test_expired_dangerous_permissions_at_a_given_instant(store: Store) -> None:
    expiry = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
    await store.create_session(
        mk(
            "a",
            dangerously_skip_permissions=True,
            status="running",
            dangerously_skip_permissions_expires_at=expiry.astimezone(PST),
        )
    )
    repo = store.sessions
    # 11:59:59 UTC written as 17:29:59+05:30: not yet expired.
    assert (
        await repo.expired_dangerous_permissions((expiry - timedelta(seconds=1)).astimezone(IST))
        == []
    )
    assert await repo.expired_dangerous_permissions(expiry) == []  # strictly before now
    got = await repo.expired_dangerous_permissions(
        (expiry + timedelta(microseconds=1)).astimezone(PST)
    )
    assert [s.id for s in got] == ["a"]
    with pytest.raises(InvalidValueError):
        await repo.expired_dangerous_permissions(datetime(2030, 1, 1))  # naive


async def test_expired_dangerous_permissions_empty(store: Store) -> None:
    assert await store.get_expired_dangerous_permissions_sessions() == []
    await store.create_session(mk("a", dangerously_skip_permissions=True, status="running"))
    assert await store.get_expired_dangerous_permissions_sessions() == []


# --- recent working dirs ----------------------------------------------------------------------


async def test_recent_working_dirs(store: Store) -> None:
    async def add(id: str, wd: str, when: datetime, **kw: Any) -> None:
        await store.create_session(mk(id, working_dir=wd, last_activity_at=when, **kw))

    await add("a1", "/a", at(1))
    await add("a2", "/a", at(10).astimezone(PST))  # newest of /a, given in -08:00
    await add("a3", "/a", at(5))
    await add("b1", "/b", at(20), archived=True)  # archived sessions count too
    await add("c1", "/c", at(3))
    await add("c2", "/c", at(2), status="draft")
    await add("empty", "", at(30))
    await add("dot", ".", at(40))
    await add("null", "/will-be-null", at(50))
    await set_raw_null_working_dir(store, "null")

    dirs = await store.get_recent_working_dirs()
    assert [(d.path, d.usage_count) for d in dirs] == [("/b", 1), ("/a", 3), ("/c", 2)]
    assert [d.last_used for d in dirs] == [at(20), at(10), at(3)]
    for d in dirs:
        assert_utc(d.last_used)
    assert [d.path for d in await store.get_recent_working_dirs(2)] == ["/b", "/a"]


async def test_recent_working_dirs_by_instant_for_hld_rows(store: Store) -> None:
    # hld wrote local offsets; by text 22:00+05:30 would be the newest use of /mixed.
    rows = {
        ("pst", "/pst"): "2025-01-15 11:00:00-08:00",  # 19:00 UTC
        ("ist", "/ist"): "2025-01-15 23:00:00+05:30",  # 17:30 UTC
        ("m1", "/mixed"): "2025-01-15 22:00:00+05:30",  # 16:30 UTC
        ("m2", "/mixed"): "2025-01-15 10:00:00.5-08:00",  # 18:00:00.5 UTC
    }
    for (sid, wd), stamp in rows.items():
        await store.create_session(mk(sid, working_dir=wd))
        await set_raw_timestamp(store, "last_activity_at", sid, stamp)
    dirs = await store.get_recent_working_dirs()
    assert [(d.path, d.usage_count, d.last_used) for d in dirs] == [
        ("/pst", 1, datetime(2025, 1, 15, 19, 0, tzinfo=UTC)),
        ("/mixed", 2, datetime(2025, 1, 15, 18, 0, 0, 500000, tzinfo=UTC)),
        ("/ist", 1, datetime(2025, 1, 15, 17, 30, tzinfo=UTC)),
    ]


async def test_recent_working_dirs_limits(store: Store) -> None:
    assert await store.get_recent_working_dirs() == []
    for i in range(23):
        await store.create_session(mk(f"s{i}", working_dir=f"/dir/{i:02d}", last_activity_at=at(i)))
    default = await store.get_recent_working_dirs()
    assert [d.path for d in default] == [f"/dir/{i:02d}" for i in range(22, 2, -1)]
    assert len(await store.get_recent_working_dirs(0)) == 20
    assert len(await store.get_recent_working_dirs(-3)) == 20
    assert len(await store.get_recent_working_dirs(21)) == 21
    assert len(await store.get_recent_working_dirs(100)) == 23
    assert [d.path for d in await store.get_recent_working_dirs(1)] == ["/dir/22"]


# --- counts ----------------------------------------------------------------------------------


async def test_counts(store: Store) -> None:
    assert await store.get_session_count() == 0
    assert await store.get_approval_count() == 0
    assert await store.get_event_count() == 0
    await _populate(store, "one", "claude-one")
    await store.create_session(mk("two"))
    assert await store.get_session_count() == 2
    assert await store.get_approval_count() == 1
    assert await store.get_event_count() == 2
    await store.add_conversation_event(ConversationEvent(session_id="two", claude_session_id="c2"))
    assert await store.get_event_count() == 3
    await store.hard_delete_session("one")
    assert await store.get_session_count() == 1
    assert await store.get_approval_count() == 0
    assert await store.get_event_count() == 1
