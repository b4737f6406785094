"""Where the seed races, agentstore does not: sequences and decisions under concurrency.

Every test runs on an SQLite file and on PostgreSQL (the ``store``/``db_url`` fixtures): many
tasks in one process, and several OS processes on the same database.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from pathlib import Path

import pytest

from agentstore import (
    AlreadyDecidedError,
    Approval,
    ConversationEvent,
    EventType,
    Session,
    Store,
)

REPO = Path(__file__).resolve().parents[1]


async def new_session(store: Store, session_id: str, claude_session_id: str) -> None:
    await store.create_session(
        Session(
            id=session_id,
            run_id=f"run-{session_id}",
            query="q",
            claude_session_id=claude_session_id,
        )
    )


def event(session_id: str, claude_session_id: str, content: str) -> ConversationEvent:
    return ConversationEvent(
        session_id=session_id,
        claude_session_id=claude_session_id,
        event_type=EventType.MESSAGE,
        content=content,
    )


async def assert_gap_free(store: Store, claude_session_id: str, expected: int) -> None:
    stored = await store.get_conversation(claude_session_id)
    assert [e.sequence for e in stored] == list(range(1, expected + 1))
    assert len({e.id for e in stored}) == expected
    assert len({e.content for e in stored}) == expected


# --- deciding one approval ----------------------------------------------------------------


async def test_concurrent_decisions_exactly_one_wins(store: Store) -> None:
    await new_session(store, "s1", "c1")
    for round_ in range(3):
        approval_id = f"a{round_}"
        await store.create_approval(
            Approval(id=approval_id, run_id="r", session_id="s1", tool_name="Bash", tool_input={})
        )

        async def decide(i: int, approval_id: str = approval_id) -> Approval:
            status = "approved" if i % 2 == 0 else "denied"
            return await store.update_approval_response(approval_id, status, f"task {i}")

        results = await asyncio.gather(*(decide(i) for i in range(20)), return_exceptions=True)

        winners = [r for r in results if isinstance(r, Approval)]
        losers = [r for r in results if isinstance(r, AlreadyDecidedError)]
        unexpected = [r for r in results if not isinstance(r, Approval | AlreadyDecidedError)]
        assert unexpected == []
        assert len(winners) == 1
        assert len(losers) == 19
        [winner] = winners
        assert winner.status in ("approved", "denied")
        assert all(err.status == winner.status for err in losers)
        assert all(err.id == approval_id for err in losers)

        stored = await store.get_approval(approval_id)
        assert stored.status == winner.status
        assert stored.comment == winner.comment
        assert stored.responded_at == winner.responded_at
        # The winner's comment says which task won; its status matches that task's choice.
        index = int(winner.comment.removeprefix("task "))
        assert winner.status == ("approved" if index % 2 == 0 else "denied")
    assert await store.get_pending_approvals("s1") == []


# --- appending to one Claude session from many tasks ------------------------------------------


async def test_concurrent_appends_get_unique_gap_free_sequences(store: Store) -> None:
    await new_session(store, "s1", "c1")
    tasks, per_task = 25, 50

    async def append(worker: int) -> list[tuple[int | None, int]]:
        out: list[tuple[int | None, int]] = []
        for i in range(per_task):
            e = await store.add_conversation_event(event("s1", "c1", f"{worker}:{i}"))
            out.append((e.id, e.sequence))
        return out

    results = await asyncio.gather(*(append(w) for w in range(tasks)))

    total = tasks * per_task
    all_sequences = sorted(seq for worker in results for _, seq in worker)
    assert all_sequences == list(range(1, total + 1))
    # One task's appends are sequential, so its numbers only go up.
    for worker in results:
        seqs = [seq for _, seq in worker]
        assert seqs == sorted(seqs)
    await assert_gap_free(store, "c1", total)
    by_id = {e.id: e for e in await store.get_conversation("c1")}
    for worker in results:
        for event_id, seq in worker:
            assert by_id[event_id].sequence == seq
    assert await store.get_event_count() == total


async def test_concurrent_batches_and_single_appends(store: Store) -> None:
    await new_session(store, "s1", "c1")
    await new_session(store, "s2", "c2")

    async def singles(worker: int) -> list[int]:
        return [
            (await store.add_conversation_event(event("s1", "c1", f"single {worker}:{i}"))).sequence
            for i in range(20)
        ]

    async def batches(worker: int) -> list[list[int]]:
        out: list[list[int]] = []
        for b in range(5):
            batch = [event("s1", "c1", f"batch {worker}:{b}:{i}") for i in range(4)]
            # A second Claude session in the same batch.
            batch.insert(2, event("s2", "c2", f"other {worker}:{b}"))
            added = await store.add_conversation_events(batch)
            out.append([e.sequence for e in added if e.claude_session_id == "c1"])
        return out

    single_results, batch_results = await asyncio.gather(
        asyncio.gather(*(singles(w) for w in range(10))),
        asyncio.gather(*(batches(w) for w in range(10))),
    )

    # Every batch got contiguous numbers in its own order.
    for worker in batch_results:
        for seqs in worker:
            assert seqs == list(range(seqs[0], seqs[0] + 4))
    every = [s for w in single_results for s in w] + [
        s for w in batch_results for seqs in w for s in seqs
    ]
    assert sorted(every) == list(range(1, 10 * 20 + 10 * 5 * 4 + 1))
    await assert_gap_free(store, "c1", 400)
    await assert_gap_free(store, "c2", 50)


async def test_concurrent_appends_to_many_claude_sessions(store: Store) -> None:
    claude_ids = [f"c{i}" for i in range(5)]
    for claude_id in claude_ids:
        await new_session(store, f"s-{claude_id}", claude_id)

    async def append(worker: int) -> None:
        for i in range(20):
            claude_id = claude_ids[(worker + i) % len(claude_ids)]
            await store.add_conversation_event(event(f"s-{claude_id}", claude_id, f"{worker}:{i}"))

    await asyncio.gather(*(append(w) for w in range(20)))
    for claude_id in claude_ids:
        await assert_gap_free(store, claude_id, 80)


# --- several OS processes ---------------------------------------------------------------------

CHILD = r"""
import asyncio, json, os, sys

