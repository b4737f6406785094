"""What every workload shares: sizes, targets, timing, results, and the markdown tables."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# --- sizes and targets -----------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    w1_events: int
    w2_events: int
    w2_batch: int
    w3_events: int
    w4_tasks: int
    w4_per_task: int
    w5_sessions: int
    w6_chain: int
    w6_events: int
    w7_sessions: int
    reads: int  # timed reads per side per round (W3 W5 W6 W7); the round counts their median
    opens: int  # timed opens per side per round (O1 O2); the round counts their median


FULL = Sizes(1_000, 20_000, 500, 10_000, 20, 100, 5_000, 5, 2_000, 10_000, 5, 200)
QUICK = Sizes(200, 4_000, 500, 2_000, 5, 40, 1_000, 3, 500, 2_000, 3, 40)

TARGETS: dict[str, dict[str, float]] = {
    # agentstore / raw, of the medians; W4: agentstore's wall time for the concurrent appends
    # over raw's for the same appends done one after another.
    "SQLite": {"W1": 1.3, "W2": 1.5, "W3": 1.3, "W4": 0.33, "W5": 1.3},
    "PostgreSQL": {"W1": 1.3, "W2": 1.5, "W3": 1.6, "W4": 0.5, "W5": 1.5},
}


def target(backend: str, key: str) -> float | None:
    """The project's target for a workload on a backend (None: informational)."""
    return TARGETS.get(backend, {}).get(key)


# --- results ---------------------------------------------------------------------------------


@dataclass
class Concurrency:
    """W4's checks and rates, one entry per round."""

    label: str
    appends: int
    errors: Counter[str] = field(default_factory=Counter)
    duplicates: list[int] = field(default_factory=list)
    exact: list[bool] = field(default_factory=list)
    store_rate: list[float] = field(default_factory=list)
    raw_rate: list[float] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (
            bool(self.exact)
            and all(self.exact)
            and not self.errors
            and max(self.duplicates, default=0) == 0
        )


@dataclass
class Result:
    key: str
    label: str
    target: float | None
    raw: list[float] = field(default_factory=list)  # per round (ms)
    store: list[float] = field(default_factory=list)  # per round (ms)
    problems: list[str] = field(default_factory=list)  # failed checks: the row cannot pass
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    concurrency: Concurrency | None = None

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def problem(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)

    @property
    def ratio(self) -> float | None:
        if not self.raw or not self.store:
            return None
        return statistics.median(self.store) / statistics.median(self.raw)

    def round_ratios(self) -> list[float]:
        return [s / r for r, s in zip(self.raw, self.store, strict=False) if r > 0]

    @property
    def verdict(self) -> str:
        if self.error is not None:
            return "ERROR"
        if self.problems or (self.concurrency is not None and not self.concurrency.passed):
            return "CHECK FAILED"
        ratio = self.ratio
        if self.target is None or ratio is None:
            return "—"
        return "PASS" if ratio <= self.target else "FAIL"


def check_sequences(result: Result, side: str, got: Sequence[int], expected: int) -> None:
    """A problem unless ``got`` is exactly 1..expected, in order."""
    if list(got) != list(range(1, expected + 1)):
        result.problem(f"{side}: {len(got)} sequences, not exactly 1..{expected} in order")


def progress(backend: str, result: Result, index: int, rounds: int, extra: str = "") -> None:
    raw, store = result.raw[-1], result.store[-1]
    log(
        f"[{backend}] {result.key} round {index + 1}/{rounds}: raw {number(raw)} ms, "
        f"agentstore {number(store)} ms ({store / raw:.2f}x){extra}"
    )


# --- timing ----------------------------------------------------------------------------------


async def measure(work: Callable[[], Awaitable[T]]) -> tuple[float, T]:
    """Milliseconds ``work`` took, from the call until it returned, and what it returned.

    A full collection runs first, so earlier garbage is not billed. The result is handed
    back after the clock has stopped: freeing what a call returned is the caller's
    business, whenever it drops it, and is left out on both sides alike. For that, the
    event loop gets one turn first: until the calling task yields, the callback that woke
    it holds the future of its last await, and with it the last call's result (dropped
    by the caller, freed only when the next measured call first yields, in its time).
    """
    await asyncio.sleep(0)
    gc.collect()
    start = time.perf_counter()
    result = await work()
    elapsed = (time.perf_counter() - start) * 1000
    return elapsed, result


async def timed(work: Callable[[], Awaitable[object]]) -> float:
    """:func:`measure`, for work whose result is only dropped."""
    elapsed, result = await measure(work)
    del result
    return elapsed


