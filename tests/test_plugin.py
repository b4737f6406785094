"""Tests and tools for users of the library (SPEC §11): the pytest plugin, Store.open on an
engine and as a context manager, the ``agentstore`` logger, store.adoption, and
``to_dict()``/``from_dict()`` on every model.

The plugin is tested as a user meets it: a small project of its own under ``tmp_path`` (an ini
file with ``asyncio_mode = auto``, no conftest), run by ``python -m pytest`` in a subprocess,
without and (when the parent has it) with ``AGENTSTORE_TEST_POSTGRES_URL``. The rest runs in
this process on the project's own fixtures: SQLite files and, in CI, PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agentstore import (
    Approval,
    ApprovalStatus,
    ConversationEvent,
    EventType,
    FileSnapshot,
    InvalidValueError,
    MCPServer,
    MCPServerConfig,
    RawEvent,
    Session,
    SessionConfig,
    SessionStatus,
    Store,
    StoreError,
    UserSettings,
    mcp_servers_from_config,
    migrations,
)
from agentstore.adopt import AdoptionReport
from agentstore.models import Base, SchemaVersion
from agentstore.types import UTCDateTime

POSTGRES_ENV = "AGENTSTORE_TEST_POSTGRES_URL"
T0 = datetime(2025, 1, 15, 10, 30, 0, 123456, tzinfo=UTC)
PROXY_KEY = "sk-or-v1-plugin-secret-0123"
MCP_TOKEN = "ghp_plugin_secret_token"

needs_postgres = pytest.mark.skipif(
    not os.environ.get(POSTGRES_ENV), reason=f"{POSTGRES_ENV} is not set"
)


# --- the plugin, from a user's project -----------------------------------------------------------

USER_TESTS = '''
"""A user's tests: they note what they saw, one JSON object per line."""

import json
import os
from pathlib import Path

from agentstore import Session, Store, StoreError

SEEN = Path(os.environ["AGENTSTORE_PLUGIN_SEEN"])
opened = []


def note(**values):
    with SEEN.open("a") as out:
        out.write(json.dumps(values) + "\\n")


def where(store):
    """The store's database: "memory", a file path, or a PostgreSQL database name."""
    try:
        engine = store.engine
    except StoreError as exc:
        return "memory" if "in-memory" in str(exc) else repr(exc)
    return engine.url.database


async def test_a_first_test_adds_a_session(store, tmp_path):
    before = await store.get_session_count()
    await store.create_session(Session(id="s1", run_id="r1", query="q"))
    note(
        test="first",
        before=before,
        after=await store.get_session_count(),
        dialect=store.dialect,
        where=where(store),
        files=sorted(p.name for p in tmp_path.iterdir()),
        settings=(await store.get_user_settings()).id,
    )
    opened.append(store)


async def test_a_second_test_sees_a_fresh_store(store, tmp_path):
    before = await store.get_session_count()
    await store.create_session(Session(id="s1", run_id="r1", query="q"))  # no conflict
    note(
        test="second",
        before=before,
        dialect=store.dialect,
        where=where(store),
        files=sorted(p.name for p in tmp_path.iterdir()),
        first_closed=opened[0].closed,
    )
    opened.append(store)


async def test_store_factory(store_factory, store, tmp_path):
    a = await store_factory()
    b = await store_factory()
    await a.create_session(Session(id="only-in-a", run_id="ra", query="q"))
    mine = tmp_path / "mine" / "agent.db"
    c = await store_factory(mine)
    await c.create_session(Session(id="only-in-c", run_id="rc", query="q"))
    note(
        test="factory",
        counts=[await s.get_session_count() for s in (a, b, c, store)],
        dialects=[s.dialect for s in (a, b, c)],
        where=[where(s) for s in (a, b, store)],
        distinct=len({id(s) for s in (a, b, c, store)}),
        mine=mine.exists(),
        mine_mode=oct(mine.stat().st_mode & 0o777),
    )
    opened.extend([a, b, c, store])


