"""Defects a review found, each pinned: secrets, bad numbers, odd files, odd paths."""

from __future__ import annotations

import math
import shutil
import sqlite3
import traceback
from pathlib import Path

import pytest

from agentstore import (
    Approval,
    ConversationEvent,
    DuplicateError,
    InvalidValueError,
    MCPServer,
    MCPServerConfig,
    Session,
    SessionUpdate,
    Store,
)
from agentstore.errors import DatabaseError

SECRET = "sk-test-or-v1-SECRET-0123456789"


async def test_secrets_stay_out_of_chained_driver_errors(store: Store) -> None:
    await store.create_session(Session(id="s1", run_id="r1", query="q", proxy_api_key=SECRET))
    with pytest.raises(DuplicateError) as info:
        await store.create_session(Session(id="s1", run_id="r2", query="q", proxy_api_key=SECRET))
    rendered = "".join(traceback.format_exception(info.value))
    assert SECRET not in rendered
    assert "s1" in str(info.value)


async def test_integers_beyond_64_bits_are_refused_before_writing(store: Store) -> None:
    await store.create_session(Session(id="s1", run_id="r1", query="q"))
    with pytest.raises(InvalidValueError, match="64-bit"):
        await store.update_session("s1", SessionUpdate(input_tokens=2**63, proxy_api_key=SECRET))
    with pytest.raises(InvalidValueError, match="64-bit"):
        await store.create_session(Session(id="s2", run_id="r2", query="q", max_turns=-(2**63) - 1))
    assert (await store.get_session("s1")).input_tokens is None
    assert await store.get_session_count() == 1


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
async def test_nan_and_infinity_are_not_json(store: Store, bad: float) -> None:
    await store.create_session(Session(id="s1", run_id="r1", query="q"))
    with pytest.raises(InvalidValueError):
        await store.create_approval(
            Approval(id="a1", run_id="r1", session_id="s1", tool_name="Bash", tool_input={"x": bad})
        )
    assert await store.get_approval_count() == 0


def test_reprs_hide_mcp_env_and_headers() -> None:
    server = MCPServer(
        session_id="s", name="gh", command="gh-mcp", env_json='{"GITHUB_TOKEN":"ghp_SECRET"}'
    )
    assert "ghp_SECRET" not in repr(server)
    config = MCPServerConfig(
        command="x", env={"TOKEN": "ghp_SECRET"}, headers={"Authorization": "Bearer ghp_SECRET"}
    )
    assert "ghp_SECRET" not in repr(config)


async def test_a_refused_foreign_file_keeps_every_byte(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    before = path.read_bytes()
    with pytest.raises(DatabaseError):
        await Store.open(path)
    assert path.read_bytes() == before  # the journal-mode bytes of the header included


async def test_hld_file_with_orphan_rows_is_adopted_with_them(
    hld_fixtures: Path, tmp_path: Path
) -> None:
    # hld turned foreign keys on for one pooled connection only: a session deleted on another
    # one leaves its events behind. Adoption keeps them (they are data), and succeeds.
    path = tmp_path / "daemon.db"
    shutil.copy(hld_fixtures / "hld_v22_populated.db", path)
    with sqlite3.connect(path) as conn:
        sid, count = conn.execute(
            "SELECT session_id, COUNT(*) FROM conversation_events GROUP BY session_id "
            "ORDER BY COUNT(*) DESC LIMIT 1"
        ).fetchone()
        for table in ("mcp_servers", "approvals", "file_snapshots"):
            conn.execute(f"DELETE FROM {table} WHERE session_id = ?", (sid,))
        conn.execute("DELETE FROM sessions WHERE id = ?", (sid,))
    async with await Store.open(path) as store:
        assert await store.get_event_count() == 203
        assert await store.get_session_count() == 8
    with sqlite3.connect(path) as conn:
        orphans = conn.execute(
            "SELECT COUNT(*) FROM conversation_events WHERE session_id = ?", (sid,)
        ).fetchone()[0]
    assert orphans == count


async def test_backup_of_a_file_whose_path_has_uri_characters(
    hld_fixtures: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "proj#1 ?50%"
    folder.mkdir()
    path = folder / "daemon.db"
    shutil.copy(hld_fixtures / "hld_v13.db", path)
    async with await Store.open(path):
        pass
    (backup,) = folder.glob("daemon.db.pre-agentstore-*.bak")
    with sqlite3.connect(backup) as conn:
        assert conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj#1 ?50%"]


async def test_adoption_with_extra_tables_of_awkward_names(
    hld_fixtures: Path, tmp_path: Path
) -> None:
    path = tmp_path / "daemon.db"
    shutil.copy(hld_fixtures / "hld_v22_empty.db", path)
    with sqlite3.connect(path) as conn:
        conn.execute('CREATE TABLE "order" (id INTEGER)')
        conn.execute('CREATE TABLE "my-table" (id INTEGER)')
        conn.execute('INSERT INTO "order" VALUES (1)')
    async with await Store.open(path) as store:
        await store.create_session(Session(id="s", run_id="r", query="q"))
        event = await store.add_conversation_event(
            ConversationEvent(session_id="s", claude_session_id="c", event_type="message")
        )
        assert event.sequence == 1
    with sqlite3.connect(path) as conn:
        assert conn.execute('SELECT id FROM "order"').fetchall() == [(1,)]