# --- logging ---------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class LoggedErrors(logging.Handler):
    """Counts what is logged at ERROR (a pool failing to close a connection, a task's
    exception never retrieved…): such errors never reach the caller, so the workload
    would look clean without this."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        text = f"{record.name}: " + record.getMessage().split(" <", 1)[0][:160]
        if exc is not None:
            text += f": {type(exc).__name__}"
        self.seen[text] += 1
        log(f"  (logged: {text})")

    def take(self) -> list[str]:
        """Notes for what was logged since the last call, and forget it."""
        notes = [f"logged {n} x '{text}'" for text, n in self.seen.most_common()]
        self.seen.clear()
        return notes


LOGGED = LoggedErrors()
WATCHED_LOGGERS = ("sqlalchemy", "agentstore", "asyncio")


# --- machine and versions --------------------------------------------------------------------


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def agentstore_revision() -> str:
    """agentstore's version, with the git commit of the tree it was run from when known."""
    version = package_version("agentstore")
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version} (git {out})" if out else version


def machine() -> str:
    return (
        f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()} "
        f"({platform.python_implementation()})"
    )


def filesystem_of(path: str) -> str:
    """The type of the filesystem ``path`` is on (from /proc/mounts), or 'unknown'."""
    try:
        with open("/proc/mounts", encoding="utf-8") as fh:
            mounts = [line.split() for line in fh]
    except OSError:
        return "unknown"
    real = os.path.realpath(path)
    best, kind = "", "unknown"
    for fields in mounts:
        if len(fields) < 3:
            continue
        point = fields[1]
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


# --- tables ----------------------------------------------------------------------------------


def number(value: float) -> str:
    return f"{value:,.2f}" if value < 10 else f"{value:,.1f}"


def median_text(values: Sequence[float]) -> str:
    return number(statistics.median(values)) if values else "—"


def provenance(revision: str, rounds: int, *, versions: str = "", method: str = "") -> str:
    """The line under a table's title: the machine, the versions, agentstore's revision,
    the rounds, how it was measured, and the load average when the table was made."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"Machine: {machine()}; "
        + (f"{versions}; " if versions else "")
        + f"agentstore {revision}; {rounds} round{'s' if rounds != 1 else ''}, medians; "
        + (f"{method}; " if method else "")
        + f"load average {load:.2f} when the table was made."
    )


def render(
    title: str, description: str, revision: str, rounds: int, results: Sequence[Result]
) -> str:
    lines = [
        f"### {title}",
        "",
        provenance(revision, rounds, versions=description),
        "",
        "Target: the ratio agentstore/raw of the medians is at most the target (W4: "
        "agentstore's wall time for the concurrent appends over raw's for the same appends "
        "made one after another). A row whose results differ from raw's or from what the "
        "fixture implies is CHECK FAILED, however fast.",
        "",
        "| workload | raw (ms) | agentstore (ms) | ratio | ratio per round | target | result |",
        "|---|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in results:
        name = f"{r.key} {r.label}"
        if r.error is not None:
            lines.append(f"| {name} | — | — | — | — | — | ERROR: {r.error} |")
            continue
        ratio = r.ratio
        per_round = r.round_ratios()
        spread = f"{min(per_round):.2f} to {max(per_round):.2f}" if per_round else "—"
        goal = f"≤ {r.target:.2f}" if r.target is not None else "—"
        ratio_text = f"{ratio:.2f}" if ratio is not None else "—"
        lines.append(
            f"| {name} | {median_text(r.raw)} | {median_text(r.store)} | {ratio_text} "
            f"| {spread} | {goal} | {r.verdict} |"
        )
    for r in results:
        c = r.concurrency
        if c is None or r.error is not None:
            continue
        errors = sum(c.errors.values())
        lines += [
            "",
            "| W4 checks | errors | duplicate sequences | exactly 1..N | agentstore appends/s "
            "| raw serial appends/s | result |",
            "|---|---:|---:|:---:|---:|---:|:---:|",
            f"| {c.label} (N = {c.appends:,}) | {errors} in {len(c.exact)} rounds "
            f"| max {max(c.duplicates, default=0)} | {'yes' if c.exact and all(c.exact) else 'no'} "
            f"| {statistics.median(c.store_rate):,.0f} | {statistics.median(c.raw_rate):,.0f} "
            f"| {'PASS' if c.passed else 'FAIL'} |",
        ]
    notes = [f"- {r.key}: {text}" for r in results for text in (*r.problems, *r.notes)]
    for r in results:
        if r.concurrency is not None:
            notes += [
                f"- {r.key} error: {n} x {kind}" for kind, n in r.concurrency.errors.most_common(5)
            ]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines)
