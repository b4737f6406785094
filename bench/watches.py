"""Watches: how soon a watcher sees a commit, what idle watches cost, many followers.

* L1 — another process appends an event every 20 ms (60 of them); it writes, right after
  each append returned (its commit acknowledged), the wall-clock time; the watcher records
  when ``__anext__`` handed the event over. Median of the differences. Targets: <= 20 ms
  on SQLite, <= 10 ms on PostgreSQL. A steady stream: SQLite's watches check every 10 ms
  then; the first commit after a quiet second waits for the idle check (every 25 ms).
* L2 — the same within one process (the append's return to the watcher's hand-over).
  Target <= 2 ms.
* C1 — 1,000 watches open and idle for 5 s: the process's CPU time over those seconds, in
  percent of one core, less the same window with no watch open. Target < 1 %.
* F1 — one task appends events one per call (W1's work) while 100 watchers in the same
  process follow the conversation; every watcher must receive every event in order; the
  appends' time is compared with the same appends with no watcher. The writer shares its
  event loop with the 100 followers, whose work per event (a task woken, an event handed
  over, ~10 µs each) is billed to it.
* F2 — the same with the 100 watchers in a process of their own (a UI, another daemon): what
  following costs the writer itself. The writer's W1 must stay within its 1.3 target: its
  ratio here times W1's is the writer's W1 while followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import time
from pathlib import Path

from agentstore import ConversationEvent, Session, Store
from bench.backends import Databases
from bench.common import log

CHILD = r"""
import asyncio, sys, time
from agentstore import ConversationEvent, Store

async def main() -> None:
    async with Store.open(sys.argv[1]) as store:
        print("ready", flush=True)
        await asyncio.sleep(0.5)
        for i in range(int(sys.argv[2])):
            await store.add_conversation_event(ConversationEvent(
                session_id="s1", claude_session_id="c1", content=f"e{i}"))
            print(f"{i} {time.time()}", flush=True)
            await asyncio.sleep(0.02)

asyncio.run(main())
"""

# F2's followers: 100 watches in a process of their own, each checking it got every event.
FOLLOWERS_CHILD = r"""
import asyncio, sys
from agentstore import Store

async def main() -> None:
    url, claude, followers, events = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    async with Store.open(url) as store:
        got = [[] for _ in range(followers)]

        async def follow(n: int) -> None:
            async for event in store.watch_conversation(claude):
                got[n].append(event.sequence)
                if len(got[n]) == events:
                    return

        tasks = [asyncio.create_task(follow(n)) for n in range(followers)]
        await asyncio.sleep(0.2)
        print("ready", flush=True)
        await asyncio.wait_for(asyncio.gather(*tasks), 600)
        expected = list(range(1, events + 1))
        print("complete" if all(g == expected for g in got) else "INCOMPLETE", flush=True)

