"""No acknowledged write is ever lost: random cancellations, killed processes, racing deciders.

Each test runs on a real SQLite file and on a real PostgreSQL server. What was stored is
checked afterwards through a connection of its own (sqlite3 or asyncpg), after the store
closed, so the store cannot vouch for itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import sys
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from agentstore import (
    AlreadyDecidedError,
    Approval,
    ConversationEvent,
    Session,
    SessionUpdate,
    Store,
)

REPO = Path(__file__).resolve().parents[1]
CLAUDE_IDS = ("c0", "c1", "c2", "c3")


async def stored_rows(db_url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows read through a connection independent of the store."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        conn = sqlite3.connect(url.database or "")
        try:
            return [tuple(row) for row in conn.execute(sql)]
        finally:
            conn.close()
    import asyncpg

    pg = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
    try:
        return [tuple(row) for row in await pg.fetch(sql)]
    finally:
        await pg.close()


async def open_connections(db_url: str) -> int:
    """The store's connections still open on the server (PostgreSQL), or our fds (SQLite)."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        return len(os.listdir("/proc/self/fd"))
    rows = await stored_rows(
        db_url,
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    return int(rows[0][0])


def event(i: int, claude_id: str, content: str) -> ConversationEvent:
    return ConversationEvent(
        session_id=f"s-{claude_id}", claude_session_id=claude_id, content=content
    )


async def test_random_cancellations_lose_no_acknowledged_write(db_url: str) -> None:
    rng = random.Random(20261129)
    connections_before = await open_connections(db_url)
    threads_before = threading.active_count()
    store = await Store.open(db_url)
    for claude_id in CLAUDE_IDS:
        await store.create_session(
            Session(
                id=f"s-{claude_id}", run_id=f"r-{claude_id}", query="q", claude_session_id=claude_id
            )
        )
    approvals = [f"a{i}" for i in range(60)]
    for approval_id in approvals:
        await store.create_approval(
            Approval(id=approval_id, session_id="s-c0", tool_name="Bash", tool_input={"i": 1})
        )

    acknowledged: dict[str, tuple[int, int]] = {}  # content -> (id, sequence)
    batches: list[list[str]] = []  # every batch issued, acknowledged or not
    decisions: dict[str, tuple[str, str]] = {}  # approval -> (status, comment) acknowledged
    titles: dict[str, list[tuple[int, bool]]] = defaultdict(list)  # session -> (i, acked)
    cancelled = 0

    for i in range(2000):
        kind = rng.choice(["append", "append", "batch", "decide", "update", "read", "read"])
        claude_id = rng.choice(CLAUDE_IDS)
        call: Any
        if kind == "append":
            single = event(i, claude_id, f"e{i}")
            call = store.add_conversation_event(single)
        elif kind == "batch":
            batch = [event(i, claude_id, f"b{i}.{k}") for k in range(rng.randint(2, 8))]
            batches.append([e.content for e in batch])
            call = store.add_conversation_events(batch)
        elif kind == "decide":
            approval_id = rng.choice(approvals)
            status = rng.choice(["approved", "denied"])
            call = store.update_approval_response(approval_id, status, f"d{i}")
        elif kind == "update":
            # Two fields in one update: they must always be stored together.
            call = store.update_session(
                f"s-{claude_id}", SessionUpdate(title=f"t{i}", summary=f"u{i}")
            )
        else:
            read = rng.randrange(4)
            if read == 0:
                call = store.get_conversation(claude_id, limit=20)
            elif read == 1:
                call = store.get_session_conversation(f"s-{claude_id}")
            elif read == 2:
                call = store.list_sessions()
            else:
                call = store.get_approval(rng.choice(approvals))
        try:
            # 0-5 ms, most of them under 1 ms: calls are cancelled at every stage.
            result = await asyncio.wait_for(call, rng.uniform(0, 0.005) * rng.random() ** 2)
        except TimeoutError:
            cancelled += 1
            if kind == "update":
                titles[f"s-{claude_id}"].append((i, False))
            continue
        except AlreadyDecidedError:
            continue
        if kind == "append":
            acknowledged[single.content] = (result.id, result.sequence)
        elif kind == "batch":
            for e in result:
                acknowledged[e.content] = (e.id, e.sequence)
        elif kind == "decide":
            decisions[result.id] = (result.status, result.comment)
        elif kind == "update":
            titles[f"s-{claude_id}"].append((i, True))
        if i % 50 == 0:
            # No stall: with nothing cancelling it, any call answers at once.
            await asyncio.wait_for(store.get_session_count(), 1.0)
            await asyncio.wait_for(
                store.add_conversation_event(event(i, claude_id, f"probe{i}")), 1.0
            )

    assert cancelled > 400  # the test did cancel calls in flight
    assert len(acknowledged) > 200
    await store.close()

    rows = await stored_rows(
        db_url, "SELECT content, id, claude_session_id, sequence FROM conversation_events"
    )
    stored = {
        content: (row_id, claude_id, sequence) for content, row_id, claude_id, sequence in rows
    }
    assert len(stored) == len(rows)  # no content twice: nothing was written twice
    for content, (row_id, sequence) in acknowledged.items():
        assert content in stored, f"acknowledged {content} is not stored"
        assert stored[content][0] == row_id and stored[content][2] == sequence
    for contents in batches:  # whole or not at all
        present = [content in stored for content in contents]
        assert all(present) or not any(present), contents
    by_claude: dict[str, list[int]] = defaultdict(list)
    for _, claude_id, sequence in stored.values():
        by_claude[claude_id].append(sequence)
    for claude_id, sequences in by_claude.items():
        assert sorted(sequences) == list(range(1, len(sequences) + 1)), claude_id

    decided = {
        row[0]: (row[1], row[2])
        for row in await stored_rows(db_url, "SELECT id, status, comment FROM approvals")
    }
    for approval_id, outcome in decisions.items():
        assert decided[approval_id] == outcome

    for session_id, title, summary in await stored_rows(
        db_url, "SELECT id, title, summary FROM sessions"
    ):
        issued = titles[session_id]
        if not issued:
            continue
        assert title[1:] == summary[1:]  # one update, never half of one
        number = int(title[1:])
        assert number in {i for i, _ in issued}
        last_acknowledged = max((i for i, acked in issued if acked), default=-1)
        if make_url(db_url).get_backend_name() == "sqlite":
            # One writer runs jobs in order: a later acknowledged update is never undone.
            assert number >= last_acknowledged

    for _ in range(50):  # the server notices closed sockets a moment later
        if await open_connections(db_url) <= connections_before:
            break
        await asyncio.sleep(0.1)
    assert await open_connections(db_url) <= connections_before
    assert threading.active_count() <= threads_before


# --- killed processes ---------------------------------------------------------------------

WRITER = r"""
import asyncio, sys
from agentstore import ConversationEvent, Store

async def main() -> None:
    url, tag = sys.argv[1], sys.argv[2]
    store = await Store.open(url)
    i = 0
    while True:
        claude_id = ("c0", "c1")[i % 2]
        if i % 3 == 0:
            batch = [
                ConversationEvent(session_id="s-" + claude_id, claude_session_id=claude_id,
                                  content=f"{tag}.{i}.{k}")
                for k in range(4)
            ]
            await store.add_conversation_events(batch)
            done = batch
        else:
            e = ConversationEvent(session_id="s-" + claude_id, claude_session_id=claude_id,
                                  content=f"{tag}.{i}")
            await store.add_conversation_event(e)
            done = [e]
        # Only once the call returned: this is what the store acknowledged.
        for e in done:
            sys.stdout.write(f"{e.content} {e.id} {e.sequence}\n")
        sys.stdout.flush()
        i += 1

asyncio.run(main())
"""


async def test_writers_killed_mid_load_lose_no_acknowledged_append(db_url: str) -> None:
    rng = random.Random(7)
    store = await Store.open(db_url)
    for claude_id in ("c0", "c1"):
        await store.create_session(
            Session(
                id=f"s-{claude_id}", run_id=f"r-{claude_id}", query="q", claude_session_id=claude_id
            )
        )
    await store.close()

    acknowledged: dict[str, tuple[int, int]] = {}

    async def start(tag: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WRITER,
            db_url,
            tag,
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )

    async def collect(proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            parts = line.decode().split()
            if len(parts) == 3:  # a line cut by the kill was never acknowledged in full
                acknowledged[parts[0]] = (int(parts[1]), int(parts[2]))

    generation = 0
    procs: list[asyncio.subprocess.Process] = []
    readers: list[asyncio.Task[None]] = []
    for _ in range(8):
        proc = await start(f"w{generation}")
        generation += 1
        procs.append(proc)
        readers.append(asyncio.create_task(collect(proc)))
    kills = 0
    try:
        for _ in range(12):
            await asyncio.sleep(rng.uniform(0.2, 0.6))
            victim = rng.randrange(len(procs))
            procs[victim].send_signal(signal.SIGKILL)  # mid-transaction, mid-fsync, anywhere
            await procs[victim].wait()
            kills += 1
            procs[victim] = await start(f"w{generation}")  # restarted, as a supervisor would
            generation += 1
            readers.append(asyncio.create_task(collect(procs[victim])))
        await asyncio.sleep(0.5)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
        await asyncio.gather(*readers, return_exceptions=True)

    assert kills == 12
    assert len(acknowledged) > 100
    rows = await stored_rows(
        db_url, "SELECT content, id, claude_session_id, sequence FROM conversation_events"
    )
    stored = {content: (row_id, sequence) for content, row_id, _, sequence in rows}
    missing = [c for c in acknowledged if c not in stored]
    assert missing == []
    assert all(stored[c] == acknowledged[c] for c in acknowledged)
    by_claude: dict[str, list[int]] = defaultdict(list)
    for _, _, claude_id, sequence in rows:
        by_claude[claude_id].append(sequence)
    for claude_id, sequences in by_claude.items():
        assert sorted(sequences) == list(range(1, len(sequences) + 1)), claude_id
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        assert await stored_rows(db_url, "PRAGMA integrity_check") == [("ok",)]
    reopened = await Store.open(db_url)
    try:
        assert await reopened.get_event_count() == len(rows)
    finally:
        await reopened.close()


# --- one decision, many deciders ----------------------------------------------------------

DECIDER = r"""
import asyncio, json, sys
from agentstore import AlreadyDecidedError, Store

async def main() -> None:
    url, tag, go = sys.argv[1], sys.argv[2], sys.argv[3]
    store = await Store.open(url)
    print("ready", flush=True)
    import os
    while not os.path.exists(go):
        await asyncio.sleep(0.002)

    async def decide(worker: int) -> str:
        status = "approved" if worker % 2 else "denied"
        try:
            await store.update_approval_response("a1", status, f"{tag}:{worker}")
        except AlreadyDecidedError:
            return "lost"
        return f"won:{status}:{tag}:{worker}"

    results = await asyncio.gather(*(decide(w) for w in range(50)))
    await store.close()
    print(json.dumps(results), flush=True)

asyncio.run(main())
"""


async def test_fifty_tasks_and_four_processes_race_one_decision(
    db_url: str, tmp_path: Path
) -> None:
    store = await Store.open(db_url)
    try:
        await store.create_session(Session(id="s1", run_id="r1", query="q"))
        await store.create_approval(
            Approval(id="a1", session_id="s1", tool_name="Bash", tool_input={})
        )
        go = tmp_path / "go"
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                DECIDER,
                db_url,
                f"p{n}",
                str(go),
                cwd=REPO,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for n in range(4)
        ]
        for proc in procs:
            assert proc.stdout is not None
            assert (await proc.stdout.readline()).strip() == b"ready"

        async def decide(worker: int) -> str:
            try:
                await store.update_approval_response("a1", "approved", f"parent:{worker}")
            except AlreadyDecidedError:
                return "lost"
            return f"won:approved:parent:{worker}"

        go.touch()
        mine = await asyncio.gather(*(decide(w) for w in range(50)))
        outputs = [await proc.communicate() for proc in procs]
        theirs = []
        for proc, (out, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err.decode()
            theirs.extend(json.loads(out.decode().strip().splitlines()[-1]))
        everything = [*mine, *theirs]
        assert len(everything) == 250
        winners = [o for o in everything if o.startswith("won:")]
        assert len(winners) == 1
        _, status, tag, worker = winners[0].split(":")
        stored = await store.get_approval("a1")
        assert (stored.status, stored.comment) == (status, f"{tag}:{worker}")
    finally:
        await store.close()
