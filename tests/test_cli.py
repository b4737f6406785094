"""The command line: `agentstore demo` (the README's first command) and `agentstore adopt`."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from agentstore import Store


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentstore.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_demo_records_a_resumed_session_and_prints_it(tmp_path: Path) -> None:
    done = run_cli("demo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    db = tmp_path / "agentstore-demo.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    out = done.stdout
    assert "conversation of the resumed session (ancestor first)" in out
    assert "approval=approved" in out and "linear" in out and "tests/test_sync.py" in out
    async with await Store.open(db) as store:
        sessions = await store.list_sessions()
        assert len(sessions) == 2
        child = next(s for s in sessions if s.parent_session_id)
        events = await store.get_session_conversation(child.id)
        assert next(e.claude_session_id for e in events) != child.claude_session_id
        assert len(events) == 9
        assert len(await store.get_mcp_servers(child.parent_session_id)) == 2
        assert await store.get_approval_count() == 1
        assert f"sessions={await store.get_session_count()}" in out
    # Run again: it adds another session pair to the same file.
    again = run_cli("demo", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 4


def test_cli_reports_store_errors_without_a_traceback(tmp_path: Path) -> None:
    notes = tmp_path / "notes.db"
    notes.write_text("not a database")
    done = run_cli("adopt", str(notes), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("agentstore: ")
    assert "Traceback" not in done.stderr
    assert notes.read_text() == "not a database"