asyncio.run(main())
"""

TARGETS = {
    "sqlite": {"L1": 20.0, "L2": 2.0, "C1": 1.0},
    "postgresql": {"L1": 10.0, "L2": 2.0, "C1": 1.0},
}
ROOT = Path(__file__).resolve().parents[1]


async def _latency_other_process(url: str, count: int) -> float:
    async with Store.open(url) as store:
        received: dict[str, float] = {}

        async def follow() -> None:
            async for event in store.watch_conversation("c1"):
                received[event.content] = time.time()
                if len(received) == count:
                    return

        watcher = asyncio.create_task(follow())
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            url,
            str(count),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None
        assert (await child.stdout.readline()).strip() == b"ready"
        committed: dict[str, float] = {}
        async for line in child.stdout:
            index, at = line.decode().split()
            committed[f"e{index}"] = float(at)
        await child.wait()
        await asyncio.wait_for(watcher, 30)
    return statistics.median((received[k] - committed[k]) * 1000 for k in committed)


async def _latency_same_process(store: Store, count: int) -> float:
    received: dict[str, float] = {}
    latest = await store.get_conversation("c1", limit=1)
    after = latest[-1].sequence if latest else 0

    async def watch() -> None:
        async for event in store.watch_conversation("c1", after_sequence=after):
            received[event.content] = time.perf_counter()
            if len(received) == count:
                return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.05)
    returned: dict[str, float] = {}
    for i in range(count):
        content = f"same{i}"
        await store.add_conversation_event(
            ConversationEvent(session_id="s1", claude_session_id="c1", content=content)
        )
        returned[content] = time.perf_counter()
        await asyncio.sleep(0.005)
    await asyncio.wait_for(watcher, 30)
    return statistics.median(max(0.0, received[k] - returned[k]) * 1000 for k in returned)


async def _idle_cpu(store: Store, watches: int, seconds: float) -> float:
    async def cpu_over(window: float) -> float:
        start_cpu, start = time.process_time(), time.perf_counter()
        await asyncio.sleep(window)
        return (time.process_time() - start_cpu) / (time.perf_counter() - start) * 100

    base = await cpu_over(seconds)
    tasks = [asyncio.create_task(_drain(store.watch_conversation("idle"))) for _ in range(watches)]
    await asyncio.sleep(1.5)  # past IDLE_AFTER_SECONDS: idle SQLite watches check less often
    busy = await cpu_over(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return max(0.0, busy - base)


async def _drain(watch: object) -> None:
    async for _ in watch:  # type: ignore[attr-defined]
        pass


async def _followers(store: Store, followers: int, events: int) -> tuple[float, float, bool]:
    alone = await _append_all(store, "c2", "s2", events)
    got: list[list[int]] = [[] for _ in range(followers)]
    after = events

    async def follow(n: int) -> None:
        async for event in store.watch_conversation("c2", after_sequence=after):
            got[n].append(event.sequence)
            if len(got[n]) == events:
                return

    tasks = [asyncio.create_task(follow(n)) for n in range(followers)]
    await asyncio.sleep(0.1)
    followed = await _append_all(store, "c2", "s2", events)
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    expected = list(range(events + 1, 2 * events + 1))
    return alone, followed, all(sequences == expected for sequences in got)


async def _append_all(store: Store, claude: str, session: str, events: int) -> float:
    started = time.perf_counter()
    for i in range(events):
        await store.add_conversation_event(
            ConversationEvent(session_id=session, claude_session_id=claude, content=f"{claude}{i}")
        )
    return time.perf_counter() - started


async def _followers_elsewhere(
    url: str, store: Store, followers: int, events: int
) -> tuple[float, float, bool]:
    """F2: the writer's appends, alone and while another process's watches follow them."""
    alone = await _append_all(store, "c4", "s4", events)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FOLLOWERS_CHILD,
        url,
        "c3",
        str(followers),
        str(events),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert (await child.stdout.readline()).strip() == b"ready"
        followed = await _append_all(store, "c3", "s3", events)
        verdict = (await asyncio.wait_for(child.stdout.readline(), 600)).strip()
    finally:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
        await child.wait()
    return alone, followed, verdict == b"complete"


async def watch_section(db: Databases, quick: bool) -> str:
    """L1, L2, C1, F1 and F2 as a markdown section."""
    count = 20 if quick else 60
    events = 1_000 if quick else 10_000
    async with db.fresh() as url:
        async with Store.open(url) as store:
            for session_id, claude_id in (("s1", "c1"), ("s2", "c2"), ("s3", "c3"), ("s4", "c4")):
                await store.create_session(
                    Session(id=session_id, run_id=f"r{session_id}", claude_session_id=claude_id)
                )
        l1 = await _latency_other_process(url, count)
        async with Store.open(url) as store:
            l2 = await _latency_same_process(store, count)
            c1 = await _idle_cpu(store, 1_000, 2.0 if quick else 5.0)
            alone, followed, complete = await _followers(store, 100, events)
            alone2, followed2, complete2 = await _followers_elsewhere(url, store, 100, events)
    log(
        f"[{db.name}] L1 {l1:.1f} ms, L2 {l2:.2f} ms, C1 {c1:.2f} %, F1 {followed / alone:.2f}, "
        f"F2 {followed2 / alone2:.2f}"
    )
    goals = TARGETS[db.dialect]

    def verdict(value: float, goal: float) -> str:
        return "PASS" if value <= goal else "FAIL"

    rows = [
        "| watches | measured | target | result |",
        "|---|---:|---:|:---:|",
        f"| L1 another process's commit to the watcher's `__anext__` (ms, median of {count}) "
        f"| {l1:.1f} | ≤ {goals['L1']:.0f} | {verdict(l1, goals['L1'])} |",
        f"| L2 same process (ms, median of {count}) | {l2:.2f} | ≤ {goals['L2']:.0f} "
        f"| {verdict(l2, goals['L2'])} |",
        f"| C1 1,000 idle watches (% of one core) | {c1:.2f} | < {goals['C1']:.0f} "
        f"| {verdict(c1, goals['C1'])} |",
        f"| F1 {events:,} single appends while 100 watchers follow, over the same appends "
        f"unwatched | {followed / alone:.2f} ({followed * 1000 / events:.3f} ms an append) "
        f"| — | {'every watcher got all, in order' if complete else 'CHECK FAILED'} |",
        f"| F2 the same with the 100 watchers in another process | {followed2 / alone2:.2f} "
        f"({followed2 * 1000 / events:.3f} ms an append) "
        f"| — | {'every watcher got all, in order' if complete2 else 'CHECK FAILED'} |",
    ]
    return "\n".join(rows)
