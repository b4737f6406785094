"""Moving and keeping data (SPEC §10): JSON Lines export and import, copy_database, prune.

Real files and a real PostgreSQL server: every test that takes ``store`` or ``db_url`` runs
on an SQLite file and on a fresh PostgreSQL database. Rows are compared field by field as
the bare driver reads them (``dump``): times as instants, flags as bools, JSON as values —
and ``''`` apart from NULL.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import pty
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from agentstore import (
    Approval,
    ConversationEvent,
    FileSnapshot,
    MCPServerConfig,
    Session,
    Store,
    UserSettings,
    copy_database,
    mcp_servers_from_config,
    transfer,
)
from agentstore.db import Conn
from agentstore.errors import (
    InvalidValueError,
    LegacyDatabaseError,
    NotFoundError,
    StoreError,
)
from agentstore.models import Base
from agentstore.testing import POSTGRES_ENV, fresh_postgres_database
from agentstore.transfer import CopyRefusedError, ImportRefusedError
from agentstore.types import Flag, JSONValue, UTCDateTime, read_timestamp

AGENTSTORE = Path(sys.executable).parent / "agentstore"
T0 = datetime(2025, 1, 15, 10, 30, 0, 123456, tzinfo=UTC)
PDT = timezone(timedelta(hours=-7))
NEPAL = timezone(timedelta(hours=5, minutes=45))
SECRET_KEY = "sk-or-v1-secret-0123456789"
SECRET_TOKEN = "ghp_token_abcdef"
TABLES = (
    "user_settings",
    "schema_version",
    "sessions",
    "conversation_events",
    "approvals",
    "mcp_servers",
    "raw_events",
    "file_snapshots",
)
DATA = TABLES[1:]  # what an import writes besides the settings
ROW_TABLES = TABLES[2:]

Dump = dict[str, dict[Any, dict[str, Any]]]


# --- reading every row with the bare driver -----------------------------------------------------


def _normal(column: sa.Column[Any], value: Any) -> Any:
    if value is None:
        return None
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return value.astimezone(UTC) if isinstance(value, datetime) else read_timestamp(value)
    if isinstance(kind, Flag | sa.Boolean):
        return bool(value)
    if isinstance(kind, JSONValue):
        return None if value == "" else json.loads(value) if isinstance(value, str) else value
    if isinstance(kind, sa.Float):
        return float(value)
    return value


def url_of(store: Store) -> str:
    return store.engine.url.render_as_string(hide_password=False)


async def dump(target: str | Path | Store, tables: tuple[str, ...] = TABLES) -> Dump:
    """Every row of ``tables``, read with sqlite3 or asyncpg (not through agentstore)."""
    url = url_of(target) if isinstance(target, Store) else str(target)
    out: Dump = {}
    if "://" not in url or url.startswith("sqlite"):
        path = make_url(url).database if "://" in url else url
        assert path
        with contextlib.closing(sqlite3.connect(path)) as conn:
            for name in tables:
                columns = list(Base.metadata.tables[name].columns)
                sql = f"SELECT {', '.join(c.name for c in columns)} FROM {name}"
                out[name] = _rows(columns, conn.execute(sql).fetchall())
        return out
    import asyncpg

    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        for name in tables:
            columns = list(Base.metadata.tables[name].columns)
            sql = f"SELECT {', '.join(c.name for c in columns)} FROM {name}"
            out[name] = _rows(columns, await conn.fetch(sql))
    finally:
        await conn.close()
    return out


def _rows(columns: list[sa.Column[Any]], rows: Any) -> dict[Any, dict[str, Any]]:
    found: dict[Any, dict[str, Any]] = {}
    for row in rows:
        values = {c.name: _normal(c, v) for c, v in zip(columns, row, strict=True)}
        key = values.get("id", values.get("version"))
        assert key not in found
        found[key] = values
    return found


async def raw_sql(store: Store, sql: str, *args: Any) -> None:
    """Run SQL on the store's own connection (``?`` placeholders become ``$n`` on PG)."""
    if store.dialect != "sqlite":
        for n in range(1, len(args) + 1):
            sql = sql.replace("?", f"${n}", 1)

    async def unit(conn: Conn) -> None:
        await conn.raw_rows(sql, list(args))

    await store.write(unit)


def stamp(store: Store, value: datetime, text: str | None = None) -> Any:
    """A time as raw SQL takes it: hld-style text on SQLite, a datetime on PostgreSQL."""
    if store.dialect == "sqlite":
        return text if text is not None else value.isoformat(sep=" ")
    return value


# --- a store worth moving -------------------------------------------------------------------


