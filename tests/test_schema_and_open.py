"""The schema the migrations build, the Alembic command line, and how ``Store.open`` refuses."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from agentstore import Session, Store
from agentstore.errors import (
    DatabaseError,
    MigrationRequiredError,
    NotADatabaseError,
    SchemaTooNewError,
)
from agentstore.hld import HLD_LEDGER
from agentstore.migrations import head_revision
from agentstore.types import format_timestamp, parse_timestamp

ROOT = Path(__file__).resolve().parents[1]
HLD_TABLES = (
    "sessions",
    "conversation_events",
    "approvals",
    "mcp_servers",
    "raw_events",
    "file_snapshots",
    "user_settings",
    "schema_version",
)


def _schema_sql(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        return {
            name: sql
            for name, sql in conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL"
            )
            if name != "sqlite_sequence"
        }


async def test_fresh_sqlite_schema_is_hlds_v22_text_for_text(
    tmp_path: Path, hld_fixtures: Path
) -> None:
    db = tmp_path / "agent.db"
    async with await Store.open(db):
        pass
    ours = _schema_sql(db)
    hld = _schema_sql(hld_fixtures / "hld_v22_empty.db")
    # Everything hld has, byte for byte; plus only agentstore's own additions.
    assert {name: ours[name] for name in hld} == hld
    added = set(ours) - set(hld)
    assert {n for n in added if not n.startswith("agentstore_search")} == {
        "alembic_version",
        "uq_conversation_claude_session_sequence",
    }
    # The search index (revision 0005): FTS4, which hld's SQLite has, and six triggers.
    assert "USING fts4(" in ours["agentstore_search"]
    assert (
        sum(name.startswith("agentstore_search_") and "TRIGGER" in ours[name] for name in added)
        == 6
    )
    with sqlite3.connect(db) as conn:
        ledger = conn.execute(
            "SELECT version, description FROM schema_version ORDER BY 1"
        ).fetchall()
        settings = conn.execute(
            "SELECT id, advanced_providers, opt_in_telemetry FROM user_settings"
        ).fetchall()
    with sqlite3.connect(hld_fixtures / "hld_v22_empty.db") as conn:
        hld_ledger = conn.execute(
            "SELECT version, description FROM schema_version ORDER BY 1"
        ).fetchall()
    assert ledger == hld_ledger == list(HLD_LEDGER)
    assert settings == [(1, 0, None)]


async def test_migration_round_trip_down_to_empty_and_up_again(db_url: str) -> None:
    from alembic.script import ScriptDirectory

    from agentstore.migrations import alembic_config, run_in_migration_transaction
    from alembic import command

    revisions = [s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()]
    assert len(revisions) >= 2
    store = await Store.open(db_url)
    await store.close()

    from agentstore.engine import create_engine

    engine = create_engine(db_url)

    def tables(conn: sa.Connection) -> set[str]:
        return set(sa.inspect(conn).get_table_names()) - {"sqlite_sequence"}

    def step(conn: sa.Connection, target: str, down: bool) -> None:
        config = alembic_config(connection=conn)
        fn = command.downgrade if down else command.upgrade
        run_in_migration_transaction(conn, lambda _: fn(config, target))

    try:
        async with engine.connect() as conn:
            assert set(HLD_TABLES) <= await conn.run_sync(tables)
            for _ in revisions:
                await conn.run_sync(step, "-1", True)
            assert await conn.run_sync(tables) == {"alembic_version"}
            await conn.run_sync(step, "head", False)
            assert set(HLD_TABLES) <= await conn.run_sync(tables)
    finally:
        await engine.dispose()
    # The re-created schema is fully usable.
    async with await Store.open(db_url) as store:
        await store.create_session(Session(id="s", run_id="r", query="q"))
        assert (await store.get_user_settings()).advanced_providers is False


def _alembic(args: list[str], url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENTSTORE_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_alembic_command_line_upgrade_check_downgrade(db_url: str, tmp_path: Path) -> None:
    up = _alembic(["upgrade", "head"], db_url, tmp_path)
    assert up.returncode == 0, up.stderr
    check = _alembic(["check"], db_url, tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout
    current = _alembic(["current"], db_url, tmp_path)
    assert head_revision() in current.stdout
    for _ in range(2):
        down = _alembic(["downgrade", "-1"], db_url, tmp_path)
        assert down.returncode == 0, down.stderr
    current = _alembic(["current"], db_url, tmp_path)
    assert head_revision() not in current.stdout
    assert _alembic(["upgrade", "head"], db_url, tmp_path).returncode == 0


async def test_new_file_is_private_to_its_user(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "deeper" / "agent.db"
    async with await Store.open(db):
        pass
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "nested").stat().st_mode) == 0o700


async def test_path_with_tilde_and_memory_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    async with await Store.open("~/.agentstore/agent.db") as store:
        await store.create_session(Session(id="s", run_id="r", query="q"))
    assert (tmp_path / ".agentstore" / "agent.db").exists()
    async with await Store.open(":memory:") as memory:
        await memory.create_session(Session(id="s", run_id="r", query="q"))
        # Concurrent calls share the one in-memory database, one task at a time.
        got = await asyncio.gather(*(memory.get_session("s") for _ in range(10)))
        assert {s.id for s in got} == {"s"}


async def test_not_a_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    content = b"these are my notes, not a database\n" * 100
    path.write_bytes(content)
    with pytest.raises(NotADatabaseError) as info:
        await Store.open(path)
    assert "not an SQLite database" in str(info.value)
    assert path.read_bytes() == content
    assert not (tmp_path / "notes.db-wal").exists()


async def test_schema_newer_than_code_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "agent.db"
    async with await Store.open(db):
        pass
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    before = db.read_bytes()
    with pytest.raises(SchemaTooNewError) as info:
        await Store.open(db)
    assert "9999_from_the_future" in str(info.value)
    assert db.read_bytes() == before


async def test_migrate_false(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    with pytest.raises(MigrationRequiredError):
        await Store.open(empty, migrate=False)
    assert _schema_sql(empty) == {}
    db = tmp_path / "agent.db"
    async with await Store.open(db):
        pass
    async with await Store.open(db, migrate=False) as store:
        assert await store.get_session_count() == 0


async def test_foreign_tables_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    with pytest.raises(DatabaseError, match="neither agentstore's nor hld's"):
        await Store.open(db)
    assert set(_schema_sql(db)) == {"invoices"}


async def test_every_pooled_connection_is_configured(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "agent.db") as store:
        engine = store.engine
        conns = [await engine.connect() for _ in range(4)]
        try:
            for conn in conns:
                pragmas = [
                    (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                    for name in ("foreign_keys", "journal_mode", "synchronous", "busy_timeout")
                ]
                assert pragmas[0] == 1
                assert pragmas[1] == "wal"
                assert pragmas[2] == 2  # FULL, as hld runs
                assert isinstance(pragmas[3], int) and pragmas[3] >= 5000
                await conn.rollback()
        finally:
            for conn in conns:
                await conn.close()


async def test_values_are_stored_in_formats_hld_reads(tmp_path: Path) -> None:
    db = tmp_path / "agent.db"
    pst = timezone(timedelta(hours=-8))
    async with await Store.open(db) as store:
        await store.create_session(
            Session(
                id="s",
                run_id="r",
                query="q",
                auto_accept_edits=True,
                created_at=datetime(2025, 1, 15, 10, 30, 0, 123456, tzinfo=pst),
            )
        )
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM sessions").fetchone()
    assert row["created_at"] == "2025-01-15 18:30:00.123456+00:00"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00:00", row["last_activity_at"])
    for column in (
        "claude_session_id",
        "parent_session_id",
        "summary",
        "title",
        "model",
        "model_id",
        "working_dir",
        "allowed_tools",
        "result_content",
        "error_message",
        "proxy_api_key",
        "additional_directories",
    ):
        assert row[column] == "", column
    assert row["auto_accept_edits"] == 1 and row["archived"] == 0 and row["max_turns"] == 0
    assert row["completed_at"] is None and row["editor_state"] is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-15 10:30:00.123456789-08:00", datetime(2025, 1, 15, 18, 30, 0, 123456, UTC)),
        ("2025-11-03 09:02:47-08:00", datetime(2025, 11, 3, 17, 2, 47, tzinfo=UTC)),
        ("2025-01-15 18:30:00", datetime(2025, 1, 15, 18, 30, tzinfo=UTC)),
        ("2025-10-22 10:37:12.85210127-07:00", datetime(2025, 10, 22, 17, 37, 12, 852101, UTC)),
        ("2025-01-15 10:30:00.1+00:00", datetime(2025, 1, 15, 10, 30, 0, 100000, UTC)),
        ("2025-01-15T10:30:00Z", datetime(2025, 1, 15, 10, 30, tzinfo=UTC)),
        (1736937000, datetime(2025, 1, 15, 10, 30, tzinfo=UTC)),
        (1736937000000, datetime(2025, 1, 15, 10, 30, tzinfo=UTC)),
        (None, None),
        ("not a time", None),
    ],
)
def test_every_timestamp_form_hld_wrote_reads_as_the_same_instant(
    text: object, expected: datetime | None
) -> None:
    assert parse_timestamp(text) == expected
    if expected is not None:
        assert parse_timestamp(format_timestamp(expected)) == expected


def test_wheel_carries_the_migrations(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("agentstore-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "agentstore/_migrations/env.py" in names
    assert any(n.startswith("agentstore/_migrations/versions/0001_") for n in names)
    assert "agentstore/py.typed" in names
    # Installed without the source tree, it migrates a new database by itself.
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    script = (
        "import asyncio, sys\n"
        "from agentstore import Store\n"
        "from agentstore.migrations import script_location\n"
        "async def main():\n"
        "    async with await Store.open(sys.argv[1]) as s:\n"
        "        print(script_location(), await s.get_session_count())\n"
        "asyncio.run(main())\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "w.db")],
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(str(target / "agentstore" / "_migrations"))
    assert run.stdout.strip().endswith(" 0")
    shutil.rmtree(target)


async def test_times_hld_writes_in_local_time_are_written_in_local_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # hld binds Go times as local text and compares them as text (e.g. the expiry of a
    # bypass-permissions window): agentstore writes those columns the same way, so that hld,
    # sharing the file and the machine's time zone, compares them right. Columns hld fills
    # with CURRENT_TIMESTAMP stay UTC. Both read back as the same UTC instant.
    import time

    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        db = tmp_path / "agent.db"
        at = datetime(2025, 1, 15, 18, 30, 0, 123456, tzinfo=UTC)
        async with await Store.open(db) as store:
            await store.create_session(
                Session(
                    id="s",
                    run_id="r",
                    query="q",
                    created_at=at,
                    last_activity_at=at,
                    dangerously_skip_permissions=True,
                    dangerously_skip_permissions_expires_at=at,
                )
            )
            from agentstore import Approval, ConversationEvent

            await store.create_approval(
                Approval(
                    id="a",
                    run_id="r",
                    session_id="s",
                    tool_name="Bash",
                    tool_input={},
                    created_at=at,
                )
            )
            await store.add_conversation_event(
                ConversationEvent(session_id="s", claude_session_id="c", created_at=at)
            )
            got = await store.get_session("s")
            assert got.created_at == at and got.dangerously_skip_permissions_expires_at == at
            assert got.created_at.tzinfo is UTC  # read back in UTC, not in the stored offset
            listed = (await store.list_sessions())[0]
            assert listed.last_activity_at == at and listed.last_activity_at.tzinfo is UTC
            assert (await store.get_approval("a")).created_at == at
            assert (await store.get_conversation("c"))[0].created_at == at
        with sqlite3.connect(db) as conn:
            row = conn.execute(
                "SELECT created_at, dangerously_skip_permissions_expires_at FROM sessions"
            ).fetchone()
            approval = conn.execute("SELECT created_at FROM approvals").fetchone()[0]
            event = conn.execute("SELECT created_at FROM conversation_events").fetchone()[0]
            # hld's own expiry test, as text against its local "now", one minute later:
            hld_now = "2025-01-15 10:31:00.000000-08:00"
            expired = conn.execute(
                "SELECT COUNT(*) FROM sessions WHERE dangerously_skip_permissions_expires_at < ?",
                (hld_now,),
            ).fetchone()[0]
        assert row == ("2025-01-15 10:30:00.123456-08:00",) * 2
        assert approval == "2025-01-15 10:30:00.123456-08:00"
        assert event == "2025-01-15 18:30:00.123456+00:00"
        assert expired == 1
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_historic_offsets_with_seconds_are_written_in_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    # Liberia kept local mean time (-00:44:30) until 1972: text with that offset is readable
    # neither by SQLite's date functions nor by go-sqlite3, so such times are written in UTC.
    import time

    from agentstore.types import format_local_timestamp

    monkeypatch.setenv("TZ", "Africa/Monrovia")
    time.tzset()
    try:
        old = datetime(1971, 6, 1, 12, 0, tzinfo=UTC)
        text = format_local_timestamp(old)
        assert text == "1971-06-01 12:00:00.000000+00:00"
        assert parse_timestamp(text) == old
        assert format_local_timestamp(datetime(1, 1, 1, tzinfo=UTC)).endswith("+00:00")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


async def test_a_refused_newer_hld_file_keeps_its_journal_mode(
    tmp_path: Path, hld_fixtures: Path
) -> None:
    db = tmp_path / "daemon.db"
    shutil.copy(hld_fixtures / "hld_v22_empty.db", db)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("INSERT INTO schema_version (version, description) VALUES (23, 'newer hld')")
    before = db.read_bytes()
    with pytest.raises(SchemaTooNewError):
        await Store.open(db)
    assert db.read_bytes() == before


def _orphan_check_database(path: Path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE parent (id TEXT PRIMARY KEY)")
        conn.exec_driver_sql(
            "CREATE TABLE child (name TEXT PRIMARY KEY, parent_id TEXT REFERENCES parent(id))"
        )
        conn.exec_driver_sql("INSERT INTO parent VALUES ('p')")
        # Rowid 1 kept, rowid 2 an orphan (hld left such rows: its foreign keys were off).
        conn.exec_driver_sql("INSERT INTO child VALUES ('b', 'p'), ('a', 'gone')")
    return engine


def test_a_migration_rebuilding_a_table_keeps_its_orphans_and_refuses_new_ones(
    tmp_path: Path,
) -> None:
    """The check before commit counts the rows pointing at missing rows per table, parent
    and key: a rebuild that renumbers an existing orphan's rowid passes, a migration that
    adds one more orphan is rolled back."""
    from agentstore.migrations import run_in_migration_transaction

    engine = _orphan_check_database(tmp_path / "fk.db")

    def rebuild(conn: sa.Connection) -> None:  # as a batch migration does, rows reordered
        conn.exec_driver_sql(
            "CREATE TABLE child_new (name TEXT PRIMARY KEY, parent_id TEXT REFERENCES parent(id))"
        )
        conn.exec_driver_sql("INSERT INTO child_new SELECT * FROM child ORDER BY name")
        conn.exec_driver_sql("DROP TABLE child")
        conn.exec_driver_sql("ALTER TABLE child_new RENAME TO child")

    def add_orphan(conn: sa.Connection) -> None:
        conn.exec_driver_sql("INSERT INTO child VALUES ('c', 'also gone')")

    try:
        with engine.connect() as conn:
            run_in_migration_transaction(conn, rebuild)
            rows = conn.exec_driver_sql("SELECT rowid, name FROM child ORDER BY rowid").all()
            assert rows == [(1, "a"), (2, "b")]  # the orphan's rowid moved from 2 to 1
            with pytest.raises(DatabaseError, match="1 rows pointing at missing rows"):
                run_in_migration_transaction(conn, add_orphan)
            assert conn.exec_driver_sql("SELECT name FROM child ORDER BY name").all() == [
                ("a",),
                ("b",),
            ]
    finally:
        engine.dispose()
