"""A copy killed midway (SIGKILL, no cleanup at all) leaves a destination a second copy fills.

``copy_database`` writes the destination in one transaction: a copy that fails or is
cancelled rolls it back and removes a file it created, but a killed process can do neither.
What must hold then comes from the databases themselves: SQLite ignores the uncommitted
frames in the ``-wal``, PostgreSQL aborts the transaction of a client that went away (and
with it the disabled search trigger and the dropped search index). So the destination is
empty, sound and opens at its revision, and running the copy again into the same
destination — the same SQLite path, which the killed copy created and could not remove —
succeeds with exactly the source's rows.

The copy runs in a child process that prints a line per ``progress`` call; it is killed once
it reported rows written, long before it could finish (a source of 60,000 events takes a
second or more to copy). Every run checks from the child's own lines that it died before
writing its last row, so a kill that came too late fails clearly instead of passing by luck.
Runs on an SQLite file and, when ``AGENTSTORE_TEST_POSTGRES_URL`` is set, on a fresh
PostgreSQL database (the ``db_url`` fixture).
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from agentstore import (
    Approval,
    ConversationEvent,
    EventType,
    FileSnapshot,
    MCPServerConfig,
    Session,
    Store,
    copy_database,
    mcp_servers_from_config,
)

REPO = Path(__file__).resolve().parents[1]
EVENTS = 60_000
BATCH = 500
DATA_TABLES = (
    "sessions",
    "conversation_events",
    "approvals",
    "mcp_servers",
    "raw_events",
    "file_snapshots",
)
WAIT = 60.0
"""Seconds any one wait on the child or the server may take before the test fails."""

COPIER = r"""
import asyncio, sys
from agentstore import copy_database

def progress(done: int, total: int) -> None:
    print("progress", done, total, flush=True)  # in the pipe before the copy goes on

async def main() -> None:
    counts = await copy_database(sys.argv[1], sys.argv[2], progress=progress)
    print("done", sum(counts.values()), flush=True)

asyncio.run(main())
"""


@dataclass(frozen=True)
class Source:
    path: Path
    rows: dict[str, int]  # every table's rows, as store.stats() counts them


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    """An SQLite file with a row in every table and 60,000 events, built once, read only."""
    path = tmp_path_factory.mktemp("killed-copy") / "source.db"

    async def build() -> dict[str, int]:
        async with Store.open(path) as store:
            for n in range(2):
                await store.create_session(
                    Session(id=f"s{n}", run_id=f"r{n}", query=f"q{n}", claude_session_id=f"c{n}")
                )
                await store.create_approval(
                    Approval(id=f"a{n}", session_id=f"s{n}", tool_name="Bash", tool_input={"n": n})
                )
                await store.store_mcp_servers(
                    f"s{n}", mcp_servers_from_config(f"s{n}", {"x": MCPServerConfig(command="x")})
                )
                await store.store_raw_event(f"s{n}", '{"type":"raw"}')
                await store.create_file_snapshot(
                    FileSnapshot(session_id=f"s{n}", file_path="a.py", content="print(1)\n")
                )
            for b in range(EVENTS // BATCH):
                n = b % 2
                await store.add_conversation_events(
                    [
                        ConversationEvent(
                            session_id=f"s{n}",
                            claude_session_id=f"c{n}",
                            event_type=EventType.TOOL_CALL if k % 5 == 0 else EventType.MESSAGE,
                            tool_name="Bash" if k % 5 == 0 else "",
                            tool_input_json=f'{{"command":"ls {k}"}}' if k % 5 == 0 else "",
                            content=f"event {b}.{k}: " + "words the search index holds " * 10,
                        )
                        for k in range(BATCH)
                    ]
                )
            return dict((await store.stats()).rows)

    rows = asyncio.run(build())
    assert rows["conversation_events"] == EVENTS
    assert all(rows[name] for name in DATA_TABLES)
    return Source(path, rows)


async def kill_copy_midway(source: Path, dest: str, fraction: float) -> list[tuple[int, int]]:
    """Run ``copy_database(source, dest)`` in a child and SIGKILL it at the first progress
    line with rows written and at least ``fraction`` of them; returns every progress line it
    printed. Fails if the child ended by itself or wrote its last row before dying."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        COPIER,
        str(source),
        dest,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    progress: list[tuple[int, int]] = []
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), WAIT)).decode()
            if not line:
                break  # the child ended by itself: reported below
            lines.append(line)
            words = line.split()
            if len(words) == 3 and words[0] == "progress":
                done, total = int(words[1]), int(words[2])
                progress.append((done, total))
                if 0 < done < total and done >= fraction * total:
                    proc.send_signal(signal.SIGKILL)
                    break
        out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
    if proc.returncode != -signal.SIGKILL:
        pytest.fail(
            f"the copy ended by itself (exit status {proc.returncode}) before it was killed:\n"
            + "".join(lines)
            + err.decode()
        )
    # Lines printed before the kill landed, too: none may say the copy wrote everything.
    for line in out.decode().splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "progress":  # a line cut by the kill is ignored
            progress.append((int(words[1]), int(words[2])))
        elif words and words[0] == "done":
            pytest.fail("the copy finished before the kill: make the source bigger")
    done, total = progress[-1]
    if done >= total:
        pytest.fail(
            f"the kill came after the copy wrote all {total} rows (it may have committed): "
            "make the source bigger"
        )
    return progress