async def populate(store: Store) -> None:
    """Sessions (a resume chain, archived, proxy secrets), events of every kind, approvals,
    MCP servers, raw events, snapshots and settings, with awkward values — and, written
    with SQL, NULL where the store would write ''."""
    root = Session(
        id="root",
        run_id="run-root",
        query="fix the bug — ünïcødé 🚀",
        claude_session_id="c-root",
        title='quotes " and \\ backslash',
        summary="line1\nline2\ttab\x01control\u2028sep",
        model="opus",
        working_dir="/src/app",
        max_turns=7,
        status="completed",
        created_at=T0,
        last_activity_at=T0 + timedelta(minutes=5),
        completed_at=datetime(2025, 1, 15, 3, 35, 0, 1, tzinfo=PDT),
        cost_usd=0.1 + 0.2,
        input_tokens=2**63 - 1,
        output_tokens=0,
        num_turns=-3,
        proxy_enabled=True,
        proxy_base_url="https://proxy.example/v1",
        proxy_api_key=SECRET_KEY,
        dangerously_skip_permissions=True,
        dangerously_skip_permissions_expires_at=datetime(2025, 1, 15, 16, 0, 0, tzinfo=NEPAL),
        editor_state="",
        allowed_tools='["Read","Grep"]',
    )
    child = Session(
        id="child",
        run_id="run-child",
        query="go on",
        claude_session_id="c-child",
        parent_session_id="root",
        status="waiting_input",
        created_at=T0 + timedelta(hours=1),
        last_activity_at=T0 + timedelta(hours=1, microseconds=999999),
        editor_state=None,
        auto_accept_edits=True,
    )
    other = Session(
        id="other",
        run_id="run-other",
        query="",
        status="draft",
        archived=True,
        created_at=datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        last_activity_at=datetime(2024, 3, 1, 0, 0, tzinfo=UTC),
        editor_state='{"doc":"<p>é &amp; 漢字</p>"}',
        cost_usd=1e-300,
    )
    for session in (root, child, other):
        await store.create_session(session)
    events = [
        ConversationEvent(
            session_id="root",
            claude_session_id="c-root",
            event_type="message",
            role="user",
            content='hello\r\nworld "quoted" \\ \x7f end 😀',
            created_at=T0,
        ),
        ConversationEvent(
            session_id="root",
            claude_session_id="c-root",
            event_type="tool_call",
            tool_id="toolu_1",
            tool_name="Bash",
            tool_input_json='{"command":"ls \\u003c\\u0026"}',
            approval_status="approved",
            approval_id="local-1",
            created_at=T0 + timedelta(seconds=1, microseconds=1),
        ),
        ConversationEvent(
            session_id="root",
            claude_session_id="c-root",
            event_type="tool_result",
            role="user",
            tool_result_for_id="toolu_1",
            tool_result_content="total 0\n",
            is_completed=True,
            parent_tool_use_id="toolu_0",
            created_at=T0 + timedelta(seconds=2),
        ),
        ConversationEvent(
            session_id="root",
            claude_session_id="c-root",
            event_type="thinking",
            content="x" * 5000,
            created_at=T0 + timedelta(seconds=3),
        ),
    ]
    await store.add_conversation_events(events)
    await store.add_conversation_events(
        [
            ConversationEvent(
                session_id="child",
                claude_session_id="c-child",
                event_type="tool_call",
                tool_id="toolu_9",
                tool_name="Edit",
                approval_status="pending",
                approval_id="a-pending",
                created_at=T0 + timedelta(hours=1),
            ),
            ConversationEvent(
                session_id="child",
                claude_session_id="c-child",
                event_type="system",
                content="",
                created_at=T0 + timedelta(hours=1, seconds=1),
            ),
        ]
    )
    await store.create_approval(
        Approval(
            id="a-decided",
            run_id="run-root",
            session_id="root",
            tool_name="Bash",
            tool_input={"command": "ls", "n": 1.5, "big": 2**62, "nested": [1, None, "é", True]},
            tool_use_id="toolu_1",
            created_at=T0 + timedelta(seconds=1),
        )
    )
    await store.update_approval_response("a-decided", "approved", "ok — ship it")
    await store.create_approval(
        Approval(
            id="a-pending",
            run_id="run-child",
            session_id="child",
            tool_name="Edit",
            tool_input=None,
            created_at=T0 + timedelta(hours=1),
        )
    )
    await store.store_mcp_servers(
        "root",
        mcp_servers_from_config(
            "root",
            {
                "linear": MCPServerConfig(
                    type="http",
                    url="https://mcp.linear.app/mcp?a=1&b=2",
                    headers={"Authorization": SECRET_TOKEN},
                ),
                "pg": MCPServerConfig(
                    command="npx", args=["pg-mcp", "--ro"], env={"PGPASSWORD": SECRET_TOKEN}
                ),
            },
        ),
    )
    await store.store_raw_event("root", '{"type":"init","n":1}')
    await store.store_raw_event("child", "not json at all")
    await store.create_file_snapshot(
        FileSnapshot(
            tool_id="toolu_1",
            session_id="root",
            file_path="/src/é.py",
            content="print('é')\n" * 200,
            created_at=T0,
        )
    )
    await store.update_user_settings(UserSettings(advanced_providers=True, opt_in_telemetry=False))
    # NULL where agentstore writes '' (hld's added columns, old rows): kept apart from ''.
    for sql in (
        "UPDATE sessions SET summary = NULL, model = '', max_turns = NULL WHERE id = 'child'",
        "UPDATE conversation_events SET role = NULL, is_completed = NULL WHERE tool_id = 'toolu_9'",
        "UPDATE mcp_servers SET args_json = NULL WHERE name = 'pg'",
        "UPDATE sessions SET proxy_model_override = NULL WHERE id = 'other'",
    ):
        await raw_sql(store, sql)


async def export_text(store: Store, **options: Any) -> list[str]:
    out = io.BytesIO()
    await store.export_jsonl(out, **options)
    return jsonl_lines(out.getvalue().decode())


def jsonl_lines(text: str) -> list[str]:
    """A JSON Lines text's lines: split at newlines only (a JSON string may hold U+2028,
    which ``str.splitlines`` would split at)."""
    assert text.endswith("\n")
    return text[:-1].split("\n")


def rows_of(lines: list[str]) -> list[str]:
    """The row lines (the header carries the time and backend of the export)."""
    return lines[1:]


def without(d: Dump, *tables: str) -> Dump:
    return {name: rows for name, rows in d.items() if name not in tables}


@pytest.fixture
async def other_backend(agentstore_backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database on the backend the test is not running on."""
    if agentstore_backend == "sqlite":
        if not os.environ.get(POSTGRES_ENV):
            pytest.skip(f"{POSTGRES_ENV} is not set")
        async with fresh_postgres_database() as url:
            yield url
    else:
        yield str(tmp_path / "other.db")


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database of each backend (PostgreSQL when the server is set)."""
    if request.param == "sqlite":
        yield str(tmp_path / f"target-{request.node.name[-20:].strip('[]')}.db")
        return
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"{POSTGRES_ENV} is not set")
    async with fresh_postgres_database() as url:
        yield url


# --- export and import: exact round trips ------------------------------------------------------


async def test_round_trip_is_exact_on_the_same_and_the_other_backend(
    store: Store,
    store_factory: Callable[..., Awaitable[Store]],
    other_backend: str,
    tmp_path: Path,
) -> None:
    await populate(store)
    before = await dump(store)
    path = tmp_path / "all.jsonl"
    counts = await store.export_jsonl(path, include_secrets=True)
    assert counts == {
        "settings": 1,
        "session": 3,
        "event": 6,
        "approval": 2,
        "mcp_server": 2,
        "raw_event": 2,
        "snapshot": 1,
    }
    lines = jsonl_lines(path.read_text())
    assert len(lines) == 1 + sum(counts.values())
    same = await store_factory()
    async with Store.open(other_backend) as other:
        for target in (same, other):
            assert await target.import_jsonl(path) == counts
            # Every column of every row, '' apart from NULL, times to the microsecond.
            assert without(await dump(target), "schema_version") == without(
                before, "schema_version"
            )
            # And exported again, the very same lines.
            assert rows_of(await export_text(target, include_secrets=True)) == rows_of(lines)


async def test_the_values_in_the_file_are_canonical_json(store: Store) -> None:
    await populate(store)
    lines = await export_text(store, include_secrets=True)
    header = json.loads(lines[0])
    assert header["format"] == "agentstore" and header["version"] == 1
    from agentstore import migrations

    assert header["revision"] == migrations.head_revision()
    rows = [json.loads(line) for line in lines[1:]]
    assert [row["type"] for row in rows] == [
        "settings",
        *["session"] * 3,
        *["event"] * 6,
        *["approval"] * 2,
        *["mcp_server"] * 2,
        *["raw_event"] * 2,
        "snapshot",
    ]
    sessions = {row["id"]: row for row in rows if row["type"] == "session"}
    root, child = sessions["root"], sessions["child"]
    assert root["created_at"] == "2025-01-15T10:30:00.123456+00:00"
    assert root["completed_at"] == "2025-01-15T10:35:00.000001+00:00"
    assert root["dangerously_skip_permissions_expires_at"] == "2025-01-15T10:15:00.000000+00:00"
    assert root["cost_usd"] == 0.1 + 0.2 and root["input_tokens"] == 2**63 - 1
    assert root["proxy_enabled"] is True and root["archived"] is False
    assert root["editor_state"] == "" and child["editor_state"] is None
    assert child["summary"] is None and child["model"] == "" and child["max_turns"] is None
    assert root["summary"] == "line1\nline2\ttab\x01control\u2028sep"
    approval = next(r for r in rows if r["type"] == "approval" and r["id"] == "a-decided")
    assert approval["tool_input"] == {
        "command": "ls",
        "n": 1.5,
        "big": 2**62,
        "nested": [1, None, "é", True],
    }
    pending = next(r for r in rows if r["type"] == "approval" and r["id"] == "a-pending")
    assert pending["tool_input"] is None and pending["responded_at"] is None
    events = [r for r in rows if r["type"] == "event"]
    assert [(e["claude_session_id"], e["sequence"]) for e in events] == [
        ("c-root", 1),
        ("c-root", 2),
        ("c-root", 3),
        ("c-root", 4),
        ("c-child", 1),
        ("c-child", 2),
    ]
    assert events[4]["role"] is None and events[4]["is_completed"] is None
    assert events[2]["is_completed"] is True and events[0]["is_completed"] is False