from agentstore import AlreadyDecidedError, ConversationEvent, Store


async def main() -> None:
    url, mode, go_file, tag = sys.argv[1:5]
    tasks, per_task = int(sys.argv[5]), int(sys.argv[6])
    store = await Store.open(url)
    try:
        print("ready", flush=True)
        while not os.path.exists(go_file):
            await asyncio.sleep(0.005)

        async def append(worker: int) -> list[int]:
            out = []
            for i in range(per_task):
                e = ConversationEvent(
                    session_id="s1", claude_session_id="c1", event_type="message",
                    content=f"{tag}:{worker}:{i}",
                )
                await store.add_conversation_event(e)
                out.append(e.sequence)
            return out

        async def append_batches(worker: int) -> list[int]:
            out = []
            for b in range(per_task // 5):
                batch = [
                    ConversationEvent(
                        session_id="s1", claude_session_id="c1", event_type="message",
                        content=f"{tag}:{worker}:{b}:{i}",
                    )
                    for i in range(5)
                ]
                await store.add_conversation_events(batch)
                seqs = [e.sequence for e in batch]
                assert seqs == list(range(seqs[0], seqs[0] + 5)), seqs
                out.extend(seqs)
            return out

        async def decide(worker: int) -> str:
            status = "approved" if worker % 2 else "denied"
            try:
                await store.update_approval_response("a1", status, f"{tag}:{worker}")
            except AlreadyDecidedError:
                return "lost"
            return "won:" + status

        work = {"append": append, "batch": append_batches, "decide": decide}[mode]
        results = await asyncio.gather(*(work(w) for w in range(tasks)))
        print(json.dumps(results), flush=True)
    finally:
        await store.close()


asyncio.run(main())
"""


async def run_children(
    db_url: str, tmp_path: Path, modes: list[str], tasks: int, per_task: int
) -> list[list[object]]:
    """Start one process per mode, let them all go at once, return what each printed."""
    go_file = tmp_path / f"go-{'-'.join(modes)}"
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            db_url,
            mode,
            str(go_file),
            f"p{n}",
            str(tasks),
            str(per_task),
            cwd=REPO,
            env=os.environ.copy(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for n, mode in enumerate(modes)
    ]
    try:
        async with asyncio.timeout(300):  # a safety net against a hang, not a measurement
            for proc in procs:
                assert proc.stdout is not None
                line = await proc.stdout.readline()
                if line.strip() != b"ready":
                    _, err = await proc.communicate()
                    raise AssertionError(f"child failed to start: {line!r} {err.decode()}")
            go_file.touch()
            outputs = [await proc.communicate() for proc in procs]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    results: list[list[object]] = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    return results


async def test_processes_appending_to_one_claude_session(db_url: str, tmp_path: Path) -> None:
    store = await Store.open(db_url)
    try:
        await new_session(store, "s1", "c1")
        await store.add_conversation_event(event("s1", "c1", "parent:first"))
        modes = ["append", "append", "batch"]
        tasks, per_task = 4, 25
        results = await run_children(db_url, tmp_path, modes, tasks, per_task)

        total = 1 + len(modes) * tasks * per_task
        numbers: list[int] = []
        for per_process in results:
            for worker in per_process:
                assert isinstance(worker, list)
                seqs = [int(s) for s in worker]
                assert seqs == sorted(seqs)
                numbers.extend(seqs)
        assert Counter(numbers).most_common(1)[0][1] == 1
        assert sorted(numbers) == list(range(2, total + 1))

        await assert_gap_free(store, "c1", total)
        stored = await store.get_conversation("c1")
        assert stored[0].content == "parent:first"
        # Each child's own events carry the sequence that child was told.
        told = {
            f"p{n}": sorted(int(s) for worker in per_process for s in worker)  # type: ignore[attr-defined]
            for n, per_process in enumerate(results)
        }
        for tag, seqs in told.items():
            assert sorted(e.sequence for e in stored if e.content.startswith(f"{tag}:")) == seqs
        # The store in this process keeps numbering after the children.
        last = await store.add_conversation_event(event("s1", "c1", "parent:last"))
        assert last.sequence == total + 1
    finally:
        await store.close()


async def test_processes_deciding_one_approval(db_url: str, tmp_path: Path) -> None:
    store = await Store.open(db_url)
    try:
        await new_session(store, "s1", "c1")
        await store.create_approval(
            Approval(id="a1", run_id="r", session_id="s1", tool_name="Bash", tool_input={})
        )
        results = await run_children(db_url, tmp_path, ["decide", "decide", "decide"], 6, 0)
        outcomes = [str(o) for per_process in results for o in per_process]
        assert len(outcomes) == 18
        winners = [o for o in outcomes if o.startswith("won:")]
        assert len(winners) == 1
        assert outcomes.count("lost") == 17
        stored = await store.get_approval("a1")
        assert stored.status == winners[0].removeprefix("won:")
        assert stored.responded_at is not None
    finally:
        await store.close()


async def test_cancelled_calls_never_undo_a_later_acknowledged_append(tmp_path: Path) -> None:
    # Another process holds the write lock; calls time out (their tasks are cancelled) while
    # their statements wait on the driver's thread. Once the lock is released, an append that
    # the store acknowledges must be in the file, with the id and sequence it was given.
    import sqlite3

    path = tmp_path / "agent.db"
    store = await Store.open(path)
    try:
        await store.create_session(Session(id="s1", run_id="r1", query="q"))
        first = await store.add_conversation_event(
            ConversationEvent(session_id="s1", claude_session_id="c1", content="e1")
        )
        other = sqlite3.connect(path, isolation_level=None, timeout=0.5)
        other.execute("BEGIN IMMEDIATE")
        for call in (
            store.add_conversation_event(
                ConversationEvent(session_id="s1", claude_session_id="c1", content="e2")
            ),
            store.add_conversation_events(
                [ConversationEvent(session_id="s1", claude_session_id="c1", content="b")]
            ),
        ):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(call, 0.2)
        # Reads go on meanwhile (WAL), on a connection that has no interrupted work queued:
        # not stuck behind the other process's lock for the whole busy_timeout (30 s).
        read = await asyncio.wait_for(store.get_conversation("c1"), 5)
        assert [e.content for e in read] == ["e1"]
        other.execute("COMMIT")
        acknowledged = await store.add_conversation_event(
            ConversationEvent(session_id="s1", claude_session_id="c1", content="e3")
        )
        await store.close()
        stored = other.execute(
            "SELECT id, sequence, content FROM conversation_events ORDER BY sequence"
        ).fetchall()
        other.close()
        assert (acknowledged.id, acknowledged.sequence, "e3") in stored
        assert (first.id, 1, "e1") in stored
        sequences = [row[1] for row in stored]
        assert sequences == list(range(1, len(sequences) + 1))  # unique and gap-free
    finally:
        await store.close()


async def test_reads_go_on_while_writes_wait_for_another_process_and_close_ends_all(
    tmp_path: Path,
) -> None:
    # Appends are stuck behind another process's write lock (and their callers give up);
    # reads run on their own connections meanwhile, at once, not after the busy timeout.
    # Once the lock is released, close() finishes the queued writes and leaves no thread.
    import sqlite3
    import threading

    path = tmp_path / "agent.db"
    threads_before = threading.active_count()
    store = await Store.open(path)
    await store.create_session(Session(id="s1", run_id="r1", query="q", claude_session_id="c1"))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        stuck = [
            asyncio.create_task(
                store.add_conversation_event(
                    ConversationEvent(session_id="s1", claude_session_id="c1", content="x")
                )
            )
            for _ in range(2)
        ]
        await asyncio.sleep(0.1)
        assert not any(task.done() for task in stuck)
        assert await asyncio.wait_for(store.get_session_conversation("s1"), 5) == []
        for task in stuck:
            task.cancel()
    finally:
        other.execute("ROLLBACK")
        other.close()
        await store.close()
    for _ in range(50):
        if threading.active_count() <= threads_before:
            break
        await asyncio.sleep(0.1)
    assert threading.active_count() <= threads_before
