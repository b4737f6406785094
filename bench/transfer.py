"""Moving data: X1 export, X2 import, X3 copy_database (the issue's speed floors).

The source is one SQLite file holding 1,000,000 events (50,000 with ``--quick``) in 100
sessions of realistic agent traffic — messages, tool calls with JSON inputs, tool results,
thinking, a few hundred to a thousand bytes each — with approvals, MCP servers, raw events
and snapshots beside them, written once through ``add_conversation_events`` before any
timing (so the search index is built too). Each round then runs, in the same run:

* X1 — ``store.export_jsonl(path)`` of the whole file; floor 200,000 events/s.
* X2 — ``store.import_jsonl(path)`` of that export into a fresh SQLite file (created and
  migrated before the clock starts); floor 100,000 events/s. The copy is checked: the
  same number of events, and one session's conversation equal to the source's.
* X3 — ``copy_database(source file, store)`` into a fresh PostgreSQL database (migrated
  before the clock starts; the call reads the source, writes, and verifies every table
  before it commits); floor 50,000 events/s. Needs ``--postgres-url``.

Each operation runs in a process of its own (``python -m bench.transfer …``), which times
the call alone and reports its own peak resident memory (``VmHWM``: the interpreter,
agentstore and the operation): the issue's limit is 200 MB for all three. Before each timed
operation the machine is settled (``sync``, and a PostgreSQL ``CHECKPOINT``): what the one
before left to write is not billed to it. The table gives the median over rounds of
events/s, the range per round, and the largest peak RSS. The floors are the issue's; they
were set before the full-text search index (revision 0005), which every event written to
either backend now also goes into (an FTS4 row on SQLite, a ``tsvector`` and a GIN entry on
PostgreSQL, made by triggers): X2 and X3 pay for it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("X1", "X2", "X3")
FULL_EVENTS = 1_000_000
QUICK_EVENTS = 50_000
SESSIONS = 100
FLOORS = {"X1": 200_000.0, "X2": 100_000.0, "X3": 50_000.0}
RSS_LIMIT_MB = 200.0
LABELS = {
    "X1": "export the whole store to JSON Lines (SQLite)",
    "X2": "import that file into a fresh SQLite file",
    "X3": "copy_database SQLite file -> fresh PostgreSQL database (verified)",
}

WORDS = (
    "the a to of and in is for that it with on this be as are test file error migration "
    "database session query function import module class return value type list config "
    "server request response timeout retry commit branch merge deploy build install "
    "package version docker container token auth user schema table column index key "
    "transaction rollback async await task thread queue worker event stream cache memory "
    "latency benchmark trace log debug exception traceback fixture mock patch sync fetch "
    "parse render route handler proxy upgrade alembic postgres sqlite pytest ruff mypy "
    "école naïve café résumé straße"
).split()


# --- the source --------------------------------------------------------------------------------


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(WORDS, k=words))


async def build_source(path: str, events: int) -> int:
    """The source database: ``events`` events in :data:`SESSIONS` sessions, and the rest."""
    from agentstore import (
        Approval,
        ConversationEvent,
        FileSnapshot,
        MCPServerConfig,
        Session,
        Store,
        mcp_servers_from_config,
    )

    rng = random.Random(12)
    per_session = max(1, events // SESSIONS)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    async with Store.open(path) as store:
        written = 0
        for s in range(SESSIONS):
            sid = f"session-{s:03d}"
            claude = f"claude-{s:03d}"
            await store.create_session(
                Session(
                    id=sid,
                    run_id=f"run-{s:03d}",
                    query=_text(rng, 12),
                    title=_text(rng, 5),
                    claude_session_id=claude,
                    parent_session_id=f"session-{s - 1:03d}" if s % 10 else "",
                    working_dir=f"/src/project-{s % 7}",
                    status="completed",
                    created_at=base + timedelta(hours=s),
                    last_activity_at=base + timedelta(hours=s, minutes=30),
                    cost_usd=rng.random(),
                    input_tokens=rng.randrange(10**6),
                    proxy_api_key="sk-bench",
                )
            )
            await store.store_mcp_servers(
                sid,
                mcp_servers_from_config(
                    sid, {"codelayer": MCPServerConfig(command="hlyr", args=["mcp"], env={})}
                ),
            )
            count = per_session if s < SESSIONS - 1 else events - written
            for start in range(0, count, 5_000):
                batch = []
                for i in range(start, min(count, start + 5_000)):
                    kind = i % 4
                    at = base + timedelta(hours=s, seconds=i, microseconds=rng.randrange(10**6))
                    if kind == 1:
                        batch.append(
                            ConversationEvent(
                                session_id=sid,
                                claude_session_id=claude,
                                event_type="tool_call",
                                tool_id=f"toolu_{s}_{i}",
                                tool_name="Bash",
                                tool_input_json=json.dumps({"command": _text(rng, 8)}),
                                created_at=at,
                            )
                        )
                    elif kind == 2:
                        batch.append(
                            ConversationEvent(
                                session_id=sid,
                                claude_session_id=claude,
                                event_type="tool_result",
                                role="user",
                                tool_result_for_id=f"toolu_{s}_{i - 1}",
                                tool_result_content=_text(rng, rng.randint(20, 120)),
                                is_completed=True,
                                created_at=at,
                            )
                        )
                    else:
                        batch.append(
                            ConversationEvent(
                                session_id=sid,
                                claude_session_id=claude,
                                event_type="message" if kind == 0 else "thinking",
                                role="assistant",
                                content=_text(rng, rng.randint(20, 150)),
                                created_at=at,
                            )
                        )
                await store.add_conversation_events(batch)
            written += count
            await store.create_approval(
                Approval(
                    id=f"approval-{s:03d}",
                    session_id=sid,
                    tool_name="Bash",
                    tool_input={"command": _text(rng, 6)},
                )
            )
            await store.store_raw_event(sid, json.dumps({"type": "init", "n": s}))
            await store.create_file_snapshot(
                FileSnapshot(session_id=sid, file_path=f"/src/f{s}.py", content=_text(rng, 400))
            )
        return await store.get_event_count()


# --- one operation, in a process of its own -----------------------------------------------------


async def _operation(argv: Sequence[str]) -> dict[str, Any]:
    from agentstore import Store, copy_database

    kind, source, dest = argv
    if kind == "export":
        async with Store.open(source, migrate=False) as store:
            started = time.perf_counter()
            counts = await store.export_jsonl(dest)
            seconds = time.perf_counter() - started
        events = counts["event"]
    elif kind == "import":
        async with Store.open(dest) as store:  # created and migrated before the clock
            started = time.perf_counter()
            counts = await store.import_jsonl(source)
            seconds = time.perf_counter() - started
        events = counts["event"]
    elif kind == "copy":
        async with Store.open(dest) as store:  # migrated before the clock
            started = time.perf_counter()
            rows = await copy_database(source, store)
            seconds = time.perf_counter() - started
        events = rows["conversation_events"]
    else:
        raise SystemExit(f"unknown operation {kind!r}")
    return {"seconds": seconds, "events": events, "rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory, in MB.

    Linux's ``VmHWM``: the high-water mark of this process's own address space.
    (``ru_maxrss`` would not do: across fork and exec it keeps the parent's mark.)
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_operation(kind: str, source: str, dest: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.transfer", kind, source, dest],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3_600,
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{kind} failed: {tail}")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


# --- rounds and the table ----------------------------------------------------------------------


@dataclass
class Row:
    key: str
    events: int = 0
    seconds: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None

    @property
    def rates(self) -> list[float]:
        return [self.events / s for s in self.seconds if s > 0]

    @property
    def verdict(self) -> str:
        if self.skipped:
            return "—"
        if self.error:
            return "ERROR"
        if self.problems:
            return "CHECK FAILED"
        if not self.rates:
            return "—"
        fast = statistics.median(self.rates) >= FLOORS[self.key]
        small = max(self.rss) < RSS_LIMIT_MB
        return "PASS" if fast and small else "FAIL"


async def _same_conversation(a: str, b: str) -> bool:
    from agentstore import Store

    async with Store.open(a, migrate=False) as one, Store.open(b, migrate=False) as two:
        first = await one.get_conversation("claude-000")
        second = await two.get_conversation("claude-000")
        return [e.to_dict() for e in first] == [e.to_dict() for e in second] and bool(first)


async def transfer_section(
    quick: bool, rounds: int, only: set[str] | None, postgres_url: str, revision: str
) -> str:
    """X1-X3 as a markdown section (the same run, medians over ``rounds``); ``revision``:
    agentstore's, as the run began."""
    from bench.backends import PostgresDatabases
    from bench.common import log, provenance

    wanted = [key for key in KEYS if only is None or key in only]
    events = QUICK_EVENTS if quick else FULL_EVENTS
    rows = {key: Row(key) for key in wanted}
    folder = Path(tempfile.mkdtemp(prefix="agentstore-bench-transfer-"))
    try:
        source = str(folder / "source.db")
        started = time.perf_counter()
        stored = await build_source(source, events)
        log(f"[transfer] source: {stored:,} events in {time.perf_counter() - started:.0f} s")
        if "X3" in rows and not postgres_url:
            rows["X3"].skipped = "no PostgreSQL URL (--postgres-url)"
        postgres = PostgresDatabases(postgres_url) if postgres_url else None
        admin = postgres.admin_dsn if postgres is not None else None
        export = str(folder / "export.jsonl")
        for index in range(rounds):
            if "X1" in rows or "X2" in rows:
                await _measure(rows.get("X1"), "export", source, export, stored, admin)
            if "X2" in rows:
                target = str(folder / f"import-{index}.db")
                if await _measure(rows["X2"], "import", export, target, stored, admin):
                    if not await _same_conversation(source, target):
                        rows["X2"].problems.append("an imported conversation differs")
                for suffix in ("", "-wal", "-shm"):
                    Path(target + suffix).unlink(missing_ok=True)
            if "X3" in rows and postgres is not None:
                async with postgres.fresh() as url:
                    await _measure(rows["X3"], "copy", source, url, stored, admin)
            log(
                f"[transfer] round {index + 1}/{rounds}: "
                + ", ".join(
                    f"{row.key} {row.rates[-1]:,.0f} events/s, {row.rss[-1]:.0f} MB"
                    for row in rows.values()
                    if row.rates
                )
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    lines = [
        f"### agentstore transfer — export, import, copy ({events:,} events)",
        "",
        provenance(
            revision,
            rounds,
            method="each operation in a process of its own (peak RSS is that process's)",
        ),
        "",
        "| workload | events | median (s) | events/s (median) | events/s per round "
        "| floor | peak RSS (MB, max) | limit | result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    notes: list[str] = []
    for row in rows.values():
        name = f"{row.key} {LABELS[row.key]}"
        if row.skipped or row.error or not row.rates:
            why = row.skipped or row.error or "not run"
            lines.append(f"| {name} | — | — | — | — | ≥ {FLOORS[row.key]:,.0f} | — | — | {why} |")
            continue
        rates = row.rates
        lines.append(
            f"| {name} | {row.events:,} | {statistics.median(row.seconds):.2f} "
            f"| {statistics.median(rates):,.0f} | {min(rates):,.0f} to {max(rates):,.0f} "
            f"| ≥ {FLOORS[row.key]:,.0f} | {max(row.rss):.0f} | < {RSS_LIMIT_MB:.0f} "
            f"| {row.verdict} |"
        )
        notes += [f"- {row.key}: {problem}" for problem in row.problems]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines)


async def settle(admin_dsn: str | None) -> None:
    """Before each timed operation: what earlier ones left to write is written (the kernel's
    dirty pages, PostgreSQL's buffers of a database just dropped), so that no operation
    pays for the one before it."""
    await asyncio.to_thread(os.sync)
    if admin_dsn:
        import asyncpg

        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute("CHECKPOINT")
        finally:
            await conn.close()


async def _measure(
    row: Row | None, kind: str, source: str, dest: str, expected: int, admin: str | None
) -> bool:
    from bench.common import log

    await settle(admin)
    try:
        found = await asyncio.to_thread(run_operation, kind, source, dest)
    except Exception as exc:
        log(f"[transfer] {kind}: {exc}")
        if row is not None:
            row.error = f"{type(exc).__name__}: {exc}"[:200]
        return False
    if row is None:
        return True
    row.events = expected
    row.seconds.append(float(found["seconds"]))
    row.rss.append(float(found["rss_mb"]))
    if int(found["events"]) != expected:
        row.problems.append(f"{kind} handled {found['events']:,} events, not {expected:,}")
    return True


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_operation(sys.argv[1:]))), flush=True)