async def test_hld_file_round_trips_exactly(
    hld_fixtures: Path, tmp_path: Path, any_target: str
) -> None:
    """An hld daemon.db (Go's nanosecond times in local offsets, '' and NULL mixed, the
    proxy key, escaped JSON) adopted, exported, imported elsewhere: every row the same."""
    source = tmp_path / "daemon.db"
    shutil.copy(hld_fixtures / "hld_v22_populated.db", source)
    source.chmod(0o600)
    async with Store.open(source, backup=False) as store:
        path = tmp_path / "hld.jsonl"
        counts = await store.export_jsonl(path, include_secrets=True)
        assert counts["session"] == 9 and counts["event"] == 203
    before = await dump(source)
    async with Store.open(any_target) as target:
        assert await target.import_jsonl(path) == counts
    after = await dump(any_target)
    assert without(after, "schema_version") == without(before, "schema_version")
    # Go wrote nanoseconds; the store reads microseconds, and so does the copy.
    with contextlib.closing(sqlite3.connect(source)) as conn:
        raw = conn.execute(
            "SELECT dangerously_skip_permissions_expires_at FROM sessions "
            "WHERE dangerously_skip_permissions_expires_at IS NOT NULL"
        ).fetchone()[0]
    assert raw == "2025-10-22 10:37:12.722037417-07:00"


async def test_sqlite_builds_its_lines_as_python_would(
    hld_fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite the big tables' lines come from SQL; they say what Python's say — also for
    times in hld's forms, Go text the SQL leaves to Python, and a BLOB in a text column."""
    source = tmp_path / "daemon.db"
    shutil.copy(hld_fixtures / "hld_v22_populated.db", source)
    source.chmod(0o600)
    async with Store.open(source, backup=False) as store:
        await raw_sql(
            store,
            "UPDATE conversation_events SET created_at = '2025-10-22 10:37:12.722037417-07:00' "
            "WHERE id = (SELECT MIN(id) FROM conversation_events)",
        )
        await raw_sql(
            store,
            "UPDATE conversation_events SET created_at = '2025-10-22 10:37:12' "
            "WHERE id = (SELECT MAX(id) FROM conversation_events)",
        )
        await raw_sql(
            store,
            "UPDATE raw_events SET event_json = CAST('{\"blob\":1}' AS BLOB) "
            "WHERE id = (SELECT MIN(id) FROM raw_events)",
        )
        from_sql = [json.loads(line) for line in rows_of(await export_text(store))]
        monkeypatch.setattr(transfer, "SQL_LINE_TABLES", ())
        from_python = [json.loads(line) for line in rows_of(await export_text(store))]
    assert from_sql == from_python
    first = next(row for row in from_sql if row["type"] == "event")
    assert first["created_at"] == "2025-10-22T17:37:12.722037+00:00"
    assert next(r for r in from_sql if r["type"] == "raw_event")["event_json"] == '{"blob":1}'


# --- export: which rows, secrets, files ---------------------------------------------------------


async def test_export_of_sessions_takes_their_ancestors_and_everything_of_theirs(
    store: Store, store_factory: Callable[..., Awaitable[Store]], tmp_path: Path
) -> None:
    await populate(store)
    await store.create_session(
        Session(id="grandchild", run_id="run-gc", query="q", parent_session_id="child")
    )
    await store.store_raw_event("grandchild", "{}")
    path = tmp_path / "child.jsonl"
    counts = await store.export_jsonl(path, session_ids=["child", "child"])
    rows = [json.loads(line) for line in jsonl_lines(path.read_text())]
    header = rows.pop(0)
    assert header["sessions"] == ["child", "root"]
    assert header["counts"] == counts
    assert sorted(r["id"] for r in rows if r["type"] == "session") == ["child", "root"]
    assert not [r for r in rows if r["type"] == "settings"]  # settings are not a session's
    assert {r["session_id"] for r in rows if "session_id" in r} == {"child", "root"}
    assert counts == {
        "settings": 0,
        "session": 2,
        "event": 6,
        "approval": 2,
        "mcp_server": 2,
        "raw_event": 2,
        "snapshot": 1,
    }
    target = await store_factory()
    await target.import_jsonl(path)
    assert [s.id for s in await target.list_sessions()] == ["child", "root"]
    conversation = await target.get_session_conversation("child")
    assert [e.claude_session_id for e in conversation] == ["c-root"] * 4 + ["c-child"] * 2


async def test_export_of_an_unknown_session_writes_nothing(store: Store, tmp_path: Path) -> None:
    await populate(store)
    path = tmp_path / "kept.jsonl"
    path.write_text("what was there before\n")
    with pytest.raises(NotFoundError):
        await store.export_jsonl(path, session_ids=["root", "ghost"])
    assert path.read_text() == "what was there before\n"
    assert {p.name for p in tmp_path.iterdir()} == {"kept.jsonl", *_db_files(tmp_path)}
    with pytest.raises(InvalidValueError):
        await store.export_jsonl(tmp_path / "x.jsonl", session_ids="root")


def _db_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".db" in p.name)


async def test_secrets_are_redacted_unless_asked_for(store: Store) -> None:
    await populate(store)
    redacted = await export_text(store)
    header = json.loads(redacted[0])
    assert header["redacted"] == ["sessions.proxy_api_key", "mcp_servers.env_json"]
    text = "\n".join(redacted)
    assert SECRET_KEY not in text and SECRET_TOKEN not in text
    rows = [json.loads(line) for line in redacted[1:]]
    root = next(r for r in rows if r["type"] == "session" and r["id"] == "root")
    assert root["proxy_api_key"] == ""
    envs = {r["name"]: r["env_json"] for r in rows if r["type"] == "mcp_server"}
    assert envs == {"linear": '{"Authorization":""}', "pg": '{"PGPASSWORD":""}'}  # names kept
    full = await export_text(store, include_secrets=True)
    assert json.loads(full[0])["redacted"] == []
    assert SECRET_KEY in "\n".join(full) and SECRET_TOKEN in "\n".join(full)


