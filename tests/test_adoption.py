"""Adopting hld databases in place: nothing lost, healed as hld heals, still hld's."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agentstore import ConversationEvent, Store, adopt_file
from agentstore.errors import LegacyDatabaseError
from agentstore.types import parse_timestamp

ROOT = Path(__file__).resolve().parents[1]
ALL_FIXTURES = [
    "hld_v13",
    "hld_v17_buggy",
    "hld_v17_testsim",
    "hld_v22_empty",
    "hld_v22_populated",
    "hld_go_written",
]
AGENTSTORE_OBJECTS = {
    "alembic_version",
    "uq_conversation_claude_session_sequence",
    "sqlite_autoindex_alembic_version_1",
}
# Columns hld reads into a plain Go string/int/bool: a NULL there breaks hld (fixtures README).
HLD_PLAIN = {
    "conversation_events": [
        "role",
        "content",
        "tool_id",
        "tool_name",
        "tool_input_json",
        "tool_result_for_id",
        "tool_result_content",
        "is_completed",
        "approval_status",
        "approval_id",
    ],
    "sessions": ["max_turns", "auto_accept_edits", "id", "run_id", "query", "status"],
    "mcp_servers": ["args_json", "env_json"],
}


def copy_fixture(fixtures: Path, name: str, into: Path) -> Path:
    target = into / f"{name}.db"
    shutil.copy(fixtures / f"{name}.db", target)
    target.chmod(0o600)
    return target


def schema(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        return {
            n: s
            for n, s in conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE name != 'sqlite_sequence'"
            )
            # agentstore's own: its ledger, its unique index and the search index
            # (revision 0005: an FTS4 table, its shadow tables and its triggers).
            if n not in AGENTSTORE_OBJECTS and "agentstore_search" not in n
        }


def rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        order = "version" if table == "schema_version" else "rowid"
        cursor = conn.execute(f"SELECT {', '.join(sorted(columns))} FROM {table} ORDER BY {order}")
        return cursor.fetchall()


def tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return sorted(
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT IN "
                "('sqlite_sequence', 'alembic_version')"
            )
            if not r[0].startswith("agentstore_search")  # the search index (0005)
        )


@pytest.mark.parametrize("name", ALL_FIXTURES)
async def test_every_fixture_is_adopted_with_every_row_and_value(
    name: str, hld_fixtures: Path, tmp_path: Path
) -> None:
    original = hld_fixtures / f"{name}.db"
    db = copy_fixture(hld_fixtures, name, tmp_path)
    async with await Store.open(db) as store:
        assert await store.get_session_count() == len(rows(original, "sessions"))
        sessions = {s.id: s for s in await store.list_sessions()}
        approvals = [
            await store.get_approval(r[0])
            for r in sqlite3.connect(original).execute("SELECT id FROM approvals")
        ]
    for table in tables(original):
        if table in ("schema_version", "user_settings"):
            continue
        before, after = rows(original, table), rows(db, table)
        # New columns come with NULL or their default; every stored value is unchanged.
        with sqlite3.connect(original) as conn:
            old_columns = sorted(r[1] for r in conn.execute(f"PRAGMA table_info({table})"))
        with sqlite3.connect(db) as conn:
            new_columns = sorted(r[1] for r in conn.execute(f"PRAGMA table_info({table})"))
        keep = [new_columns.index(c) for c in old_columns]
        projected = [tuple(row[i] for i in keep) for row in after]
        if table == "approvals" and name == "hld_v13":
            assert len(projected) == len(before)  # tool_use_id backfilled below
        else:
            assert projected == before, table
    # Timestamps read back as the same instant, whatever form hld stored them in.
    with sqlite3.connect(original) as conn:
        for sid, created, last in conn.execute(
            "SELECT id, created_at, last_activity_at FROM sessions"
        ):
            assert sessions[sid].created_at == parse_timestamp(created)
            assert sessions[sid].last_activity_at == parse_timestamp(last)
            assert sessions[sid].created_at.tzinfo is UTC
    assert all(a.created_at.tzinfo is UTC for a in approvals)


@pytest.mark.parametrize("name", ["hld_v13", "hld_v17_buggy"])
async def test_adoption_equals_what_hld_itself_makes_of_the_file(
    name: str, hld_fixtures: Path, tmp_path: Path
) -> None:
    db = copy_fixture(hld_fixtures, name, tmp_path)
    async with await Store.open(db):
        pass
    by_go = hld_fixtures / f"{name}_upgraded_by_go.db"
    assert schema(db) == schema(by_go)
    assert tables(db) == tables(by_go)
    for table in tables(by_go):
        ours, theirs = rows(db, table), rows(by_go, table)
        if table == "schema_version":  # applied_at of the new rows is the upgrade's clock
            ours = [(r[1], r[2]) for r in ours]
            theirs = [(r[1], r[2]) for r in theirs]
        if table == "user_settings" and name == "hld_v13":
            # (advanced_providers, created_at, id, opt_in_telemetry, updated_at): the times
            # are the clock of whoever upgraded.
            ours = [(r[0], r[2], r[3]) for r in ours]
            theirs = [(r[0], r[2], r[3]) for r in theirs]
        assert ours == theirs, table


async def test_hld_heals_v13_tool_use_id_backfill(hld_fixtures: Path, tmp_path: Path) -> None:
    db = copy_fixture(hld_fixtures, "hld_v13", tmp_path)
    async with await Store.open(db) as store:
        with sqlite3.connect(db) as conn:
            expected = dict(
                conn.execute(
                    "SELECT a.id, (SELECT tool_id FROM conversation_events e"
                    " WHERE e.approval_id = a.id) FROM approvals a"
                )
            )
        for approval_id, tool_id in expected.items():
            assert (await store.get_approval(approval_id)).tool_use_id == tool_id
        assert any(v for v in expected.values())
        settings = await store.get_user_settings()
        assert settings.advanced_providers is False and settings.opt_in_telemetry is None


async def test_v17_buggy_gets_additional_directories(hld_fixtures: Path, tmp_path: Path) -> None:
    db = copy_fixture(hld_fixtures, "hld_v17_buggy", tmp_path)
    async with await Store.open(db) as store:
        sessions = await store.list_sessions()
        assert sessions and all(s.additional_directories == "" for s in sessions)
        assert (await store.get_user_settings()).advanced_providers is True
    with sqlite3.connect(db) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
        descriptions = dict(conn.execute("SELECT version, description FROM schema_version"))
    assert versions == [1, *range(3, 23)]
    assert descriptions[17] == descriptions[16]  # the real buggy 17 row is kept as it was


async def test_backup_is_written_first_and_is_the_original(
    hld_fixtures: Path, tmp_path: Path
) -> None:
    db = copy_fixture(hld_fixtures, "hld_v22_populated", tmp_path)
    async with await Store.open(db):
        pass
    (backup,) = tmp_path.glob("hld_v22_populated.db.pre-agentstore-*.bak")
    assert backup.stat().st_mode & 0o077 == 0
    assert schema(backup) == schema(hld_fixtures / "hld_v22_populated.db")
    for table in tables(backup):
        assert rows(backup, table) == rows(hld_fixtures / "hld_v22_populated.db", table)
    other = copy_fixture(hld_fixtures, "hld_v13", tmp_path)
    async with await Store.open(other, backup=False):
        pass
    assert not list(tmp_path.glob("hld_v13.db.pre-agentstore-*"))


def _snapshot(path: Path) -> tuple[dict[str, str], dict[str, list[tuple[Any, ...]]]]:
    return schema(path), {t: rows(path, t) for t in tables(path)}


async def test_failed_adoption_leaves_the_original_untouched(
    hld_fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = copy_fixture(hld_fixtures, "hld_v13", tmp_path)
    before = _snapshot(db)
    import agentstore.adopt as adopt

    real = adopt._stamp_baseline

    def fail_midway(conn: Any) -> None:
        real(conn)  # every healing step has run by now, inside the transaction
        raise RuntimeError("power cut")

    monkeypatch.setattr(adopt, "_stamp_baseline", fail_midway)
    with pytest.raises(RuntimeError, match="power cut"):
        await Store.open(db, backup=False)
    assert _snapshot(db) == before
    with sqlite3.connect(db) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "alembic_version" not in names and "user_settings" not in names


async def test_migrate_false_refuses_a_legacy_file_and_changes_nothing(
    hld_fixtures: Path, tmp_path: Path
) -> None:
    db = copy_fixture(hld_fixtures, "hld_v17_buggy", tmp_path)
    before = _snapshot(db)
    with pytest.raises(LegacyDatabaseError, match="hld database"):
        await Store.open(db, migrate=False)
    assert _snapshot(db) == before
    assert not list(tmp_path.glob("*.bak"))


def build_duplicates_db(path: Path, hld_fixtures: Path) -> None:
    shutil.copy(hld_fixtures / "hld_v22_empty.db", path)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO sessions (id, run_id, query, created_at, last_activity_at) "
            "VALUES ('s1', 'r1', 'q', '2025-01-15 10:30:00.123456789-08:00', "
            "'2025-01-15 18:31:00')"
        )
        events = [  # (id, claude, sequence) — hld let two events share a number
            (1, "c1", 1),
            (2, "c1", 2),
            (3, "c1", 2),
            (4, "c1", 3),
            (5, "c2", 1),
            (6, "c2", 2),
            (7, "c1", 3),
        ]
        conn.executemany(
            "INSERT INTO conversation_events (id, session_id, claude_session_id, sequence, "
            "event_type, role, content, created_at) VALUES (?, 's1', ?, ?, 'message', 'user', "
            "?, '2025-01-15 18:30:00')",
            [(i, c, s, f"event {i}") for i, c, s in events],
        )


async def test_duplicate_sequences_are_renumbered_in_order(
    hld_fixtures: Path, tmp_path: Path
) -> None:
    db = tmp_path / "dups.db"
    build_duplicates_db(db, hld_fixtures)
    report = await adopt_file(db)
    assert report.renumbered_events == 3  # ids 3, 4 and 7 move; 1, 2 keep their numbers
    async with await Store.open(db) as store:
        c1 = await store.get_conversation("c1")
        assert [(e.id, e.sequence) for e in c1] == [(1, 1), (2, 2), (3, 3), (4, 4), (7, 5)]
        c2 = await store.get_conversation("c2")
        assert [(e.id, e.sequence) for e in c2] == [(5, 1), (6, 2)]  # untouched
        new = await store.add_conversation_event(
            ConversationEvent(session_id="s1", claude_session_id="c1", event_type="message")
        )
        assert new.sequence == 6


async def test_orders_by_instant_on_adopted_data(hld_fixtures: Path, tmp_path: Path) -> None:
    db = copy_fixture(hld_fixtures, "hld_v22_populated", tmp_path)
    async with await Store.open(db) as store:
        ids = [s.id[:8] for s in await store.list_sessions()]
        # hld's text order, with the 3rd and 4th swapped: 2e3bb29f (17:02Z) is later than
        # 7c5b9b03 (16:32Z) though its text sorts lower (fixtures README, "Ordering trap").
        assert ids == [
            "e45170be",
            "016ae742",
            "2e3bb29f",
            "7c5b9b03",
            "e5b416bb",
            "1d498399",
            "fc49e2b5",
            "c18ee574",
            "72775666",
        ]
        expired = await store.get_expired_dangerous_permissions_sessions()
        assert [s.id[:8] for s in expired] == ["fc49e2b5"]
        recent = await store.get_recent_working_dirs()
        assert [r.last_used for r in recent] == sorted((r.last_used for r in recent), reverse=True)
        for session_id in {s.id for s in await store.list_sessions()}:
            pending = await store.get_pending_approvals(session_id)
            assert [a.created_at for a in pending] == sorted(a.created_at for a in pending)
        found = await store.search_sessions_by_title("", 50)
        stamps = [s.last_activity_at for s in found]
        assert stamps == sorted(stamps, reverse=True)
        # New events continue each Claude session's numbering.
        chain = await store.get_session_conversation(
            next(s.id for s in await store.list_sessions() if s.id.startswith("fc49e2b5"))
        )
        last = chain[-1]
        new = await store.add_conversation_event(
            ConversationEvent(
                session_id=last.session_id,
                claude_session_id=last.claude_session_id,
                event_type="message",
                role="assistant",
                content="resumed",
            )
        )
        assert new.sequence == last.sequence + 1


async def test_adopted_file_stays_one_hld_can_use(hld_fixtures: Path, tmp_path: Path) -> None:
    db = copy_fixture(hld_fixtures, "hld_v13", tmp_path)
    async with await Store.open(db) as store:
        s = (await store.list_sessions())[0]
        await store.add_conversation_event(
            ConversationEvent(
                session_id=s.id, claude_session_id=s.claude_session_id or "c", event_type="message"
            )
        )
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] >= 22
        for table, columns in HLD_PLAIN.items():
            for column in columns:
                # No NULL where hld reads a plain value, in rows agentstore wrote.
                nulls = conn.execute(
                    f"SELECT COUNT(*) FROM {table} WHERE {column} IS NULL AND rowid > "
                    f"(SELECT COALESCE(MAX(rowid), 0) FROM {table}) - 1"
                ).fetchone()[0]
                assert nulls == 0, (table, column)
        # Every column hld reads is there with hld's declared type; nothing NOT NULL without
        # a default was added to an hld table.
        for table in ("sessions", "conversation_events", "approvals", "user_settings"):
            ours = {r[1]: (r[2], r[3], r[4]) for r in conn.execute(f"PRAGMA table_info({table})")}
            with sqlite3.connect(hld_fixtures / "hld_v22_empty.db") as hld:
                theirs = {
                    r[1]: (r[2], r[3], r[4]) for r in hld.execute(f"PRAGMA table_info({table})")
                }
            assert {c: ours[c] for c in theirs} == theirs
            for extra in set(ours) - set(theirs):
                assert not (ours[extra][1] and ours[extra][2] is None)


def test_agentstore_adopt_command_and_alembic_upgrade(hld_fixtures: Path, tmp_path: Path) -> None:
    db = copy_fixture(hld_fixtures, "hld_v17_buggy", tmp_path)
    run = subprocess.run(
        [sys.executable, "-m", "agentstore.cli", "adopt", str(db)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "hld schema version 17" in run.stdout
    assert "added sessions.additional_directories" in run.stdout
    assert "Backup written first" in run.stdout
    again = subprocess.run(
        [sys.executable, "-m", "agentstore.cli", "adopt", str(db)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 1 and "not an hld database" in again.stderr

    other = copy_fixture(hld_fixtures, "hld_v13", tmp_path)
    env_url = f"sqlite+aiosqlite:///{other}"
    import os

    up = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
        env={**os.environ, "AGENTSTORE_DATABASE_URL": env_url},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert up.returncode == 0, up.stderr
    assert schema(other) == schema(hld_fixtures / "hld_v13_upgraded_by_go.db")
    assert list(tmp_path.glob("hld_v13.db.pre-agentstore-*.bak"))
    # The models and the adopted file agree as well as with a file agentstore made.
    check = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "check"],
        env={**os.environ, "AGENTSTORE_DATABASE_URL": env_url},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout


async def test_mixed_offsets_in_legacy_rows_are_read_as_instants(
    hld_fixtures: Path, tmp_path: Path
) -> None:
    db = tmp_path / "mixed.db"
    shutil.copy(hld_fixtures / "hld_v22_empty.db", db)
    with sqlite3.connect(db) as conn:
        for sid, stamp in [
            ("a", "2025-11-03 16:32:33.5+00:00"),
            ("b", "2025-11-03 09:02:47-08:00"),
            ("c", "2025-11-03 17:00:00"),
            ("d", "2025-11-03 10:01:00.999999999-07:00"),
        ]:
            conn.execute(
                "INSERT INTO sessions (id, run_id, query, created_at, last_activity_at)"
                " VALUES (?, ?, 'q', ?, ?)",
                (sid, sid, stamp, stamp),
            )
    async with await Store.open(db) as store:
        ordered = await store.list_sessions()
    assert [s.id for s in ordered] == ["b", "d", "c", "a"]
    assert ordered[1].last_activity_at == datetime(2025, 11, 3, 17, 1, 0, 999999, UTC)
    with sqlite3.connect(db) as conn:  # the stored text is not rewritten
        assert (
            conn.execute("SELECT last_activity_at FROM sessions WHERE id = 'd'").fetchone()[0]
            == "2025-11-03 10:01:00.999999999-07:00"
        )