async def server_sessions(url: str) -> int:
    """Connections to the PostgreSQL database ``url`` other than the one asking."""
    import asyncpg

    pg = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        found: int = await pg.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return found
    finally:
        await pg.close()


async def search_index_is_back(store: Store) -> tuple[bool, bool]:
    """Whether the events' search trigger is enabled and its GIN index exists (PostgreSQL;
    a copy disables the one and drops the other inside its transaction)."""
    async with store.engine.connect() as conn:
        row: Any = (
            await conn.exec_driver_sql(
                "SELECT (SELECT tgenabled <> 'D' FROM pg_trigger "
                "WHERE tgname = 'agentstore_search_events_insert'), "
                "to_regclass('ix_agentstore_search_document') IS NOT NULL"
            )
        ).one()
    return bool(row[0]), bool(row[1])


def integrity(path: Path) -> list[tuple[str, ...]]:
    """``PRAGMA integrity_check`` through sqlite3, not through the store."""
    conn = sqlite3.connect(path)
    try:
        return [tuple(row) for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


@pytest.mark.parametrize("fraction", [0.0, 0.3], ids=["first-rows", "mid-events"])
async def test_a_killed_copy_leaves_an_empty_destination_a_second_copy_fills(
    source: Source, db_url: str, fraction: float
) -> None:
    """Killed after its first rows (settings replaced, search index set aside) or a third of
    the way through the events (megabytes uncommitted in SQLite's -wal or PostgreSQL's heap):
    the destination is empty, sound and at its revision; the same copy then succeeds."""
    url = make_url(db_url)
    sqlite_path = Path(url.database or "") if url.get_backend_name() == "sqlite" else None
    progress = await kill_copy_midway(source.path, db_url, fraction)
    assert progress[-1][0] > 0

    if sqlite_path is not None:
        # The copy created and migrated the file before its transaction; killed, it could
        # not remove it. SQLite itself must read it as it was before the transaction.
        assert sqlite_path.exists()
        assert integrity(sqlite_path) == [("ok",)]
    else:
        # The server aborts the killed client's transaction once it notices it is gone.
        for _ in range(int(WAIT * 10)):
            if await server_sessions(db_url) == 0:
                break
            await asyncio.sleep(0.1)
        assert await server_sessions(db_url) == 0

    async with Store.open(db_url, migrate=False) as dest:  # at its revision: no migration
        rows = (await dest.stats()).rows
        assert {name: rows[name] for name in DATA_TABLES} == dict.fromkeys(DATA_TABLES, 0)
        if sqlite_path is None:
            assert await search_index_is_back(dest) == (True, True)

    counts = await copy_database(source.path, db_url)
    assert counts == source.rows
    async with Store.open(db_url, migrate=False) as dest:
        assert (await dest.stats()).rows == source.rows
        if sqlite_path is None:
            assert await search_index_is_back(dest) == (True, True)
    if sqlite_path is not None:
        assert integrity(sqlite_path) == [("ok",)]