async def test_an_export_file_is_private_and_replaced_only_when_complete(
    store: Store, tmp_path: Path
) -> None:
    await populate(store)
    old_umask = os.umask(0)
    try:
        path = tmp_path / "export.jsonl"
        path.write_text("old\n")
        path.chmod(0o644)
        await store.export_jsonl(str(path))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith('{"format": "agentstore"')
    assert {p.name for p in tmp_path.iterdir()} == {"export.jsonl", *_db_files(tmp_path)}
    with pytest.raises(StoreError, match="does not exist"):
        await store.export_jsonl(tmp_path / "no" / "such" / "folder.jsonl")
    with pytest.raises(InvalidValueError, match="binary"):
        await store.export_jsonl(io.StringIO())  # type: ignore[arg-type]


# --- import: refusals leave everything as it was ----------------------------------------------


async def _source_file(tmp_path: Path) -> list[str]:
    """A populated store's export (in memory: the file is the same on every backend)."""
    async with Store.open(":memory:") as source:
        await populate(source)
        return await export_text(source, include_secrets=True)


def _edit(lines: list[str], number: int, change: Callable[[dict[str, Any]], Any]) -> None:
    obj = json.loads(lines[number - 1])
    changed = change(obj)
    lines[number - 1] = json.dumps(obj if changed is None else changed)


def _line_of(lines: list[str], kind: str, nth: int = 0) -> int:
    found = [i + 1 for i, line in enumerate(lines) if json.loads(line).get("type") == kind]
    return found[nth]


REFUSALS: dict[str, Callable[[list[str]], int | None]] = {}


def refusal(name: str) -> Callable[[Callable[[list[str]], int | None]], Any]:
    def register(make: Callable[[list[str]], int | None]) -> Any:
        REFUSALS[name] = make
        return make

    return register


@refusal("malformed line")
def _malformed(lines: list[str]) -> int:
    number = _line_of(lines, "event", 2)
    lines[number - 1] = lines[number - 1][:40]
    return number


@refusal("unknown type")
def _unknown_type(lines: list[str]) -> int:
    number = _line_of(lines, "approval")
    _edit(lines, number, lambda o: o.update(type="verdict"))
    return number


@refusal("newer format")
def _newer(lines: list[str]) -> int:
    _edit(lines, 1, lambda o: o.update(version=2))
    return 1


@refusal("not an export")
def _not_an_export(lines: list[str]) -> int:
    lines[0] = '{"format": "something else", "version": 1}'
    return 1


@refusal("value of the wrong kind")
def _wrong_kind(lines: list[str]) -> int:
    number = _line_of(lines, "event", 3)
    _edit(lines, number, lambda o: o.update(sequence="7"))
    return number


@refusal("unknown column")
def _unknown_column(lines: list[str]) -> int:
    number = _line_of(lines, "mcp_server")
    _edit(lines, number, lambda o: o.update(colour="blue"))
    return number


@refusal("naive time")
def _naive(lines: list[str]) -> int:
    number = _line_of(lines, "snapshot")
    _edit(lines, number, lambda o: o.update(created_at="2025-01-15T10:30:00"))
    return number


@refusal("row of a session that is nowhere")
def _orphan(lines: list[str]) -> int:
    number = _line_of(lines, "raw_event")
    _edit(lines, number, lambda o: o.update(session_id="ghost"))
    return number


@refusal("a session twice")
def _twice(lines: list[str]) -> int:
    number = _line_of(lines, "session", 2)
    _edit(lines, number, lambda o: o.update(id="child", run_id="run-x"))
    return number


@refusal("an id the database refuses twice")
def _duplicate_id(lines: list[str]) -> int:
    first = json.loads(lines[_line_of(lines, "event", 0) - 1])
    number = _line_of(lines, "event", 4)
    _edit(lines, number, lambda o: o.update(id=first["id"]))
    return number


@refusal("not an object")
def _not_an_object(lines: list[str]) -> int:
    number = _line_of(lines, "event", 1)
    lines[number - 1] = "[1, 2, 3]"
    return number


@refusal("an empty line")
def _empty_line(lines: list[str]) -> int:
    number = _line_of(lines, "approval")
    lines.insert(number - 1, "   ")
    return number


@refusal("cut short")
def _cut_short(lines: list[str]) -> None:
    del lines[-1]
    return None


@refusal("an existing session")
def _existing(lines: list[str]) -> int:
    return _line_of(lines, "session", 1)  # 'other' (child, other, root), which the store holds


@pytest.mark.parametrize("case", sorted(REFUSALS))
async def test_a_refused_file_names_its_line_and_writes_nothing(
    store: Store, tmp_path: Path, case: str
) -> None:
    lines = await _source_file(tmp_path)
    expected = REFUSALS[case](lines)
    await store.create_session(Session(id="other", run_id="mine", query="already here"))
    await store.add_conversation_event(ConversationEvent(session_id="other", content="mine"))
    await store.update_user_settings(UserSettings(advanced_providers=False, opt_in_telemetry=True))
    if case != "an existing session":
        await store.hard_delete_session("other")
        await store.create_session(Session(id="keep", run_id="keep", query="already here"))
    before = await dump(store)
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ImportRefusedError) as refused:
        await store.import_jsonl(path)
    assert refused.value.line == expected, str(refused.value)
    if expected is not None:
        assert str(refused.value).startswith(f"line {expected}: ")
    assert str(refused.value).endswith("nothing was imported")
    assert await dump(store) == before
    # The store still works, and takes the good file.
    good = await _source_file(tmp_path)
    path.write_text("\n".join(good) + "\n")
    if case == "an existing session":
        counts = await store.import_jsonl(path, on_conflict="skip")
        assert counts["session"] == 2
    else:
        assert (await store.import_jsonl(path))["event"] == 6


async def test_skip_leaves_existing_sessions_and_their_rows_alone(
    store: Store, tmp_path: Path
) -> None:
    lines = await _source_file(tmp_path)
    await store.create_session(Session(id="root", run_id="run-root", query="mine", title="mine"))
    mine = await store.add_conversation_event(
        ConversationEvent(session_id="root", claude_session_id="c-root", content="mine")
    )
    await store.update_user_settings(UserSettings(advanced_providers=False, opt_in_telemetry=True))
    before = await dump(store)
    path = tmp_path / "file.jsonl"
    path.write_text("\n".join(lines) + "\n")
    counts = await store.import_jsonl(path, on_conflict="skip")
    assert counts == {
        "settings": 0,
        "session": 2,
        "event": 2,
        "approval": 1,
        "mcp_server": 0,
        "raw_event": 1,
        "snapshot": 0,
    }
    after = await dump(store)
    assert after["sessions"]["root"] == before["sessions"]["root"]
    assert after["user_settings"] == before["user_settings"]  # the store's settings kept
    root_events = [e for e in after["conversation_events"].values() if e["session_id"] == "root"]
    assert [e["content"] for e in root_events] == ["mine"]
    assert (await store.get_conversation("c-root"))[0].id == mine.id
    assert {s.id for s in await store.list_sessions()} == {"root", "child", "other"}
    with pytest.raises(InvalidValueError):
        await store.import_jsonl(path, on_conflict="replace")


