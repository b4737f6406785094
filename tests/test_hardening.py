"""Hardening: refused files keep every byte, odd URLs and inputs get named errors, a closed
store says so, reprs keep secrets, and Alembic's offline mode and logging work.

Files are real SQLite files under ``tmp_path``; inputs run on both backends (``store``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import agentstore
from agentstore import (
    Approval,
    ApprovalStatus,
    ConversationEvent,
    DuplicateError,
    FileSnapshot,
    InvalidValueError,
    MCPServer,
    MCPServerConfig,
    Session,
    SessionConfig,
    SessionUpdate,
    Store,
    StoreError,
    UserSettings,
)
from agentstore.errors import (
    CorruptDatabaseError,
    DatabaseError,
    LegacyDatabaseError,
    MigrationRequiredError,
    NotADatabaseError,
    ReadOnlyDatabaseError,
    SchemaTooNewError,
    StoreClosedError,
)

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cretpw"
T0 = datetime(2025, 1, 15, 10, 30, 0, 123456, tzinfo=UTC)


# --- helpers ---------------------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry below ``folder``: its relative name and its bytes (None for a folder)."""
    return {
        str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes())
        for p in sorted(folder.rglob("*"))
    }


async def populate(path: Path, sessions: int = 20) -> None:
    """A closed agentstore file with sessions and ~1 KB events (the events fill most pages)."""
    async with await Store.open(path) as store:
        for i in range(sessions):
            await store.create_session(
                Session(id=f"s{i}", run_id=f"r{i}", query="q", claude_session_id=f"c{i}")
            )
            await store.add_conversation_events(
                [
                    ConversationEvent(
                        session_id=f"s{i}", claude_session_id=f"c{i}", content=f"{i}:" + "x" * 1000
                    )
                    for _ in range(20)
                ]
            )


def sql(path: Path, statement: str) -> None:
    """Run one statement on ``path`` and close the connection (so no -wal is left)."""
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(statement)


def hide_and_seek(exc: BaseException, secret: str) -> list[str]:
    """Where ``secret`` shows in ``exc``: its text, repr, args, attributes, chain, traceback."""
    found = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for label, text in (
            ("str", str(current)),
            ("repr", repr(current)),
            ("args", repr(current.args)),
            ("vars", repr(vars(current)) if hasattr(current, "__dict__") else ""),
        ):
            if secret in text:
                found.append(f"{type(current).__name__} {label}")
        current = current.__cause__ or current.__context__
    if secret in "".join(traceback.format_exception(exc)):
        found.append("traceback")
    return found


# --- files that are refused, left as they were -----------------------------------------------


async def _random_bytes(folder: Path) -> tuple[Path, dict[str, Any]]:
    path = folder / "agent.db"
    path.write_bytes(random.Random(7).randbytes(64 * 1024))
    return path, {}


async def _empty_file(folder: Path) -> tuple[Path, dict[str, Any]]:
    path = folder / "agent.db"
    path.write_bytes(b"")
    return path, {"migrate": False}


async def _missing_file(folder: Path) -> tuple[Path, dict[str, Any]]:
    return folder / "missing" / "agent.db", {"migrate": False}


async def _newer_revision(folder: Path) -> tuple[Path, dict[str, Any]]:
    path = folder / "agent.db"
    await populate(path, sessions=2)
    sql(path, "UPDATE alembic_version SET version_num = 'zzzz_future'")
    return path, {}


async def _read_only(folder: Path) -> tuple[Path, dict[str, Any]]:
    path = folder / "agent.db"
    await populate(path, sessions=2)
    path.chmod(0o444)  # root could still write it: refused by its mode bits
    return path, {}


async def _read_only_no_migrate(folder: Path) -> tuple[Path, dict[str, Any]]:
    path, _ = await _read_only(folder)
    return path, {"migrate": False}


async def _directory(folder: Path) -> tuple[Path, dict[str, Any]]:
    path = folder / "agent.db"
    path.mkdir()
    (path / "inside.txt").write_text("keep me")
    return path, {}


async def _below_a_file(folder: Path) -> tuple[Path, dict[str, Any]]:
    (folder / "file.txt").write_text("a plain file")
    return folder / "file.txt" / "x.db", {}


async def _hld_without_migrating(folder: Path) -> tuple[Path, dict[str, Any]]:
    path = folder / "daemon.db"
    shutil.copy(Path(__file__).parent / "fixtures" / "hld" / "hld_v22_populated.db", path)
    return path, {"migrate": False}


Setup = Callable[[Path], Awaitable[tuple[Path, dict[str, Any]]]]
REFUSED: list[tuple[str, Setup, type[DatabaseError]]] = [
    ("random bytes", _random_bytes, NotADatabaseError),
    ("empty file, migrate=False", _empty_file, MigrationRequiredError),
    ("missing file, migrate=False", _missing_file, MigrationRequiredError),
    ("newer revision", _newer_revision, SchemaTooNewError),
    ("read-only file", _read_only, ReadOnlyDatabaseError),
    ("read-only file, migrate=False", _read_only_no_migrate, ReadOnlyDatabaseError),
    ("a directory", _directory, NotADatabaseError),
    ("below a regular file", _below_a_file, DatabaseError),
    ("hld file, migrate=False", _hld_without_migrating, LegacyDatabaseError),
]


