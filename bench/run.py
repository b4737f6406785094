"""Run the benchmark: ``python bench/run.py [--rounds N] [--quick] [--postgres-url URL]``.

The method, the targets and what each raw baseline does are described in the package's
docstring (``bench/__init__.py``). Tables go to stdout, progress to stderr. ``python -m
bench.run`` from the project root works too.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder is first on sys.path: import its files as the ``bench``
# package (from the project root) instead, never as top-level modules.
if str(Path(__file__).resolve().parent) in sys.path:
    sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence

from bench import opening, reads, search, transfer, watches, writes
from bench.backends import Databases, PostgresDatabases, SQLiteDatabases
from bench.common import (
    FULL,
    LOGGED,
    QUICK,
    WATCHED_LOGGERS,
    Result,
    Sizes,
    agentstore_revision,
    log,
    render,
)

Workload = Callable[[Databases, Sizes, int], Awaitable[Result]]

WORKLOADS: dict[str, Workload] = {
    "W1": writes.w1,
    "W2": writes.w2,
    "W3": reads.w3,
    "W4": writes.w4,
    "W5": reads.w5,
    "W6": reads.w6,
    "W7": reads.w7,
    "O1": opening.o1,
    "O2": opening.o2,
}
SQLITE_ONLY = frozenset({"O1"})
# Sections of their own, per backend: search (bench/search.py) and watches (bench/watches.py).
SEARCH_KEYS = ("S1", "S2")
WATCH_KEYS = ("L1", "L2", "C1", "F1", "F2")
ALL_KEYS = (*WORKLOADS, *SEARCH_KEYS, *WATCH_KEYS, *transfer.KEYS)


async def run_backend(
    db: Databases, sizes: Sizes, rounds: int, only: set[str] | None, revision: str
) -> str:
    description = await db.describe()
    log(f"[{db.name}] {description}")
    results: list[Result] = []
    for key, workload in WORKLOADS.items():
        if (only is not None and key not in only) or (
            key in SQLITE_ONLY and db.dialect != "sqlite"
        ):
            continue
        LOGGED.take()
        try:
            result = await workload(db, sizes, rounds)
        except Exception as exc:
            log(f"[{db.name}] {key} failed: {exc!r}")
            result = Result(key, "", None, error=f"{type(exc).__name__}: {exc}"[:200])
        result.notes += LOGGED.take()
        results.append(result)
    return render(f"agentstore vs raw — {db.name}", description, revision, rounds, results)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark agentstore against raw aiosqlite/asyncpg doing the same work."
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5, quick 2)")
    parser.add_argument("--quick", action="store_true", help="2 rounds and smaller sizes")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("AGENTSTORE_TEST_POSTGRES_URL", ""),
        help="also run on PostgreSQL: an admin URL (default: $AGENTSTORE_TEST_POSTGRES_URL); "
        "a fresh database is created for each round and dropped afterwards",
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated workloads to run (of {', '.join(ALL_KEYS)}; default: all)",
    )
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite runs")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 2 if args.quick else 5
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    only = {w.strip().upper() for w in args.only.split(",") if w.strip()}
    if unknown := only - set(ALL_KEYS):
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    args.only = only or None
    return args


async def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for name in WATCHED_LOGGERS:
        logging.getLogger(name).addHandler(LOGGED)
    sizes = QUICK if args.quick else FULL
    backends: list[Databases] = []
    if not args.no_sqlite:
        backends.append(SQLiteDatabases())
    if args.postgres_url:
        backends.append(PostgresDatabases(args.postgres_url))
    # The tree as it was when agentstore was imported (it may change while the bench runs).
    revision = agentstore_revision()

    def wanted(keys: Sequence[str]) -> bool:
        return args.only is None or bool(args.only & set(keys))

    for db in backends:
        if wanted(list(WORKLOADS)):
            table = await run_backend(db, sizes, args.rounds, args.only, revision)
            print(table + "\n", flush=True)
        if wanted(SEARCH_KEYS):
            section = await search.search_section(db, args.quick, args.rounds)
            print(f"### agentstore search — {db.name}\n\n{section}\n", flush=True)
        if wanted(WATCH_KEYS):
            section = await watches.watch_section(db, args.quick)
            print(f"### agentstore watches — {db.name}\n\n{section}\n", flush=True)
    if wanted(transfer.KEYS):
        section = await transfer.transfer_section(
            args.quick, args.rounds, args.only, args.postgres_url, revision
        )
        print(section + "\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