async def test_import_into_a_busy_store_renumbers_ids_and_keeps_sequences(
    store: Store, tmp_path: Path
) -> None:
    lines = await _source_file(tmp_path)
    await store.create_session(Session(id="keep", run_id="keep", query="q", claude_session_id="k"))
    for _ in range(3):
        await store.add_conversation_event(
            ConversationEvent(session_id="keep", claude_session_id="k")
        )
    await store.store_raw_event("keep", "{}")
    path = tmp_path / "file.jsonl"
    path.write_text("\n".join(lines) + "\n")
    await store.import_jsonl(path)
    file_events = [json.loads(line) for line in lines if '"type":"event"' in line]
    stored = await store.get_conversation("c-root") + await store.get_conversation("c-child")
    assert [e.sequence for e in stored] == [e["sequence"] for e in file_events]
    assert [e.content for e in stored] == [e["content"] for e in file_events]
    assert min(e.id for e in stored if e.id is not None) > 3  # after the store's own
    # New rows continue after everything (SQLite's AUTOINCREMENT, PostgreSQL's sequences).
    new = await store.add_conversation_event(
        ConversationEvent(session_id="keep", claude_session_id="k")
    )
    assert new.id is not None and new.id > max(e.id for e in stored if e.id is not None)
    assert new.sequence == 4


async def test_ids_are_kept_in_an_empty_store_and_sequences_continue(
    store: Store, tmp_path: Path
) -> None:
    lines = await _source_file(tmp_path)
    path = tmp_path / "file.jsonl"
    path.write_text("\n".join(lines) + "\n")
    await store.import_jsonl(path)
    file_ids = sorted(json.loads(line)["id"] for line in lines if '"type":"event"' in line)
    stored = sorted((await dump(store))["conversation_events"])
    assert stored == file_ids
    new = await store.add_conversation_event(
        ConversationEvent(session_id="root", claude_session_id="c-root", content="after")
    )
    assert new.id == max(file_ids) + 1 and new.sequence == 5
    snapshot = await store.create_file_snapshot(FileSnapshot(session_id="root", content="x"))
    assert snapshot.id == 2


async def test_import_reads_binary_file_objects_and_refuses_text_ones(store: Store) -> None:
    async with Store.open(":memory:") as source:
        await populate(source)
        buffer = io.BytesIO()
        await source.export_jsonl(buffer)
    buffer.seek(0)
    assert (await store.import_jsonl(buffer))["session"] == 3
    with pytest.raises(InvalidValueError, match="binary"):
        await store.import_jsonl(io.StringIO(buffer.getvalue().decode()))  # type: ignore[arg-type]
    with pytest.raises(ImportRefusedError, match="empty"):
        await store.import_jsonl(io.BytesIO(b""))


# --- copy_database ------------------------------------------------------------------------------


async def test_copy_to_the_other_backend_and_back_is_exact(
    store: Store, other_backend: str, tmp_path: Path
) -> None:
    await populate(store)
    before = await dump(store)
    counts = await copy_database(store, other_backend)
    assert counts["sessions"] == 3 and counts["conversation_events"] == 6
    assert counts["schema_version"] == 20 and counts["user_settings"] == 1
    assert not store.closed  # a store given is left open
    assert await dump(other_backend) == before  # every table, the settings and ledger too
    # The destination continues after the highest copied ids.
    async with Store.open(other_backend) as copied:
        top = max(before["conversation_events"])
        event = await copied.add_conversation_event(
            ConversationEvent(session_id="root", claude_session_id="c-root")
        )
        assert event.id == top + 1 and event.sequence == 5
        snapshot = await copied.create_file_snapshot(FileSnapshot(session_id="root"))
        assert snapshot.id == max(before["file_snapshots"]) + 1
        await copied.store_raw_event("root", "{}")
        assert max((await dump(copied))["raw_events"]) == max(before["raw_events"]) + 1


async def test_copy_between_sqlite_files_is_byte_exact(hld_fixtures: Path, tmp_path: Path) -> None:
    source = tmp_path / "daemon.db"
    shutil.copy(hld_fixtures / "hld_v22_populated.db", source)
    source.chmod(0o600)
    async with Store.open(source, backup=False):
        pass
    dest = tmp_path / "copy.db"
    await copy_database(str(source), dest)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    for table in TABLES:
        with (
            contextlib.closing(sqlite3.connect(source)) as a,
            contextlib.closing(sqlite3.connect(dest)) as b,
        ):
            sql = f"SELECT * FROM {table} ORDER BY 1"
            assert a.execute(sql).fetchall() == b.execute(sql).fetchall(), table


async def test_a_copy_reads_back_equal_through_the_store(
    hld_fixtures: Path, tmp_path: Path, any_target: str
) -> None:
    """An adopted hld file with agentstore's own rows on top, copied: every read the store
    offers answers the same on the copy."""
    source = tmp_path / "daemon.db"
    shutil.copy(hld_fixtures / "hld_v22_populated.db", source)
    source.chmod(0o600)
    async with Store.open(source, backup=False) as store:
        await populate(store)
        await copy_database(store, any_target)
        expected = await api_view(store)
    async with Store.open(any_target) as copied:
        assert await api_view(copied) == expected


async def api_view(store: Store) -> dict[str, Any]:
    """Everything the store's read API answers for its data."""
    view: dict[str, Any] = {}
    sessions = await store.list_sessions()
    view["list"] = [s.to_dict(include_secrets=True) for s in sessions]
    view["visible"] = [
        s.id for s in await store.list_sessions(include_archived=False, statuses=["completed"])
    ]
    view["counts"] = (
        await store.get_session_count(),
        await store.get_event_count(),
        await store.get_approval_count(),
    )
    view["settings"] = (await store.get_user_settings()).to_dict()
    view["dirs"] = await store.get_recent_working_dirs()
    view["titles"] = [s.id for s in await store.search_sessions_by_title("", 50)]
    view["expired"] = [s.id for s in await store.get_expired_dangerous_permissions_sessions()]
    view["search"] = sorted(
        (hit.session_id, hit.event_id or 0, hit.field)
        for hit in await store.search("the", limit=200)
    )
    per: dict[str, Any] = {}
    for session in sessions:
        got: dict[str, Any] = {}
        got["get"] = (await store.get_session(session.id)).to_dict(include_secrets=True)
        got["by_run"] = (await store.get_session_by_run_id(session.run_id)) == session
        got["conversation"] = [
            e.to_dict() for e in await store.get_session_conversation(session.id)
        ]
        if session.claude_session_id:
            got["claude"] = [
                e.to_dict() for e in await store.get_conversation(session.claude_session_id)
            ]
            got["latest"] = [
                e.sequence for e in await store.get_conversation(session.claude_session_id, limit=2)
            ]
        got["pending_calls"] = [e.to_dict() for e in await store.get_pending_tool_calls(session.id)]
        got["approvals"] = [a.to_dict() for a in await store.get_pending_approvals(session.id)]
        got["mcp"] = [
            m.to_dict(include_secrets=True) for m in await store.get_mcp_servers(session.id)
        ]
        got["snapshots"] = [f.to_dict() for f in await store.get_file_snapshots(session.id)]
        got["raw"] = [r.to_dict() for r in await store.raw_events.list(session.id)]
        per[session.id] = got
    view["sessions"] = per
    approvals = (await dump(store, ("approvals",)))["approvals"]
    view["approvals"] = {key: (await store.get_approval(key)).to_dict() for key in approvals}
    return view