@pytest.mark.parametrize(
    ("setup", "expected"), [(s, e) for _, s, e in REFUSED], ids=[n for n, _, _ in REFUSED]
)
async def test_a_refused_file_gets_a_named_error_and_keeps_every_byte(
    tmp_path: Path, setup: Setup, expected: type[DatabaseError]
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    target, options = await setup(folder)
    before = snapshot(folder)
    with pytest.raises(expected) as info:
        store = await Store.open(target, **options)
        await store.close()  # not reached unless the open wrongly succeeds
    assert isinstance(info.value, StoreError)
    # Byte for byte, and nothing beside it: no -wal, -shm, -journal, .bak or folder.
    assert snapshot(folder) == before


async def test_a_path_in_proc_is_refused_and_nothing_is_created() -> None:
    target = Path("/proc/agentstore-x.db")
    for migrate in (True, False):
        with pytest.raises(DatabaseError):
            await Store.open(target, migrate=migrate)
        for suffix in ("", "-wal", "-shm", "-journal"):
            assert not Path(f"{target}{suffix}").exists()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_a_page(path: Path) -> None:
    # One whole page of events (a leaf of conversation_events, found with dbstat).
    with sqlite3.connect(path) as conn:
        pages = [
            row[0]
            for row in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = 'conversation_events' "
                "AND pagetype = 'leaf' ORDER BY pageno"
            )
        ]
    data = path.read_bytes()
    at = (pages[len(pages) // 2] - 1) * 4096
    path.write_bytes(data[:at] + random.Random(11).randbytes(4096) + data[at + 4096 :])


@pytest.mark.parametrize("damage", [_truncate, _flip_a_page], ids=["truncated", "page flipped"])
async def test_a_damaged_file_is_named_corrupt_and_keeps_every_byte(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    """The damage is found at open or by the calls that read the damaged pages: each such call
    raises CorruptDatabaseError (or NotADatabaseError), and after close the folder is as it was."""
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "agent.db"
    await populate(path)
    damage(path)
    before = snapshot(folder)
    damaged = (CorruptDatabaseError, NotADatabaseError)
    try:
        store = await Store.open(path)
    except StoreError as exc:
        assert isinstance(exc, damaged), repr(exc)
    else:
        refused = []
        try:
            for i in range(20):
                try:
                    await store.get_conversation(f"c{i}")
                except StoreError as exc:
                    assert isinstance(exc, damaged), repr(exc)
                    refused.append(i)
                    # A write that has to read the damaged pages is refused the same way.
                    with pytest.raises(damaged):
                        await store.hard_delete_session(f"s{i}")
        finally:
            await store.close()
        assert refused, "no call noticed the damage"
    assert snapshot(folder) == before


# --- files that are created ------------------------------------------------------------------


@pytest.mark.parametrize("form", ["path", "uri"])
async def test_new_files_and_folders_are_private(tmp_path: Path, form: str) -> None:
    db = tmp_path / "new" / "deeper" / "agent.db"
    target = str(db) if form == "path" else f"sqlite+aiosqlite:///file:{db}?uri=true"
    async with await Store.open(target) as store:
        await store.create_session(Session(id="s", run_id="r", query="q", claude_session_id="c"))
        await store.add_conversation_events(
            [ConversationEvent(session_id="s", claude_session_id="c") for _ in range(10)]
        )
        for suffix in ("", "-wal", "-shm"):
            assert stat.S_IMODE(Path(f"{db}{suffix}").stat().st_mode) == 0o600, suffix
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new"]


async def test_relative_paths_are_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hld_fixtures: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    async with await Store.open("relative.db") as store:
        await store.create_session(Session(id="s", run_id="r", query="q"))
    async with await Store.open(tmp_path / "relative.db", migrate=False) as store:
        assert (await store.get_session("s")).query == "q"

    shutil.copy(hld_fixtures / "hld_v22_populated.db", tmp_path / "rel.db")
    with contextlib.closing(sqlite3.connect(tmp_path / "rel.db")) as conn:
        sessions = conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
    report = await agentstore.adopt_file("./rel.db")
    assert report.backup is not None and Path(report.backup).exists()
    async with await Store.open(tmp_path / "rel.db", migrate=False) as store:
        assert await store.get_session_count() == sessions


@pytest.mark.parametrize("kind", ["agentstore file", "random bytes", "empty file"])
async def test_a_failed_adoption_leaves_no_backup(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "daemon.db"
    if kind == "agentstore file":
        await populate(path, sessions=1)
    elif kind == "random bytes":
        path.write_bytes(random.Random(3).randbytes(8192))
    else:
        path.write_bytes(b"")
    before = snapshot(folder)
    with pytest.raises(DatabaseError):
        await agentstore.adopt_file(path)
    assert snapshot(folder) == before
    assert not list(folder.glob("*.bak"))


async def test_adopting_a_missing_file_creates_nothing() -> None:
    with pytest.raises(DatabaseError):
        await agentstore.adopt_file("/nonexistent/x.db")
    assert not Path("/nonexistent").exists()


# --- URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["postgresql+psycopg://u@h/d", "mysql://u@h/d"])
async def test_unsupported_urls_are_invalid_values(url: str) -> None:
    with pytest.raises(InvalidValueError):
        await Store.open(url)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+asyncpg://u@127.0.0.1:1/d?password={SECRET}",
        f"postgresql+asyncpg://u:{SECRET}@127.0.0.1:1/d",
    ],
    ids=["in the query", "in the netloc"],
)
async def test_a_password_never_shows_in_errors_or_logs(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DatabaseError) as info:
        await asyncio.wait_for(Store.open(url), 60)
    assert hide_and_seek(info.value, SECRET) == []
    assert "127.0.0.1" in str(info.value)  # it does say where
    assert SECRET not in caplog.text
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in repr(record.args)


async def test_a_query_password_never_shows_in_what_an_open_store_exposes(
    postgres_url: str,
) -> None:
    async with Store.open(f"{postgres_url}?password={SECRET}") as store:
        shown = [repr(store), str(store), repr(store.engine.url), repr(store.engine.sync_engine)]
    assert [text for text in shown if SECRET in text] == []


# --- inputs: text that no backend stores exactly ----------------------------------------------


def text_fields(cls: type[Any]) -> list[str]:
    """The str fields of a model or of SessionUpdate, from their annotations."""
    names = []
    for name, annotation in cls.__annotations__.items():
        if annotation in ("Mapped[str]", "Mapped[str | None]", "Maybe[str]", "Maybe[str | None]"):
            names.append(name)
    return names


async def _seed(store: Store) -> None:
    await store.create_session(
        Session(id="s1", run_id="r1", query="q", title="t", claude_session_id="c1")
    )
    await store.add_conversation_event(
        ConversationEvent(
            session_id="s1",
            claude_session_id="c1",
            event_type="tool_call",
            tool_id="t1",
            tool_name="Bash",
        )
    )
    await store.create_approval(Approval(id="a1", run_id="r1", session_id="s1", tool_name="Bash"))


async def _everything(store: Store) -> tuple[Any, ...]:
    """Every stored row that the calls under test could touch."""
    return (
        await store.list_sessions(),
        await store.get_conversation("c1"),
        await store.get_approval("a1"),
        await store.get_mcp_servers("s1"),
        await store.get_file_snapshots("s1"),
        await store.raw_events.list("s1"),
        await store.get_session_count(),
        await store.get_event_count(),
        await store.get_approval_count(),
    )


async def _refusals(calls: dict[str, Callable[[], Awaitable[Any]]]) -> list[str]:
    """The calls that did not raise InvalidValueError, with what they did instead."""
    wrong = []
    for label, call in calls.items():
        try:
            result = await call()
        except InvalidValueError:
            continue
        except Exception as exc:
            wrong.append(f"{label}: {type(exc).__name__}: {exc}")
        else:
            wrong.append(f"{label}: accepted, returned {result!r}"[:300])
    return wrong


def _model_writes(store: Store, bad: str) -> dict[str, Callable[[], Awaitable[Any]]]:
    calls: dict[str, Callable[[], Awaitable[Any]]] = {}

    def put(label: str, call: Callable[[], Awaitable[Any]]) -> None:
        calls[label] = call

    for name in text_fields(Session):
        session = Session(id=f"new-{name}", run_id=f"new-{name}", query="q")
        setattr(session, name, bad)
        put(f"Session.{name}", partial(store.create_session, session))
    for name in text_fields(ConversationEvent):
        event = ConversationEvent(session_id="s1", claude_session_id="c1")
        setattr(event, name, bad)
        put(f"ConversationEvent.{name}", partial(store.add_conversation_event, event))
        good = ConversationEvent(session_id="s1", claude_session_id="c1")
        put(
            f"add_conversation_events(good, bad {name})",
            partial(store.add_conversation_events, [good, event]),
        )
    for name in text_fields(Approval):
        approval = Approval(id=f"new-{name}", session_id="s1", tool_name="Bash")
        setattr(approval, name, bad)
        put(f"Approval.{name}", partial(store.create_approval, approval))
    # JSON text escapes a NUL (\u0000) but cannot carry a lone surrogate.
    json_values = (
        [] if "\x00" in bad else [("value", {"k": bad}), ("key", {bad: 1}), ("item", [1, bad])]
    )
    for label, value in json_values:
        approval = Approval(id=f"json-{label}", session_id="s1", tool_name="Bash")
        approval.tool_input = value
        put(f"Approval.tool_input {label}", partial(store.create_approval, approval))
    for name in text_fields(MCPServer):
        server = MCPServer(session_id="s1", name="n", command="c")
        setattr(server, name, bad)
        good_server = MCPServer(session_id="s1", name="ok", command="c")
        put(f"MCPServer.{name}", partial(store.store_mcp_servers, "s1", [good_server, server]))
    for name in text_fields(FileSnapshot):
        snap = FileSnapshot(session_id="s1", tool_id="t1", file_path="/f", content="c")
        setattr(snap, name, bad)
        put(f"FileSnapshot.{name}", partial(store.create_file_snapshot, snap))
    put("store_raw_event(event_json)", lambda: store.store_raw_event("s1", bad))
    for name in text_fields(SessionUpdate):
        fields: dict[str, Any] = {name: bad}
        put(f"SessionUpdate.{name}", partial(store.update_session, "s1", SessionUpdate(**fields)))
    return calls


def _lookups(store: Store, bad: str) -> dict[str, Callable[[], Awaitable[Any]]]:
    server = MCPServer(name="n", command="c")
    return {
        "get_session": lambda: store.get_session(bad),
        "get_session_by_run_id": lambda: store.get_session_by_run_id(bad),
        "get_conversation": lambda: store.get_conversation(bad),
        "get_session_conversation": lambda: store.get_session_conversation(bad),
        "search_sessions_by_title": lambda: store.search_sessions_by_title(bad),
        "get_approval": lambda: store.get_approval(bad),
        "get_pending_approvals": lambda: store.get_pending_approvals(bad),
        "get_pending_tool_call(session)": lambda: store.get_pending_tool_call(bad, "Bash"),
        "get_pending_tool_call(tool)": lambda: store.get_pending_tool_call("s1", bad),
        "get_pending_tool_calls": lambda: store.get_pending_tool_calls(bad),
        "get_uncorrelated_pending_tool_call(session)": (
            lambda: store.get_uncorrelated_pending_tool_call(bad, "Bash")
        ),
        "get_uncorrelated_pending_tool_call(tool)": (
            lambda: store.get_uncorrelated_pending_tool_call("s1", bad)
        ),
        "get_tool_call_by_id": lambda: store.get_tool_call_by_id(bad),
        "mark_tool_call_completed(tool)": lambda: store.mark_tool_call_completed(bad, "s1"),
        "mark_tool_call_completed(session)": lambda: store.mark_tool_call_completed("t1", bad),
        "correlate_approval(session)": lambda: store.correlate_approval(bad, "Bash", "a1"),
        "correlate_approval(tool)": lambda: store.correlate_approval("s1", bad, "a1"),
        "correlate_approval(approval)": lambda: store.correlate_approval("s1", "Bash", bad),
        "link…(session)": (
            lambda: store.link_conversation_event_to_approval_using_tool_id(bad, "t1", "a1")
        ),
        "link…(tool)": (
            lambda: store.link_conversation_event_to_approval_using_tool_id("s1", bad, "a1")
        ),
        "link…(approval)": (
            lambda: store.link_conversation_event_to_approval_using_tool_id("s1", "t1", bad)
        ),
        "update_approval_status(approval)": lambda: store.update_approval_status(bad, "approved"),
        "update_approval_status(status)": lambda: store.update_approval_status("a1", bad),
        "update_approval_response(approval)": (
            lambda: store.update_approval_response(bad, "approved")
        ),
        "update_approval_response(status)": lambda: store.update_approval_response("a1", bad),
        "update_approval_response(comment)": (
            lambda: store.update_approval_response("a1", "approved", bad)
        ),
        "get_mcp_servers": lambda: store.get_mcp_servers(bad),
        "store_mcp_servers(session)": lambda: store.store_mcp_servers(bad, [server]),
        "store_raw_event(session)": lambda: store.store_raw_event(bad, "{}"),
        "raw_events.list": lambda: store.raw_events.list(bad),
        "get_file_snapshots": lambda: store.get_file_snapshots(bad),
        "hard_delete_session": lambda: store.hard_delete_session(bad),
        "update_session(id)": lambda: store.update_session(bad, SessionUpdate(title="t")),
        "list_sessions(before id)": lambda: store.list_sessions(before=(T0, bad)),
        "list_sessions(statuses)": lambda: store.list_sessions(statuses=[bad]),
    }


@pytest.mark.parametrize("bad", ["x\ud800", "a\x00b", "\udfff"], ids=["surrogate", "NUL", "low"])
async def test_text_no_backend_can_store_is_refused_everywhere(store: Store, bad: str) -> None:
    await _seed(store)
    before = await _everything(store)
    writes = _model_writes(store, bad)
    assert {"Session.title", "Session.proxy_api_key", "Session.editor_state"} <= set(writes)
    assert {"ConversationEvent.content", "Approval.tool_use_id", "MCPServer.env_json"} <= set(
        writes
    )
    assert {"FileSnapshot.content", "SessionUpdate.title"} <= set(writes)
    assert await _refusals(writes) == []
    assert await _refusals(_lookups(store, bad)) == []
    assert await _everything(store) == before


class NoOffset(tzinfo):
    """An aware-looking tzinfo that has no offset: a naive datetime in disguise."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


LATE = datetime.max.replace(tzinfo=timezone(timedelta(hours=-14)))  # past 9999 in UTC
EARLY = datetime.min.replace(tzinfo=timezone(timedelta(hours=14)))  # before year 1 in UTC
DISGUISED = datetime(2025, 1, 1, tzinfo=NoOffset())


async def test_wrong_types_and_numbers_out_of_range_are_refused(store: Store) -> None:
    await _seed(store)
    before = await _everything(store)
    bad: Any = None

    def session(**fields: Any) -> Callable[[], Awaitable[Any]]:
        return lambda: store.create_session(Session(id="new", run_id="new", query="q", **fields))

    def update(**fields: Any) -> Callable[[], Awaitable[Any]]:
        return lambda: store.update_session("s1", SessionUpdate(**fields))

    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "get_session(dict)": lambda: store.get_session({"a": 1}),  # type: ignore[arg-type]
        "get_conversation(limit='5')": lambda: store.get_conversation("c1", limit="5"),  # type: ignore[arg-type]
        "get_conversation(limit=1.5)": lambda: store.get_conversation("c1", limit=1.5),  # type: ignore[arg-type]
        "get_conversation(after='x')": (
            lambda: store.get_conversation("c1", after_sequence="x")  # type: ignore[arg-type]
        ),
        "get_conversation(after=2**64)": lambda: store.get_conversation("c1", after_sequence=2**64),
        "get_conversation(after=-2**63-1)": (
            lambda: store.get_conversation("c1", after_sequence=-(2**63) - 1)
        ),
        "get_conversation(before=2**63)": (
            lambda: store.get_conversation("c1", before_sequence=2**63)
        ),
        "get_conversation(limit=2**64)": lambda: store.get_conversation("c1", limit=2**64),
        "list_sessions(before='x')": lambda: store.list_sessions(before="x"),  # type: ignore[arg-type]
        "list_sessions(limit=2**64)": lambda: store.list_sessions(limit=2**64),
        "list_sessions(before=disguised naive)": (
            lambda: store.list_sessions(before=(DISGUISED, "s1"))
        ),
        "search_sessions_by_title(limit=2**64)": (
            lambda: store.search_sessions_by_title("q", 2**64)
        ),
        "update_session(None)": lambda: store.update_session("s1", bad),
        "Session.created_at beyond 9999": session(created_at=LATE),
        "Session.completed_at before year 1": session(completed_at=EARLY),
        "Session.created_at disguised naive": session(created_at=DISGUISED),
        "Session.created_at naive": session(created_at=datetime(2025, 1, 1)),
        "Session.cost_usd=10**400": session(cost_usd=10**400),
        "Session.cost_usd=nan": session(cost_usd=math.nan),
        "Session.cost_usd=inf": session(cost_usd=math.inf),
        "Session.cost_usd=-inf": session(cost_usd=-math.inf),
        "Session.max_turns=2**63": session(max_turns=2**63),
        "Session.input_tokens='5'": session(input_tokens="5"),
        "Session.archived=1": session(archived=1),
        "SessionUpdate.last_activity_at beyond 9999": update(last_activity_at=LATE),
        "SessionUpdate.completed_at before year 1": update(completed_at=EARLY),
        "SessionUpdate.last_activity_at disguised naive": update(last_activity_at=DISGUISED),
        "SessionUpdate.cost_usd=10**400": update(cost_usd=10**400),
        "SessionUpdate.cost_usd=nan": update(cost_usd=math.nan),
        "SessionUpdate.cost_usd=inf": update(cost_usd=math.inf),
        "SessionUpdate.input_tokens=-2**63-1": update(input_tokens=-(2**63) - 1),
        "SessionUpdate.last_activity_at=None": update(last_activity_at=None),
        "Approval.created_at beyond 9999": lambda: store.create_approval(
            Approval(id="new", session_id="s1", created_at=LATE)
        ),
        "Approval.tool_input nan": lambda: store.create_approval(
            Approval(id="new", session_id="s1", tool_input={"x": math.nan})
        ),
        "Approval.tool_input object": lambda: store.create_approval(
            Approval(id="new", session_id="s1", tool_input={"x": object()})
        ),
        "ConversationEvent.created_at disguised naive": lambda: store.add_conversation_event(
            ConversationEvent(session_id="s1", claude_session_id="c1", created_at=DISGUISED)
        ),
        "FileSnapshot.created_at before year 1": lambda: store.create_file_snapshot(
            FileSnapshot(session_id="s1", created_at=EARLY)
        ),
        "UserSettings.advanced_providers=1": lambda: store.update_user_settings(
            UserSettings(advanced_providers=1)  # type: ignore[arg-type]
        ),
    }
    assert await _refusals(calls) == []
    assert await _everything(store) == before


@pytest.mark.parametrize(
    "value",
    [
        datetime.max.replace(tzinfo=timezone(timedelta(hours=14))),
        datetime.min.replace(tzinfo=timezone(timedelta(hours=-14))),
    ],
    ids=["max at +14h", "min at -14h"],
)
async def test_extreme_datetimes_that_exist_in_utc_read_back_as_the_same_instant(
    store: Store, value: datetime
) -> None:
    # datetime.max at +14:00 is 9999-12-31 09:59:59.999999 UTC (and datetime.min at -14:00
    # 0001-01-01 14:00 UTC): representable on every backend, so stored rather than refused.
    await store.create_session(Session(id="s", run_id="r", query="q", created_at=value))
    await store.update_session("s", SessionUpdate(completed_at=value))
    got = await store.get_session("s")
    assert got.created_at == value and got.completed_at == value
    assert got.created_at.tzinfo is UTC and got.created_at.astimezone(UTC) == value.astimezone(UTC)


async def test_a_long_search_query_finds_nothing_quickly(store: Store) -> None:
    for i in range(20):
        await store.create_session(Session(id=f"s{i}", run_id=f"r{i}", query="x" * 200))
    started = time.perf_counter()
    assert await store.search_sessions_by_title("x" * 60_000) == []
    assert time.perf_counter() - started < 2


FITS = ["a" * 1024, "😀" * 256, "é" * 512, "é" * 511 + "ab"]
TOO_LONG = ["a" * 1025, "😀" * 256 + "a", "é" * 513, "😀" * 1000]


@pytest.mark.parametrize("value", FITS, ids=["ascii", "4-byte", "2-byte", "mixed"])
async def test_indexed_text_of_1024_bytes_is_stored_and_read_back(store: Store, value: str) -> None:
    assert len(value.encode()) == 1024
    await store.create_session(
        Session(id=value, run_id=value, query="q", title=value, claude_session_id=value)
    )
    got = await store.get_session(value)
    assert (got.id, got.run_id, got.title, got.claude_session_id) == (value,) * 4
    assert (await store.get_session_by_run_id(value)) == got
    await store.update_session(value, SessionUpdate(title=value[::-1]))
    assert (await store.get_session(value)).title == value[::-1]
    event = await store.add_conversation_event(
        ConversationEvent(session_id=value, claude_session_id=value)
    )
    assert [e.id for e in await store.get_conversation(value)] == [event.id]
    await store.create_approval(Approval(id=value, session_id=value, tool_name="Bash"))
    assert (await store.get_approval(value)).id == value


@pytest.mark.parametrize("value", TOO_LONG, ids=["ascii", "4-byte", "2-byte", "long"])
async def test_indexed_text_over_1024_bytes_is_refused_alike(store: Store, value: str) -> None:
    assert len(value.encode()) > 1024
    await store.create_session(Session(id="s1", run_id="r1", query="q", claude_session_id="c1"))
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "Session.id": lambda: store.create_session(Session(id=value, run_id="r", query="q")),
        "Session.run_id": lambda: store.create_session(Session(id="s", run_id=value, query="q")),
        "Session.title": lambda: store.create_session(
            Session(id="s", run_id="r", query="q", title=value)
        ),
        "SessionUpdate.title": lambda: store.update_session("s1", SessionUpdate(title=value)),
        "Approval.id": lambda: store.create_approval(Approval(id=value, session_id="s1")),
        "ConversationEvent.claude_session_id": lambda: store.add_conversation_event(
            ConversationEvent(session_id="s1", claude_session_id=value)
        ),
    }
    assert await _refusals(calls) == []
    assert await store.get_session_count() == 1
    assert (await store.get_session("s1")).title == ""
    assert (await store.get_approval_count(), await store.get_event_count()) == (0, 0)


async def test_search_folds_unicode_case_and_takes_wildcards_literally(store: Store) -> None:
    titles = {"upper": "ÉCOLE", "inner": "alphabetagamma", "pct": "50% off", "us": "snake_case"}
    titles |= {"plain": "fifty off", "nous": "snakecase"}
    for i, (key, title) in enumerate(titles.items()):
        await store.create_session(
            Session(id=key, run_id=key, query="q", title=title, last_activity_at=T0 + timedelta(i))
        )

    async def found(query: str) -> set[str]:
        return {s.id for s in await store.search_sessions_by_title(query)}

    assert await found("école") == {"upper"}
    assert await found("ÉcOlE") == {"upper"}
    assert await found("beta") == {"inner"}
    assert await found("%") == {"pct"}
    assert await found("_") == {"us"}
    assert await found("%off") == set()


async def test_nul_inside_json_is_an_escape_and_reads_back(store: Store) -> None:
    await store.create_session(Session(id="s1", run_id="r1", query="q"))
    value = {"a\x00b": ["x\x00", {"\x00": "\x00\x00"}]}
    await store.create_approval(Approval(id="a1", session_id="s1", tool_input=value))
    assert (await store.get_approval("a1")).tool_input == value


async def test_json_object_keys_come_back_as_text(store: Store) -> None:
    await store.create_session(Session(id="s1", run_id="r1", query="q"))
    await store.create_approval(
        Approval(id="a1", session_id="s1", tool_name="Bash", tool_input={1: "a"})
    )
    assert (await store.get_approval("a1")).tool_input == {"1": "a"}


async def test_a_run_id_conflict_names_the_run_id(store: Store) -> None:
    await store.create_session(Session(id="session-alpha", run_id="run-omega", query="q"))
    with pytest.raises(DuplicateError) as info:
        await store.create_session(Session(id="session-beta", run_id="run-omega", query="q"))
    assert "run-omega" in str(info.value)
    assert "session-alpha" not in str(info.value)
    assert await store.get_session_by_run_id("run-omega") == await store.get_session(
        "session-alpha"
    )
    assert await store.get_session_count() == 1


# --- the store object ------------------------------------------------------------------------

SPEC_FACADE = """
create_session update_session hard_delete_session get_session get_session_by_run_id
list_sessions search_sessions_by_title get_expired_dangerous_permissions_sessions
add_conversation_event get_conversation get_session_conversation get_pending_tool_call
get_pending_tool_calls get_uncorrelated_pending_tool_call get_tool_call_by_id
mark_tool_call_completed correlate_approval link_conversation_event_to_approval_using_tool_id
update_approval_status store_mcp_servers get_mcp_servers store_raw_event create_approval
get_approval get_pending_approvals update_approval_response create_file_snapshot
get_file_snapshots get_recent_working_dirs get_user_settings update_user_settings
get_session_count get_approval_count get_event_count add_conversation_events
""".split()


def facade_calls(store: Store) -> dict[str, Callable[[], Awaitable[Any]]]:
    event = ConversationEvent(session_id="s1", claude_session_id="c1")
    return {
        "create_session": lambda: store.create_session(Session(id="s9", run_id="r9", query="q")),
        "update_session": lambda: store.update_session("s1", SessionUpdate(title="t")),
        "hard_delete_session": lambda: store.hard_delete_session("s1"),
        "get_session": lambda: store.get_session("s1"),
        "get_session_by_run_id": lambda: store.get_session_by_run_id("r1"),
        "list_sessions": lambda: store.list_sessions(),
        "search_sessions_by_title": lambda: store.search_sessions_by_title("q", 10),
        "get_expired_dangerous_permissions_sessions": (
            lambda: store.get_expired_dangerous_permissions_sessions()
        ),
        "add_conversation_event": lambda: store.add_conversation_event(event),
        "add_conversation_events": lambda: store.add_conversation_events([event]),
        "get_conversation": lambda: store.get_conversation("c1"),
        "get_session_conversation": lambda: store.get_session_conversation("s1"),
        "get_pending_tool_call": lambda: store.get_pending_tool_call("s1", "Bash"),
        "get_pending_tool_calls": lambda: store.get_pending_tool_calls("s1"),
        "get_uncorrelated_pending_tool_call": (
            lambda: store.get_uncorrelated_pending_tool_call("s1", "Bash")
        ),
        "get_tool_call_by_id": lambda: store.get_tool_call_by_id("t1"),
        "mark_tool_call_completed": lambda: store.mark_tool_call_completed("t1", "s1"),
        "correlate_approval": lambda: store.correlate_approval("s1", "Bash", "a1"),
        "link_conversation_event_to_approval_using_tool_id": (
            lambda: store.link_conversation_event_to_approval_using_tool_id("s1", "t1", "a1")
        ),
        "update_approval_status": lambda: store.update_approval_status("a1", "approved"),
        "store_mcp_servers": lambda: store.store_mcp_servers("s1", [MCPServer(name="n")]),
        "get_mcp_servers": lambda: store.get_mcp_servers("s1"),
        "store_raw_event": lambda: store.store_raw_event("s1", "{}"),
        "create_approval": lambda: store.create_approval(Approval(id="a9", session_id="s1")),
        "get_approval": lambda: store.get_approval("a1"),
        "get_pending_approvals": lambda: store.get_pending_approvals("s1"),
        "update_approval_response": lambda: store.update_approval_response("a1", "approved"),
        "create_file_snapshot": lambda: store.create_file_snapshot(FileSnapshot(session_id="s1")),
        "get_file_snapshots": lambda: store.get_file_snapshots("s1"),
        "get_recent_working_dirs": lambda: store.get_recent_working_dirs(),
        "get_user_settings": lambda: store.get_user_settings(),
        "update_user_settings": lambda: store.update_user_settings(UserSettings()),
        "get_session_count": lambda: store.get_session_count(),
        "get_approval_count": lambda: store.get_approval_count(),
        "get_event_count": lambda: store.get_event_count(),
        "sessions.get (a repository)": lambda: store.sessions.get("s1"),
        "conversations.add (a repository)": lambda: store.conversations.add(event),
        "raw_events.list (a repository)": lambda: store.raw_events.list("s1"),
    }


async def _closed_store_refuses_everything(store: Store) -> None:
    await _seed(store)
    await store.close()
    await store.close()  # twice is fine
    assert store.closed
    calls = facade_calls(store)
    assert set(SPEC_FACADE) <= set(calls)
    wrong = []
    for label, call in calls.items():
        try:
            await asyncio.wait_for(call(), 5)
        except StoreClosedError as exc:
            if str(exc) != "store is closed":
                wrong.append(f"{label}: message {exc}")
        except BaseException as exc:
            wrong.append(f"{label}: {type(exc).__name__}: {exc}")
        else:
            wrong.append(f"{label}: accepted")
    assert wrong == []
    with pytest.raises(StoreClosedError, match=r"^store is closed$"):
        async with store.transaction():
            pass
    assert issubclass(StoreClosedError, StoreError)
    await store.close()


async def test_a_closed_store_refuses_every_call(db_url: str) -> None:
    await _closed_store_refuses_everything(await Store.open(db_url))


async def test_a_closed_memory_store_refuses_every_call() -> None:
    await _closed_store_refuses_everything(await Store.open(":memory:"))


async def _other_tasks_are_told_at_once(store: Store, memory: bool) -> None:
    # tests/test_data_path.py covers create_session; these are the other doors.
    await _seed(store)
    event = ConversationEvent(session_id="s1", claude_session_id="c1", content="in block")

    async def in_another_task(call: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        return await asyncio.wait_for(asyncio.create_task(call()), 5)

    async def open_block() -> None:
        async with store.transaction():
            pass

    async with store.transaction():
        await store.update_session("s1", SessionUpdate(title="in block"))
        calls: list[Callable[[], Coroutine[Any, Any, Any]]] = [
            lambda: store.add_conversation_event(event),
            lambda: store.add_conversation_events([event]),
            lambda: store.update_approval_response("a1", "approved"),
            open_block,
        ]
        for call in calls:
            started = time.perf_counter()
            with pytest.raises(StoreError, match="another task"):
                await in_another_task(call)
            assert time.perf_counter() - started < 2
        if memory:
            # One connection, held by the block: a read would wait for it.
            with pytest.raises(StoreError, match="another task"):
                await in_another_task(lambda: store.get_session("s1"))
        else:
            # Reads from other tasks run beside the block and see what is committed.
            seen = await in_another_task(lambda: store.get_session("s1"))
            assert seen.title == "t"
    assert (await store.get_session("s1")).title == "in block"
    assert await store.get_event_count() == 1
    assert (await store.get_approval("a1")).status is ApprovalStatus.PENDING


async def test_other_tasks_inside_a_block_are_told_at_once(db_url: str) -> None:
    async with Store.open(db_url) as store:
        await _other_tasks_are_told_at_once(store, memory=False)


async def test_other_tasks_inside_a_block_of_a_memory_store_are_told_at_once() -> None:
    async with Store.open(":memory:") as store:
        await _other_tasks_are_told_at_once(store, memory=True)


def test_reprs_never_show_secrets() -> None:
    token = "SECRET-0123456789"
    config = MCPServerConfig(
        command="gh-mcp",
        args=[f"--token={token}"],
        env={"GITHUB_TOKEN": token},
        url=f"https://mcp.example.com/sse?token={token}",
        headers={"Authorization": f"Bearer {token}"},
        type="http",
    )
    values: list[object] = [
        Session(id="s", run_id="r", query="q", proxy_api_key=token),
        SessionUpdate(proxy_api_key=token),
        MCPServer(
            session_id="s",
            name="gh",
            command="gh-mcp",
            args_json=f'["--token={token}"]',
            env_json=f'{{"GITHUB_TOKEN":"{token}"}}',
        ),
        config,
        SessionConfig(query="q", mcp_servers={"gh": config}),
        *agentstore.mcp_servers_from_config("s", {"gh": config}),
        *agentstore.mcp_servers_from_config(
            "s", {"std": MCPServerConfig(command="x", args=[f"--token={token}"], env={"T": token})}
        ),
    ]
    for value in values:
        assert token not in repr(value), type(value).__name__
        assert token not in str(value), type(value).__name__
    assert "gh-mcp" in repr(config)  # the repr still says what it is


async def test_reprs_of_stored_values_never_show_secrets(store: Store) -> None:
    token = "SECRET-0123456789"
    await store.create_session(Session(id="s", run_id="r", query="q", proxy_api_key=token))
    await store.store_mcp_servers(
        "s", [MCPServer(name="gh", command="x", args_json=f'["--token={token}"]', env_json=token)]
    )
    stored: list[object] = [
        await store.get_session("s"),
        *await store.list_sessions(),
        *await store.get_mcp_servers("s"),
    ]
    assert (await store.get_session("s")).proxy_api_key == token  # kept, only not shown
    for value in stored:
        assert token not in repr(value)


# --- Alembic on the command line -------------------------------------------------------------


def _alembic(args: list[str], url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("alembic")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "alembic"]
    return subprocess.run(
        [*command, "-c", str(ROOT / "alembic.ini"), *args],
        cwd=cwd,
        env={**os.environ, "AGENTSTORE_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_alembic_upgrade_sql_prints_sql_and_connects_to_nothing(
    tmp_path: Path, backend: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{work / 'offline.db'}"
    else:  # nothing listens on port 1: offline mode must not try
        url = f"postgresql+asyncpg://u:{SECRET}@127.0.0.1:1/offline"
    run = _alembic(["upgrade", "head", "--sql"], url, work)
    assert run.returncode == 0, run.stderr
    assert "CREATE TABLE sessions" in run.stdout
    assert "alembic_version" in run.stdout
    if backend == "postgresql":
        assert "TIMESTAMP WITH TIME ZONE" in run.stdout
    assert list(work.iterdir()) == []
    assert SECRET not in run.stdout + run.stderr


def test_alembic_upgrade_logs_what_it_runs(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    run = _alembic(["upgrade", "head"], f"sqlite+aiosqlite:///{db}", tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Running upgrade" in run.stderr
    assert "INFO" in run.stderr
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM alembic_version").fetchone()[0] == 1
