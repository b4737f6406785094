"""Search: S1 building the index for an existing corpus, S2 two-word queries over it.

The corpus is realistic agent traffic: 2,000 sessions of 100 events (200,000 events; a
tenth of that with ``--quick``), each ~400 characters of prose built from a programming
vocabulary with a Zipf-like word frequency, a third of them tool calls with JSON inputs and
tool results. It is written through ``add_conversation_events`` into a database that is then
taken back to the revision before the index (``alembic downgrade``), so that S1 times what
an upgrade or an adoption does: ``Store.open`` building the index for every stored row.

S2 runs 50 two-word queries (two words drawn from the vocabulary's frequent-to-rare middle,
all of which occur in the corpus) with ``limit=20`` and reports the median and the slowest
query. Targets: S1 <= 30 s on SQLite; S2 median <= 20 ms on both backends.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from agentstore import ConversationEvent, EventType, Session, Store
from agentstore.migrations import alembic_config
from bench.backends import Databases
from bench.common import log

VOCABULARY = (
    "the a to of and in is for that it with on this be as are was by not or from at "
    "test file error migration database session query function import module class return "
    "value type list dict string config server client request response timeout retry "
    "commit branch merge rebase deploy build install package version release docker "
    "container kubernetes cluster node pod service ingress volume secret token auth "
    "login user admin permission role schema table column index key constraint foreign "
    "primary unique lock transaction rollback cancel async await task thread queue worker "
    "event stream watch notify listen cache memory disk cpu latency throughput benchmark "
    "profile trace log debug warning exception traceback assert fixture mock patch flaky "
    "sync fetch parse render template component route handler middleware proxy gateway "
    "upgrade downgrade alembic sqlalchemy postgres sqlite asyncpg aiosqlite pytest ruff "
    "mypy typing annotation generic protocol dataclass enum json yaml toml csv parquet "
    "arrow pandas numpy vector embedding search rank snippet phrase prefix token unicode "
    "accent école naïve café résumé größe straße ångström"
).split()

TARGET_BUILD_SECONDS = 30.0
TARGET_QUERY_MS = 20.0


def _words(rng: random.Random, count: int) -> str:
    # Zipf-like: the k-th word about 1/k as frequent.
    weights = [1 / (rank + 1) for rank in range(len(VOCABULARY))]
    return " ".join(rng.choices(VOCABULARY, weights, k=count))


def corpus_events(rng: random.Random, session: Session, count: int) -> list[ConversationEvent]:
    events = []
    base = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(500_000))
    for i in range(count):
        kind = i % 3
        at = base + timedelta(seconds=i)
        common: dict[str, Any] = {
            "session_id": session.id,
            "claude_session_id": session.claude_session_id,
            "created_at": at,
        }
        if kind == 0:
            events.append(
                ConversationEvent(
                    **common,
                    event_type=EventType.MESSAGE,
                    role="assistant",
                    content=_words(rng, 70),
                )
            )
        elif kind == 1:
            command = _words(rng, 6)
            events.append(
                ConversationEvent(
                    **common,
                    event_type=EventType.TOOL_CALL,
                    tool_id=f"t{i}",
                    tool_name="Bash",
                    tool_input_json=f'{{"command":"{command}","description":"{_words(rng, 20)}"}}',
                )
            )
        else:
            events.append(
                ConversationEvent(
                    **common,
                    event_type=EventType.TOOL_RESULT,
                    role="user",
                    tool_result_for_id=f"t{i - 1}",
                    tool_result_content=_words(rng, 60),
                )
            )
    return events


async def build_corpus(url: str, sessions: int, per_session: int) -> int:
    rng = random.Random(13)
    async with Store.open(url) as store:
        for n in range(sessions):
            session = Session(
                id=f"s{n}",
                run_id=f"r{n}",
                claude_session_id=f"c{n}",
                query=_words(rng, 12),
                title=_words(rng, 5),
                summary=_words(rng, 15),
            )
            await store.create_session(session)
            await store.add_conversation_events(corpus_events(rng, session, per_session))
        return await store.get_event_count()


def _downgrade_below_search(url: str) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["agentstore_url"] = url
    command.downgrade(config, "0004_pg_change_notifications")


async def search_section(db: Databases, quick: bool, rounds: int) -> str:
    """S1 (index build) and S2 (queries) on one corpus per round, as a markdown section."""
    sessions, per_session = (200, 100) if quick else (2_000, 100)
    rng = random.Random(29)
    middle = VOCABULARY[20:180]
    pairs = [rng.sample(middle, 2) for _ in range(50)]
    builds: list[float] = []
    medians: list[float] = []
    slowest: list[float] = []
    hits: list[int] = []
    total = 0
    for _ in range(rounds):
        async with db.fresh() as url:
            total = await build_corpus(url, sessions, per_session)
            await asyncio.to_thread(_downgrade_below_search, url)
            started = time.perf_counter()
            async with Store.open(url) as store:  # the upgrade builds the index
                builds.append(time.perf_counter() - started)
                times = []
                found = 0
                for a, b in pairs:
                    begin = time.perf_counter()
                    found += len(await store.search(f"{a} {b}", limit=20))
                    times.append((time.perf_counter() - begin) * 1000)
            medians.append(statistics.median(times))
            slowest.append(max(times))
            hits.append(found)
            log(
                f"[{db.name}] S1 {builds[-1]:.1f} s for {total:,} events; "
                f"S2 median {medians[-1]:.1f} ms"
            )
    build = statistics.median(builds)
    query = statistics.median(medians)
    build_target = TARGET_BUILD_SECONDS if db.dialect == "sqlite" else None
    rows = [
        "| search | measured | target | result |",
        "|---|---:|---:|:---:|",
        f"| S1 build the index for {total:,} events during the upgrade (s) | {build:.1f} "
        f"| {f'≤ {build_target:.0f}' if build_target else '—'} "
        f"| {('PASS' if build <= build_target else 'FAIL') if build_target else '—'} |",
        f"| S2 median of 50 two-word queries, limit 20 (ms) | {query:.1f} "
        f"| ≤ {TARGET_QUERY_MS:.0f} | {'PASS' if query <= TARGET_QUERY_MS else 'FAIL'} |",
        "",
        f"S2: slowest query {statistics.median(slowest):.1f} ms (median over rounds); "
        f"{statistics.median(hits):,.0f} hits for the 50 queries; {rounds} round(s).",
    ]
    return "\n".join(rows)