async def test_copy_refuses_a_destination_that_is_not_empty(
    store: Store, store_factory: Callable[..., Awaitable[Store]]
) -> None:
    await populate(store)
    dest = await store_factory()
    await dest.create_session(Session(id="there", run_id="there", query="q"))
    await dest.update_user_settings(UserSettings(advanced_providers=True))
    before = await dump(dest)
    with pytest.raises(CopyRefusedError, match="not empty"):
        await copy_database(store, dest)
    assert await dump(dest) == before
    with pytest.raises(CopyRefusedError, match="same"):
        await copy_database(store, store)


async def test_copy_refuses_hld_files_and_leaves_them_byte_for_byte(
    hld_fixtures: Path, tmp_path: Path, store: Store
) -> None:
    hld = tmp_path / "daemon.db"
    shutil.copy(hld_fixtures / "hld_v22_empty.db", hld)
    hld.chmod(0o600)
    original = hld.read_bytes()
    with pytest.raises(CopyRefusedError, match="hld database"):
        await copy_database(store, hld)
    with pytest.raises(LegacyDatabaseError):
        await copy_database(hld, tmp_path / "never.db")
    assert hld.read_bytes() == original
    assert not (tmp_path / "never.db").exists()


@pytest.mark.parametrize("how", ["cancelled", "progress raises"])
async def test_a_copy_stopped_midway_leaves_the_destination_empty(
    store: Store, any_target: str, how: str
) -> None:
    await populate(store)
    await store.add_conversation_events(
        [
            ConversationEvent(session_id="root", claude_session_id="c-root", content=f"n{i}")
            for i in range(400)
        ]
    )
    calls: list[tuple[int, int]] = []
    task: asyncio.Task[Any] | None = None

    def stop(done: int, total: int) -> None:
        calls.append((done, total))
        if len(calls) == 4:  # settings, ledger, sessions and the first events written
            if how == "progress raises":
                raise RuntimeError("stop here")
            assert task is not None
            task.cancel()

    task = asyncio.ensure_future(copy_database(store, any_target, progress=stop))
    with pytest.raises(asyncio.CancelledError if how == "cancelled" else RuntimeError):
        await task
    assert 0 < calls[-1][0] < calls[-1][1]
    if "://" in any_target:
        left = await dump(any_target, ROW_TABLES)
        assert all(not rows for rows in left.values())
        # The trigger and index the copy set aside are back with the rollback.
        assert (await search_index(any_target))[:2] == (True, True)
    else:
        assert not Path(any_target).exists()  # the file it created is gone
    done: list[tuple[int, int]] = []
    counts = await copy_database(store, any_target, progress=lambda d, t: done.append((d, t)))
    assert counts["conversation_events"] == 406
    assert done[-1][0] == done[-1][1] == sum(counts.values())
    assert await dump(any_target) == await dump(store)
    if "://" in any_target:
        enabled, indexed, stored, expected = await search_index(any_target)
        assert enabled and indexed
        assert len(stored) > 406  # the events' and the sessions' fields
        assert stored == expected


async def search_index(url: str) -> tuple[bool, bool, list[Any], list[Any]]:
    """A PostgreSQL database's search index: whether its insert trigger is enabled and its
    GIN index exists, its rows, and the rows the trigger's own function makes of the
    stored events and sessions (a copy builds the events' documents on the client)."""
    async with Store.open(url) as store, store.engine.connect() as conn:
        state: Any
        [state] = (
            await conn.exec_driver_sql(
                "SELECT (SELECT tgenabled <> 'D' FROM pg_trigger "
                "WHERE tgname = 'agentstore_search_events_insert'), "
                "to_regclass('ix_agentstore_search_document') IS NOT NULL"
            )
        ).all()
        stored = (
            await conn.exec_driver_sql(
                "SELECT event_id, session_id, field, created_at, document::text "
                "FROM agentstore_search ORDER BY session_id, event_id, field"
            )
        ).all()
        expected = (
            await conn.exec_driver_sql(
                "SELECT * FROM (SELECT e.id, e.session_id, f.code, e.created_at, "
                "agentstore_document(f.body)::text FROM conversation_events e CROSS JOIN "
                "LATERAL (VALUES (3, e.content), (4, e.tool_input_json), "
                "(5, e.tool_result_content)) AS f(code, body) WHERE coalesce(f.body, '') <> '' "
                "UNION ALL SELECT NULL::bigint, s.id, f.code, s.created_at, "
                "agentstore_document(f.body)::text FROM sessions s CROSS JOIN LATERAL "
                "(VALUES (0, s.title), (1, s.summary), (2, s.query)) AS f(code, body) "
                "WHERE coalesce(f.body, '') <> '') AS x ORDER BY 2, 1, 3"
            )
        ).all()
    return bool(state[0]), bool(state[1]), list(stored), list(expected)


# --- prune ------------------------------------------------------------------------------------


CUTOFF = datetime(2025, 6, 1, tzinfo=UTC)
OLD = CUTOFF - timedelta(days=30)
NEW = CUTOFF + timedelta(days=1)


async def _prunable_store(store: Store) -> None:
    """A: archived, old → goes; B: archived, new; C: not archived, old; D: archived, old,
    pending approval; E: archived, old, parent of F (not archived); G ← H: archived, old,
    both go; J and K: times in offsets (by instant J is after the cut-off, K before)."""
    specs = {
        "A": (True, OLD, ""),
        "B": (True, NEW, ""),
        "C": (False, OLD, ""),
        "D": (True, OLD, ""),
        "E": (True, OLD, ""),
        "F": (False, NEW, "E"),
        "G": (True, OLD, ""),
        "H": (True, OLD, "G"),
        "J": (True, datetime(2025, 5, 31, 20, 0, tzinfo=timezone(timedelta(hours=-8))), ""),
        "K": (True, datetime(2025, 6, 1, 1, 0, tzinfo=timezone(timedelta(hours=5))), ""),
    }
    for name, (archived, last, parent) in specs.items():
        await store.create_session(
            Session(
                id=name,
                run_id=f"run-{name}",
                query=name,
                claude_session_id=f"c-{name}",
                archived=archived,
                parent_session_id=parent,
                created_at=OLD,
                last_activity_at=last,
            )
        )
        await store.add_conversation_events(
            [ConversationEvent(session_id=name, claude_session_id=f"c-{name}") for _ in range(2)]
        )
        await store.store_mcp_servers(
            name, mcp_servers_from_config(name, {"x": MCPServerConfig(command="x")})
        )
        await store.create_file_snapshot(
            FileSnapshot(session_id=name, file_path="new", created_at=NEW)
        )
        await store.create_file_snapshot(
            FileSnapshot(session_id=name, file_path="old", created_at=OLD)
        )
        await store.store_raw_event(name, '{"age":"new"}')
        await store.store_raw_event(name, '{"age":"old"}')
    await raw_sql(
        store,
        'UPDATE raw_events SET created_at = ? WHERE event_json = \'{"age":"old"}\'',
        stamp(store, OLD),
    )
    await raw_sql(
        store,
        'UPDATE raw_events SET created_at = ? WHERE event_json = \'{"age":"new"}\'',
        stamp(store, NEW),
    )
    if store.dialect == "sqlite":  # hld's text, whose order is not the instants' order
        await raw_sql(
            store,
            "UPDATE sessions SET last_activity_at = '2025-05-31 20:00:00-08:00' WHERE id = 'J'",
        )
        await raw_sql(
            store,
            "UPDATE sessions SET last_activity_at = '2025-06-01 01:00:00.5+05:00' WHERE id = 'K'",
        )
    for name in ("A", "D", "G"):
        await store.create_approval(Approval(id=f"ap-{name}", session_id=name, tool_name="Bash"))
    await store.update_approval_response("ap-A", "denied", "no")
    await store.update_approval_response("ap-G", "approved")