def test_every_store_was_closed_after_its_test():
    note(test="closed", closed=[s.closed for s in opened], count=len(opened))


async def test_agentstore_url(agentstore_url, agentstore_backend):
    async with Store.open(agentstore_url) as s:
        count = await s.get_session_count()
        dialect = s.dialect
    note(
        test="url",
        url=agentstore_url,
        backend=agentstore_backend,
        count=count,
        dialect=dialect,
    )
'''

BACKEND_TESTS = """
import json
import os
from pathlib import Path

SEEN = Path(os.environ["AGENTSTORE_PLUGIN_SEEN"])


async def test_runs_per_backend(store, agentstore_backend, tmp_path):
    with SEEN.open("a") as out:
        out.write(json.dumps({
            "backend": agentstore_backend,
            "dialect": store.dialect,
            "files": sorted(p.name for p in tmp_path.iterdir()),
            "sessions": await store.get_session_count(),
        }) + "\\n")
"""


@dataclass
class Run:
    code: int
    out: str
    seen: list[dict[str, Any]]


def run_user_project(
    project: Path, tests: str, ini: str, *, postgres: bool, extra: tuple[str, ...] = ()
) -> Run:
    """Write a project (an ini file and a test file), run pytest on it, read what it saw."""
    project.mkdir(parents=True, exist_ok=True)
    (project / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n" + ini
    )
    (project / "test_user.py").write_text(tests)
    seen = project.parent / f"{project.name}-seen.jsonl"
    seen.unlink(missing_ok=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in (POSTGRES_ENV, "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "AGENTSTORE_DATABASE_URL")
    }
    env.update(AGENTSTORE_PLUGIN_SEEN=str(seen), PYTHONDONTWRITEBYTECODE="1")
    if postgres:
        env[POSTGRES_ENV] = os.environ[POSTGRES_ENV]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-v",
            "--basetemp",
            str(project.parent / f"{project.name}-tmp"),
            *extra,
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = seen.read_text().splitlines() if seen.exists() else []
    return Run(done.returncode, done.stdout + done.stderr, [json.loads(line) for line in lines])


def by_test(run: Run) -> dict[str, dict[str, Any]]:
    return {entry["test"]: entry for entry in run.seen}


def test_plugin_store_is_a_fresh_in_memory_sqlite_store_by_default(tmp_path: Path) -> None:
    project = tmp_path / "project"
    run = run_user_project(project, USER_TESTS, "", postgres=False)
    assert run.code == 0, run.out
    assert "plugins:" in run.out and "agentstore" in run.out
    assert "5 passed" in run.out, run.out
    seen = by_test(run)
    first, second, factory = seen["first"], seen["second"], seen["factory"]
    # A fresh, migrated store for each test: what the first added, the second does not see.
    assert (first["before"], first["after"], second["before"]) == (0, 1, 0)
    assert first["settings"] == 1  # the migration's settings row
    assert first["dialect"] == second["dialect"] == "sqlite"
    assert first["where"] == second["where"] == "memory"
    assert first["files"] == second["files"] == []
    assert second["first_closed"] is True
    # store_factory: independent stores, and one on a target of the test's choosing.
    assert factory["counts"] == [1, 0, 1, 0]
    assert factory["dialects"] == ["sqlite"] * 3
    assert factory["where"] == ["memory"] * 3
    assert factory["distinct"] == 4
    assert factory["mine"] is True and factory["mine_mode"] == "0o600"
    closed = seen["closed"]
    assert closed["count"] == 6 and all(closed["closed"])
    url = seen["url"]
    assert url["backend"] == "sqlite" and url["dialect"] == "sqlite" and url["count"] == 0
    assert url["url"].startswith("sqlite+aiosqlite:///")
    assert Path(make_url(url["url"]).database or "").is_relative_to(tmp_path)
    # Nothing was written into the project: in-memory stores leave no file behind.
    assert sorted(p.name for p in project.iterdir()) == ["pytest.ini", "test_user.py"]
    databases = sorted(p.parent.name for p in (tmp_path / "project-tmp").rglob("*.db"))
    assert databases == ["mine", "test_agentstore_url_sqlite_0"]  # opened by the tests


async def postgres_databases(names: list[str]) -> list[str]:
    import asyncpg

    admin = make_url(os.environ[POSTGRES_ENV]).set(drivername="postgresql")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname = ANY($1::text[])", names
        )
    finally:
        await conn.close()
    return [row["datname"] for row in rows]


@needs_postgres
async def test_plugin_store_is_on_postgresql_when_the_url_is_set(tmp_path: Path) -> None:
    project = tmp_path / "project"
    run = await asyncio.to_thread(run_user_project, project, USER_TESTS, "", postgres=True)
    assert run.code == 0, run.out
    assert "5 passed" in run.out, run.out
    seen = by_test(run)
    first, second, factory, url = seen["first"], seen["second"], seen["factory"], seen["url"]
    assert (first["before"], first["after"], second["before"]) == (0, 1, 0)
    assert first["dialect"] == second["dialect"] == "postgresql"
    assert first["where"] != second["where"]  # a database of its own for each test
    assert factory["counts"] == [1, 0, 1, 0]
    assert factory["dialects"] == ["postgresql", "postgresql", "sqlite"]
    assert len(set(factory["where"])) == 3
    assert all(seen["closed"]["closed"])
    assert url["backend"] == "postgresql" and url["dialect"] == "postgresql"
    assert url["url"].startswith("postgresql+asyncpg://")
    # Every database the fixtures made was dropped after its test.
    made = [first["where"], second["where"], *factory["where"], make_url(url["url"]).database]
    assert await postgres_databases([str(name) for name in made]) == []


BOTH_BACKENDS = "agentstore_backends =\n    sqlite\n    postgresql\n"


def test_plugin_backends_option_without_postgresql(tmp_path: Path) -> None:
    run = run_user_project(tmp_path / "project", BACKEND_TESTS, BOTH_BACKENDS, postgres=False)
    assert run.code == 0, run.out
    assert "test_runs_per_backend[sqlite] PASSED" in run.out
    assert "[postgresql]" not in run.out
    assert run.seen == [{"backend": "sqlite", "dialect": "sqlite", "files": [], "sessions": 0}]


@needs_postgres
async def test_plugin_backends_option_runs_each_test_twice(tmp_path: Path) -> None:
    run = await asyncio.to_thread(
        run_user_project,
        tmp_path / "project",
        BACKEND_TESTS,
        BOTH_BACKENDS,
        postgres=True,
    )
    assert run.code == 0, run.out
    assert "test_runs_per_backend[sqlite] PASSED" in run.out
    assert "test_runs_per_backend[postgresql] PASSED" in run.out
    assert "2 passed" in run.out
    assert sorted((e["backend"], e["dialect"]) for e in run.seen) == [
        ("postgresql", "postgresql"),
        ("sqlite", "sqlite"),
    ]


def test_plugin_sqlite_file_option(tmp_path: Path) -> None:
    run = run_user_project(
        tmp_path / "project",
        BACKEND_TESTS,
        "agentstore_backends = sqlite\nagentstore_sqlite = file\n",
        postgres=False,
    )
    assert run.code == 0, run.out
    (seen,) = run.seen
    assert seen["dialect"] == "sqlite"
    assert [name for name in seen["files"] if name.endswith(".db")]  # a file under tmp_path


def test_plugin_rejects_an_unknown_backend(tmp_path: Path) -> None:
    run = run_user_project(
        tmp_path / "project",
        BACKEND_TESTS,
        "agentstore_backends =\n    sqlite\n    mysql\n",
        postgres=False,
    )
    assert run.code != 0
    assert "unknown backend mysql" in run.out
    assert run.seen == []


async def test_plugin_backends_option_on_one_line(tmp_path: Path) -> None:
    postgres = bool(os.environ.get(POSTGRES_ENV))
    run = await asyncio.to_thread(
        run_user_project,
        tmp_path / "project",
        BACKEND_TESTS,
        "agentstore_backends = sqlite postgresql\n",
        postgres=postgres,
    )
    assert run.code == 0, run.out
    expected = ["postgresql", "sqlite"] if postgres else ["sqlite"]
    assert sorted(e["backend"] for e in run.seen) == expected


# --- Store.open on an engine ---------------------------------------------------------------------


def watch_disposal(engine: AsyncEngine) -> list[object]:
    disposed: list[object] = []
    event.listen(engine.sync_engine, "engine_disposed", lambda e: disposed.append(e))
    return disposed


async def count_sessions(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.text("SELECT COUNT(*) FROM sessions"))).scalar_one())


@pytest.fixture
def engine_url(db_url: str, tmp_path: Path) -> str:
    """A URL for an engine of the test's own: a file under tmp_path, or PostgreSQL."""
    if db_url.startswith("sqlite"):
        return f"sqlite+aiosqlite:///{tmp_path / 'engine' / 'agent.db'}"
    return db_url


async def test_store_open_uses_an_engine_and_leaves_it_to_its_owner(engine_url: str) -> None:
    if engine_url.startswith("sqlite"):
        Path(make_url(engine_url).database or "").parent.mkdir(mode=0o700)
    engine = create_async_engine(engine_url)
    disposed = watch_disposal(engine)
    pool = engine.sync_engine.pool
    try:
        store = await Store.open(engine)
        assert store.engine is engine
        assert store.dialect == engine.dialect.name
        await store.create_session(Session(id="s1", run_id="r1", query="via an engine"))
        assert (await store.get_session("s1")).query == "via an engine"
        assert await count_sessions(engine) == 1  # the same database, seen through the engine
        held = await engine.connect()  # a connection of the owner's, open across the close
        try:
            await store.close()
            assert store.closed
            assert disposed == []  # not disposed: it is the caller's
            assert engine.sync_engine.pool is pool
            assert int((await held.execute(sa.text("SELECT 1"))).scalar_one()) == 1
        finally:
            await held.close()
        assert await count_sessions(engine) == 1
        with pytest.raises(StoreError, match="closed"):
            await store.get_session_count()
        # Opened again on the same engine, the data is there.
        async with Store.open(engine) as again:
            assert await again.get_session_count() == 1
        assert disposed == []
        assert await count_sessions(engine) == 1
    finally:
        await engine.dispose()
    assert len(disposed) == 1  # the listener works: the owner's dispose is seen


async def test_store_open_refuses_an_in_memory_sqlite_engine() -> None:
    for url in ("sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:"):
        engine = create_async_engine(url)
        try:
            with pytest.raises(InvalidValueError, match="memory"):
                await Store.open(engine)
            async with engine.connect() as conn:  # still the caller's, still usable
                assert int((await conn.execute(sa.text("SELECT 1"))).scalar_one()) == 1
        finally:
            await engine.dispose()


async def test_store_open_as_a_context_manager_and_awaited(db_url: str) -> None:
    async with Store.open(db_url) as store:  # no extra await
        assert isinstance(store, Store)
        assert not store.closed
        await store.create_session(Session(id="s1", run_id="r1", query="q"))
    assert store.closed
    with pytest.raises(StoreError, match="closed"):
        await store.get_session_count()

    awaited = await Store.open(db_url)  # the plain await keeps working
    try:
        assert await awaited.get_session_count() == 1
    finally:
        await awaited.close()
    assert awaited.closed

    async with await Store.open(db_url) as both:  # and so does the older spelling
        assert await both.get_session_count() == 1
    assert both.closed

    seen: list[Store] = []
    with pytest.raises(RuntimeError, match="boom"):
        async with Store.open(db_url) as failing:
            seen.append(failing)
            raise RuntimeError("boom")
    assert seen[0].closed  # closed on the way out of a failing block too


async def test_in_memory_stores_are_cheap_and_independent() -> None:
    async with Store.open(":memory:") as a, Store.open(":memory:") as b:
        await a.create_session(Session(id="s1", run_id="r1", query="only in a"))
        assert await a.get_session_count() == 1
        assert await b.get_session_count() == 0
        await b.create_session(Session(id="s1", run_id="r1", query="only in b"))
        assert (await a.get_session("s1")).query == "only in a"
        assert (await b.get_session("s1")).query == "only in b"
    started = time.perf_counter()
    for _ in range(20):
        async with Store.open(":memory:") as store:
            await store.get_session_count()
    elapsed = time.perf_counter() - started
    assert elapsed < 5.0, f"20 in-memory stores took {elapsed:.2f} s"


# --- the agentstore logger and store.adoption ----------------------------------------------------


def agentstore_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "agentstore" or r.name.startswith("agentstore.")]


async def test_a_new_database_logs_its_migration(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert logging.getLogger("agentstore").handlers == []
    caplog.set_level(logging.INFO, logger="agentstore")
    async with Store.open(db_url) as store:
        assert store.adoption is None
    head = migrations.head_revision()
    records = agentstore_records(caplog)
    migrated = [r for r in records if r.levelno == logging.INFO and head in r.getMessage()]
    assert migrated, [r.getMessage() for r in caplog.records]
    assert "(empty)" in migrated[0].getMessage()
    assert all(r.levelno < logging.WARNING for r in records)
    caplog.clear()
    async with Store.open(db_url) as store:  # already at head: nothing to say
        assert store.adoption is None
    assert not [r for r in agentstore_records(caplog) if head in r.getMessage()]
    assert logging.getLogger("agentstore").handlers == []


def build_duplicates_db(path: Path, hld_fixtures: Path) -> None:
    """hld_v22_empty plus events that share a (claude_session_id, sequence), as hld allows."""
    shutil.copy(hld_fixtures / "hld_v22_empty.db", path)
    path.chmod(0o600)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO sessions (id, run_id, query, created_at, last_activity_at) "
            "VALUES ('s1', 'r1', 'q', '2025-01-15 10:30:00.123456789-08:00', "
            "'2025-01-15 18:31:00')"
        )
        events = [(1, "c1", 1), (2, "c1", 2), (3, "c1", 2), (4, "c1", 3), (5, "c2", 1)]
        conn.executemany(
            "INSERT INTO conversation_events (id, session_id, claude_session_id, sequence, "
            "event_type, role, content, created_at) VALUES (?, 's1', ?, ?, 'message', 'user', "
            "?, '2025-01-15 18:30:00')",
            [(i, c, s, f"event {i}") for i, c, s in events],
        )
    conn.close()


async def test_adoption_is_logged_and_reported(
    tmp_path: Path, hld_fixtures: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agentstore")
    db = tmp_path / "daemon.db"
    build_duplicates_db(db, hld_fixtures)
    async with Store.open(db) as store:
        report = store.adoption
        assert isinstance(report, AdoptionReport)
        assert report.renumbered_events == 2  # ids 3 and 4 move up: 2 -> 3 and 3 -> 4
        assert [e.sequence for e in await store.get_conversation("c1")] == [1, 2, 3, 4]
    assert report.backup is not None
    backup = Path(report.backup)
    assert backup.exists() and stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert report.hld_version == 22
    assert report.revision == migrations.head_revision()
    text = "\n".join(r.getMessage() for r in agentstore_records(caplog))
    assert str(db) in text
    assert report.backup in text
    assert "Renumbered 2 events" in text
    assert all(r.levelno == logging.INFO for r in agentstore_records(caplog))

    caplog.clear()
    async with Store.open(db) as store:  # adopted once: now just agentstore's
        assert store.adoption is None
    assert not agentstore_records(caplog)
    assert logging.getLogger("agentstore").handlers == []


async def test_adopting_an_old_hld_database_logs_what_was_healed(
    tmp_path: Path, hld_fixtures: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agentstore")
    db = tmp_path / "v13.db"
    shutil.copy(hld_fixtures / "hld_v13.db", db)
    async with Store.open(db, backup=False) as store:
        report = store.adoption
    assert isinstance(report, AdoptionReport)
    assert report.backup is None and report.hld_version == 13
    assert "hld 14: added approvals.tool_use_id" in report.actions
    text = "\n".join(r.getMessage() for r in agentstore_records(caplog))
    assert "hld 14: added approvals.tool_use_id" in text
    assert "hld 16: created user_settings" in text
    assert "Backup" not in text


LIBRARY_ONLY = """
import asyncio, logging, shutil, sys
from agentstore import Store

async def main(folder, fixture):
    async with Store.open(f"{folder}/new.db"):
        pass
    shutil.copy(fixture, f"{folder}/hld.db")
    async with Store.open(f"{folder}/hld.db") as store:
        assert store.adoption is not None
    async with Store.open(":memory:"):
        pass

asyncio.run(main(sys.argv[1], sys.argv[2]))
root = logging.getLogger()
mine = logging.getLogger("agentstore")
print(len(root.handlers), len(mine.handlers), root.level, mine.level, mine.propagate)
"""


def test_the_library_configures_no_logging(tmp_path: Path, hld_fixtures: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", LIBRARY_ONLY, str(tmp_path), str(hld_fixtures / "hld_v13.db")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    # No handler anywhere, levels untouched, and nothing written: INFO goes nowhere unless
    # the application configures logging.
    assert done.stdout.split() == ["0", "0", str(logging.WARNING), "0", "True"]
    assert done.stderr == ""


# --- to_dict() and from_dict() -------------------------------------------------------------------


async def record_everything(store: Store) -> dict[str, list[Base]]:
    """One of each model, written through the store and read back from it."""
    config = SessionConfig(
        query="fix it",
        model="sonnet",
        working_dir="/home/alice/src/app",
        allowed_tools=["Read", "Edit"],
        mcp_servers={
            "codelayer": MCPServerConfig(
                command="hlyr", args=["mcp", "claude_approvals"], env={"TOKEN": MCP_TOKEN}
            ),
            "linear": MCPServerConfig(
                type="http",
                url="https://mcp.linear.app/mcp?team=acme",
                headers={"Authorization": f"Bearer {MCP_TOKEN}"},
            ),
        },
    )
    session = Session.from_config("sess-1", "run-1", config)
    session.claude_session_id = "claude-1"
    session.title = "Every field"
    session.status = SessionStatus.COMPLETED
    session.created_at = T0
    session.last_activity_at = T0 + timedelta(minutes=3)
    session.completed_at = T0 + timedelta(minutes=3, microseconds=7)
    session.cost_usd = 0.125
    session.input_tokens = 1000
    session.output_tokens = 200
    session.duration_ms = 180_000
    session.num_turns = 4
    session.dangerously_skip_permissions = True
    session.dangerously_skip_permissions_expires_at = T0 + timedelta(hours=1)
    session.dangerously_skip_permissions_timeout_ms = 900_000
    session.proxy_enabled = True
    session.proxy_base_url = "https://openrouter.ai/api/v1"
    session.proxy_api_key = PROXY_KEY
    session.editor_state = '{"doc":"<p>ünïcode & more</p>"}'
    await store.create_session(session)
    await store.store_mcp_servers(session.id, mcp_servers_from_config(session.id, config))
    await store.add_conversation_events(
        [
            ConversationEvent(
                session_id=session.id,
                claude_session_id="claude-1",
                event_type=EventType.MESSAGE,
                role="user",
                content="fix it ✓",
            ),
            ConversationEvent(
                session_id=session.id,
                claude_session_id="claude-1",
                event_type=EventType.TOOL_CALL,
                tool_id="toolu_1",
                tool_name="Edit",
                tool_input_json='{"file_path":"a.py"}',
            ),
        ]
    )
    approval = await store.create_approval(
        Approval(
            id="local-1",
            run_id=session.run_id,
            session_id=session.id,
            tool_name="Edit",
            tool_use_id="toolu_1",
            tool_input={"file_path": "a.py", "lines": [1, 2], "ok": True, "none": None},
            created_at=T0 + timedelta(seconds=30),
        )
    )
    await store.link_conversation_event_to_approval_using_tool_id(
        session.id, "toolu_1", approval.id
    )
    await store.update_approval_response(approval.id, ApprovalStatus.APPROVED, "ship it")
    await store.store_raw_event(session.id, '{"type":"system","subtype":"init"}')
    await store.create_file_snapshot(
        FileSnapshot(
            tool_id="toolu_1", session_id=session.id, file_path="a.py", content="print('hé')\n"
        )
    )
    settings = await store.get_user_settings()
    settings.advanced_providers = True
    settings.opt_in_telemetry = False
    await store.update_user_settings(settings)

    ledger_table = SchemaVersion.__table__
    async with store.engine.connect() as conn:
        rows = await conn.execute(sa.select(ledger_table).order_by(ledger_table.c.version))
        ledger = [SchemaVersion(**dict(row)) for row in rows.mappings()]
    return {
        "Session": [await store.get_session(session.id)],
        "ConversationEvent": [*await store.get_session_conversation(session.id)],
        "Approval": [await store.get_approval(approval.id)],
        "MCPServer": [*await store.get_mcp_servers(session.id)],
        "RawEvent": [*await store.raw_events.list(session.id)],
        "FileSnapshot": [*await store.get_file_snapshots(session.id)],
        "UserSettings": [await store.get_user_settings()],
        "SchemaVersion": [*ledger[-1:]],
    }


MODELS: dict[str, type[Base]] = {
    "Session": Session,
    "ConversationEvent": ConversationEvent,
    "Approval": Approval,
    "MCPServer": MCPServer,
    "RawEvent": RawEvent,
    "FileSnapshot": FileSnapshot,
    "UserSettings": UserSettings,
    "SchemaVersion": SchemaVersion,
}


def time_fields(model: type[Base]) -> list[str]:
    return [
        column.key for column in model.__table__.columns if isinstance(column.type, UTCDateTime)
    ]


async def test_to_dict_and_from_dict_round_trip_every_model(store: Store) -> None:
    found = await record_everything(store)
    assert set(found) == set(MODELS)
    for name, values in found.items():
        model = MODELS[name]
        assert values, name
        assert time_fields(model) or name in ("MCPServer",), name
        for value in values:
            assert isinstance(value, model)
            full = value.to_dict(include_secrets=True)
            assert set(full) == {column.key for column in model.__table__.columns}
            text = json.dumps(full)  # JSON-ready as it is
            for key in time_fields(model):
                shown = full[key]
                if getattr(value, key) is None:
                    assert shown is None
                    continue
                assert isinstance(shown, str) and shown.endswith("+00:00"), (name, key, shown)
                parsed = datetime.fromisoformat(shown)
                assert parsed.utcoffset() == timedelta(0)
                assert parsed == getattr(value, key)
            back = model.from_dict(full)
            assert back == value, name
            assert model.from_dict(json.loads(text)) == value, name
            assert back.to_dict(include_secrets=True) == full
            redacted = value.to_dict()
            if name not in ("Session", "MCPServer"):
                assert redacted == full, name
            json.dumps(redacted)

    session = found["Session"][0]
    assert isinstance(session, Session)
    shown = session.to_dict()
    assert shown["proxy_api_key"] == "" and session.proxy_api_key == PROXY_KEY
    assert session.to_dict(include_secrets=True)["proxy_api_key"] == PROXY_KEY
    assert PROXY_KEY not in json.dumps(shown)
    assert shown["status"] == "completed"
    assert shown["created_at"] == "2025-01-15T10:30:00.123456+00:00"
    assert shown["dangerously_skip_permissions"] is True
    for server in found["MCPServer"]:
        assert isinstance(server, MCPServer)
        hidden = server.to_dict()
        assert MCP_TOKEN not in json.dumps(hidden)
        assert MCP_TOKEN in json.dumps(server.to_dict(include_secrets=True))
        env = json.loads(hidden["env_json"])
        assert env and set(env.values()) == {""}  # names kept, values blanked
        assert set(env) == set(json.loads(server.env_json))
    approval = found["Approval"][0].to_dict()
    assert approval["tool_input"] == {
        "file_path": "a.py",
        "lines": [1, 2],
        "ok": True,
        "none": None,
    }
    assert approval["status"] == "approved" and approval["comment"] == "ship it"
    assert approval["responded_at"] is not None and approval["responded_at"].endswith("+00:00")

    # What from_dict builds can be written back, and reads back the same.
    copy = Session.from_dict({**session.to_dict(include_secrets=True), "id": "copy", "run_id": "c"})
    await store.create_session(copy)
    again = await store.get_session("copy")
    assert again.to_dict(include_secrets=True) == {
        **session.to_dict(include_secrets=True),
        "id": "copy",
        "run_id": "c",
    }


def test_to_dict_times_are_utc_whatever_the_offset_given() -> None:
    pacific = timezone(timedelta(hours=-8))
    session = Session(
        id="s",
        run_id="r",
        created_at=datetime(2025, 1, 15, 10, 30, tzinfo=pacific),
        last_activity_at=datetime(2025, 1, 15, 10, 30, 0, 5, tzinfo=pacific),
    )
    shown = session.to_dict()
    assert shown["created_at"] == "2025-01-15T18:30:00+00:00"
    assert shown["last_activity_at"] == "2025-01-15T18:30:00.000005+00:00"
    assert Session.from_dict(shown).created_at == session.created_at


BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "Session": lambda: {"id": "s", "run_id": "r"},
    "ConversationEvent": lambda: {"session_id": "s"},
    "Approval": lambda: {"id": "a", "session_id": "s"},
    "RawEvent": lambda: {"session_id": "s"},
    "FileSnapshot": lambda: {"session_id": "s"},
    "UserSettings": lambda: {"id": 1},
    "SchemaVersion": lambda: {"version": 1},
    "MCPServer": lambda: {"session_id": "s"},
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_from_dict_rejects_unknown_keys_and_naive_or_malformed_times(name: str) -> None:
    model = MODELS[name]
    model.from_dict(BUILDERS[name]())  # the minimal form is accepted
    with pytest.raises(InvalidValueError, match="no_such_field"):
        model.from_dict({**BUILDERS[name](), "no_such_field": 1})
    with pytest.raises(InvalidValueError):
        model.from_dict([("id", "x")])  # type: ignore[arg-type]
    for key in time_fields(model):
        for bad in ("2025-01-15T10:30:00", "2025-01-15 10:30:00", "yesterday", "2025-13-45"):
            with pytest.raises(InvalidValueError, match=key):
                model.from_dict({**BUILDERS[name](), key: bad})
        aware = model.from_dict({**BUILDERS[name](), key: "2025-01-15T10:30:00-08:00"})
        assert getattr(aware, key) == datetime(2025, 1, 15, 18, 30, tzinfo=UTC)


@pytest.mark.parametrize("name", ["Session", "Approval", "ConversationEvent"])
def test_from_dict_rejects_naive_datetime_objects(name: str) -> None:
    model = MODELS[name]
    with pytest.raises(InvalidValueError):
        model.from_dict({**BUILDERS[name](), "created_at": datetime(2025, 1, 15, 10, 30)})


async def test_plugin_fixtures_serve_this_suite(
    store: Store, store_factory: Callable[..., Awaitable[Store]], agentstore_backend: str
) -> None:
    """The project's own tests run on the plugin: `store` is on the backend of this run."""
    assert store.dialect == agentstore_backend
    other = await store_factory()
    assert other is not store and other.dialect == agentstore_backend
    await store.create_session(Session(id="s1", run_id="r1", query="q"))
    assert await other.get_session_count() == 0