async def test_prune_takes_exactly_what_it_should(store: Store) -> None:
    await _prunable_store(store)
    before = await dump(store)
    arguments: dict[str, Any] = {
        "raw_events_before": CUTOFF,
        "snapshots_before": CUTOFF,
        "archived_sessions_before": CUTOFF,
    }
    planned = await store.prune(**arguments, dry_run=True)
    assert await dump(store) == before  # a dry run changes nothing
    taken = {"A", "G", "H", "K"}
    assert planned == {
        "session": 4,
        "event": 8,
        "approval": 2,
        "mcp_server": 4,
        "raw_event": 10 + 4,  # every old one, and the new ones of the sessions taken
        "snapshot": 10 + 4,
    }
    assert await store.prune(**arguments) == planned
    after = await dump(store)
    assert set(after["sessions"]) == set(before["sessions"]) - taken
    for table in (
        "conversation_events",
        "approvals",
        "mcp_servers",
        "raw_events",
        "file_snapshots",
    ):
        assert not {row["session_id"] for row in after[table].values()} & taken, table
    kept = [row for row in after["raw_events"].values()]
    assert {row["event_json"] for row in kept} == {'{"age":"new"}'}
    assert {row["file_path"] for row in after["file_snapshots"].values()} == {"new"}
    # Everything else as it was, row for row.
    for table in ROW_TABLES:
        for key, row in after[table].items():
            assert before[table][key] == row
    # Again: nothing left to take.
    assert set((await store.prune(**arguments)).values()) == {0}


async def test_prune_of_one_kind_touches_nothing_else(store: Store) -> None:
    await _prunable_store(store)
    before = await dump(store)
    counts = await store.prune(raw_events_before=CUTOFF)
    assert counts == dict.fromkeys(counts, 0) | {"raw_event": 10}
    after = await dump(store)
    assert without(after, "raw_events") == without(before, "raw_events")
    assert await store.prune() == dict.fromkeys(counts, 0)
    with pytest.raises(InvalidValueError, match="aware"):
        await store.prune(snapshots_before=datetime(2025, 1, 1))
    with pytest.raises(InvalidValueError):
        await store.prune(snapshots_before="2025-01-01")  # type: ignore[arg-type]


async def test_prune_with_vacuum_gives_the_space_back(store: Store) -> None:
    await store.create_session(
        Session(id="big", run_id="big", query="q", archived=True, last_activity_at=OLD)
    )
    for i in range(150):
        await store.create_file_snapshot(
            FileSnapshot(session_id="big", file_path=f"f{i}", content=f"{i}" + "z" * 40_000)
        )
    stats = await store.stats()
    counts = await store.prune(archived_sessions_before=CUTOFF, vacuum=True)
    assert counts["session"] == 1 and counts["snapshot"] == 150
    if store.dialect == "sqlite":
        assert stats.file_bytes is not None
        shrunk = (await store.stats()).file_bytes
        assert shrunk is not None and shrunk < stats.file_bytes - 4_000_000
    assert await store.get_session_count() == 0


# --- the command line ---------------------------------------------------------------------------


class Ran:
    def __init__(self, args: tuple[str, ...], code: int, out: str, err: str) -> None:
        self.args, self.code, self.out, self.err = args, code, out, err

    def __str__(self) -> str:
        return f"agentstore {' '.join(self.args)} -> {self.code}\n{self.out}\n--\n{self.err}"

    def ok(self) -> Ran:
        assert self.code == 0 and "Traceback" not in self.err, str(self)
        return self

    def error(self) -> str:
        """The one ``agentstore: …`` line of a failure (exit 1)."""
        assert self.code == 1 and "Traceback" not in self.err, str(self)
        lines = [line for line in self.err.splitlines() if line.startswith("agentstore: ")]
        assert len(lines) == 1 and self.err.rstrip().endswith(lines[0]), str(self)
        return lines[0]


async def agentstore(*args: str, cwd: Path, stdin: bytes | None = None) -> Ran:
    env = {k: v for k, v in os.environ.items() if k != "AGENTSTORE_DATABASE_URL"}
    env["HOME"] = str(cwd)
    proc = await asyncio.create_subprocess_exec(
        str(AGENTSTORE),
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=180)
    assert proc.returncode is not None
    return Ran(args, proc.returncode, out.decode(), err.decode())


@pytest.fixture
def target(db_url: str, tmp_path: Path) -> str:
    """``--db``: a plain SQLite path, or a fresh PostgreSQL database's URL."""
    return str(tmp_path / "agent.db") if db_url.startswith("sqlite") else db_url


async def test_cli_export_import_copy(target: str, tmp_path: Path) -> None:
    async with Store.open(target) as store:
        await populate(store)
    before = await dump(target)
    work = tmp_path / "work"
    work.mkdir()
    done = (await agentstore("--db", target, "export", "-o", "all.jsonl", cwd=work)).ok()
    assert done.out.startswith("exported 1 settings row, 3 sessions, 6 events, 2 approvals")
    assert "(secrets redacted)" in done.out
    assert stat.S_IMODE((work / "all.jsonl").stat().st_mode) == 0o600
    piped = (await agentstore("--db", target, "export", "--include-secrets", cwd=work)).ok()
    assert piped.out.startswith('{"format": "agentstore"') and SECRET_KEY in piped.out
    assert "exported" in piped.err  # the summary goes where the data does not
    child = (await agentstore("--db", target, "export", "--session", "child", cwd=work)).ok()
    assert '"id":"root"' in child.out and '"id":"other"' not in child.out
    missing = await agentstore("--db", target, "export", "--session", "ghost", cwd=work)
    assert missing.error() == "agentstore: session not found: 'ghost'"

    imported = (
        await agentstore("--db", "copy.db", "import", "-", cwd=work, stdin=piped.out.encode())
    ).ok()
    assert imported.out.startswith("imported 1 settings row, 3 sessions, 6 events")
    assert without(await dump(work / "copy.db"), "schema_version") == without(
        before, "schema_version"
    )
    again = await agentstore("--db", "copy.db", "import", "all.jsonl", cwd=work)
    assert "exists in the store" in again.error() and "nothing was imported" in again.error()
    skipped = (
        await agentstore(
            "--db", "copy.db", "import", "all.jsonl", "--skip-existing", "--json", cwd=work
        )
    ).ok()
    assert json.loads(skipped.out) == {"imported": dict.fromkeys(transfer.TYPES, 0)}
    bad = work / "bad.jsonl"
    bad.write_text(
        (work / "all.jsonl").read_text().replace('"type":"approval"', '"type":"nope"', 1)
    )
    refused = await agentstore("--db", "fresh.db", "import", "bad.jsonl", cwd=work)
    assert (
        refused.error().startswith("agentstore: line ") and "unknown type 'nope'" in refused.error()
    )
    assert not (await dump(work / "fresh.db", ROW_TABLES))["sessions"]
    absent = await agentstore("--db", "copy.db", "import", "absent.jsonl", cwd=work)
    assert "absent.jsonl does not exist" in absent.error()

    copied = (await agentstore("copy", target, "copied.db", cwd=work)).ok()
    assert "every table verified" in copied.out and "conversation_events\t6" in copied.out
    assert await dump(work / "copied.db") == before
    refused_copy = await agentstore("copy", target, "copied.db", cwd=work)
    assert "not empty" in refused_copy.error()
    nowhere = await agentstore("copy", "nowhere.db", "x.db", cwd=work)
    assert "nowhere.db does not exist" in nowhere.error()
    assert not (work / "x.db").exists()
    usage = await agentstore("copy", target, cwd=work)
    assert usage.code == 2


async def test_cli_prune(target: str, tmp_path: Path) -> None:
    async with Store.open(target) as store:
        await _prunable_store(store)
    before = await dump(target)
    for age in ("30d", "12h", "2w", "90m", "3600s", "1W"):
        dry = (
            await agentstore(
                "--db",
                target,
                "prune",
                "--archived-sessions-older-than",
                age,
                "--dry-run",
                cwd=tmp_path,
            )
        ).ok()
        assert dry.out.startswith("would delete ") and "(dry run: nothing was deleted)" in dry.out
    assert await dump(target) == before
    for bad in ("30", "d", "1y", "-3d", "3.5d", "99999999999d"):
        usage = await agentstore(
            "--db", target, "prune", "--raw-events-older-than", bad, cwd=tmp_path
        )
        assert usage.code == 2 and "Traceback" not in usage.err, str(usage)
        assert "--raw-events-older-than" in usage.err
    nothing = await agentstore("--db", target, "prune", cwd=tmp_path)
    assert nothing.code == 2 and "nothing to prune" in nothing.err
    as_json = (
        await agentstore(
            "--db",
            target,
            "prune",
            "--raw-events-older-than",
            "1d",
            "--dry-run",
            "--json",
            cwd=tmp_path,
        )
    ).ok()
    assert json.loads(as_json.out)["deleted"]["raw_event"] == 20
    deleted = (
        await agentstore(
            "--db",
            target,
            "prune",
            "--archived-sessions-older-than",
            "1d",
            "--snapshots-older-than",
            "1d",
            "--vacuum",
            cwd=tmp_path,
        )
    ).ok()
    # Everything here is older than a day: B, J and K go too; C, D, E and F are kept.
    assert deleted.out.startswith(
        "deleted 6 sessions, 12 events, 2 approvals, 6 MCP servers, 12 raw events, "
        "20 file snapshots\n"
    ), str(deleted)
    assert "vacuumed" in deleted.out
    assert set((await dump(target))["sessions"]) == {"C", "D", "E", "F"}
    missing = await agentstore(
        "--db", str(tmp_path / "none.db"), "prune", "--raw-events-older-than", "1d", cwd=tmp_path
    )
    assert "does not exist" in missing.error()


def test_cli_draws_a_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    db = tmp_path / "agent.db"

    async def make() -> None:
        async with Store.open(db) as store:
            await populate(store)

    asyncio.run(make())
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [str(AGENTSTORE), "--db", str(db), "export", "-o", str(tmp_path / "x.jsonl")],
            stdout=subprocess.PIPE,
            stderr=follower,
            cwd=tmp_path,
            timeout=120,
            env={**os.environ, "HOME": str(tmp_path), "TERM": "xterm", "COLUMNS": "100"},
        )
        os.close(follower)
        drawn = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(leader, 65536):
                drawn += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0
    assert b"Exporting" in drawn
    quiet = subprocess.run(
        [str(AGENTSTORE), "--db", str(db), "export", "-o", str(tmp_path / "y.jsonl")],
        capture_output=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert quiet.returncode == 0 and b"Exporting" not in quiet.stderr


async def test_an_import_into_postgresql_indexes_what_the_trigger_would(
    postgres_url: str, tmp_path: Path
) -> None:
    """An import into PostgreSQL builds its events' search documents on the client with the
    trigger disabled for its transaction: the index holds exactly what the trigger's own
    function makes, beside a session already in the store, and the trigger and the GIN index
    are in place afterwards, also after a refused import."""
    lines = await _source_file(tmp_path)
    texts = ["Ünïcødé Straße ǅemal", "tab\tand\u2028sep—dash", "日本語のテキスト", "x" * 300]
    lines[-1:-1] = [
        json.dumps(
            {
                **json.loads(lines[_line_of(lines, "event") - 1]),
                "id": 9000 + i,
                "sequence": 9000 + i,
                "content": text,
                "tool_input_json": text.upper(),
                "tool_result_content": None if i % 2 else f"result {text}",
            }
        )
        for i, text in enumerate(texts)
    ]
    header = json.loads(lines[0])
    header["counts"]["event"] += len(texts)
    lines[0] = json.dumps(header)
    path = tmp_path / "file.jsonl"
    path.write_text("\n".join(lines) + "\n")
    async with Store.open(postgres_url) as store:
        await store.create_session(Session(id="keep", run_id="keep", query="already here"))
        await store.add_conversation_event(
            ConversationEvent(session_id="keep", claude_session_id="k", content="kept words")
        )
        broken = tmp_path / "broken.jsonl"
        broken.write_text("\n".join(lines) + "\n{not json\n")
        with pytest.raises(ImportRefusedError):
            await store.import_jsonl(broken)
        enabled, indexed, stored, expected = await search_index(postgres_url)
        assert enabled and indexed and stored == expected and len(stored) == 2
        counts = await store.import_jsonl(path)
        assert counts["event"] == sum(
            '"type": "event"' in line or '"type":"event"' in line for line in lines
        )
        hits = await store.search("straße")  # ids were renumbered, sequences never are
        assert sorted((hit.sequence, hit.field) for hit in hits) == [
            (9000, "content"),
            (9000, "tool_result"),  # ("STRASSE" in the upper-cased input: no ß)
        ]
    enabled, indexed, stored, expected = await search_index(postgres_url)
    assert enabled and indexed
    assert len(stored) > counts["event"] + 2
    assert stored == expected
