"""Group commit: appends that arrive while a group is being written go into the next one.

Each append (a single event or a batch) is a request. A *lane* writes one group at a time:
everything that queued while the previous group was being written goes into the next
transaction together — one ``BEGIN IMMEDIATE … COMMIT`` (and one fsync) on SQLite, one
advisory-lock transaction on PostgreSQL — and each request is answered only once that
transaction has committed. Each request's outcome is still its own: one naming a session
that does not exist is kept out of the group and fails alone.

On SQLite the store has one lane (one writer); on PostgreSQL one lane per set of Claude
sessions, so that appends to different conversations run in parallel on different
connections.

A lane's group is written by a task the store owns: a caller cancelled while it waits only
stops waiting. A request whose caller gave up before its group was formed is left out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Final

__all__ = ["AppendRequest", "GroupCommit", "Outcome"]

Outcome = list[tuple[int, int]] | str
"""A request's ``(id, sequence)`` per row, or the id of the missing session that kept it out."""

MAX_GROUP_ROWS: Final = 5_000
"""A group stops growing at this many rows (a single larger batch still goes in whole)."""


class AppendRequest:
    """One caller's append: its encoded rows, their Claude sessions, and its answer."""

    __slots__ = ("claude_ids", "future", "rows")

    def __init__(self, rows: Sequence[tuple[Any, ...]], claude_ids: Sequence[str]) -> None:
        self.rows = rows
        self.claude_ids = claude_ids
        self.future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

    def settle(self, outcome: Outcome | None = None, error: BaseException | None = None) -> None:
        if self.future.done():  # the caller stopped waiting
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            assert outcome is not None
            self.future.set_result(outcome)


WriteGroup = Callable[[list[AppendRequest]], Awaitable[list[Outcome]]]


class _Lane:
    __slots__ = ("pending", "task")

    def __init__(self) -> None:
        self.pending: list[AppendRequest] = []
        self.task: asyncio.Task[None] | None = None


class GroupCommit:
    """The store's lanes; ``write_group`` writes one group in one transaction."""

    def __init__(self, write_group: WriteGroup, *, lane_per_claude_sessions: bool) -> None:
        self._write_group = write_group
        self._per_claude = lane_per_claude_sessions
        self._lanes: dict[Hashable, _Lane] = {}

    async def append(self, request: AppendRequest) -> Outcome:
        """Queue ``request`` in its lane and wait until its group has committed."""
        key: Hashable = tuple(sorted(set(request.claude_ids))) if self._per_claude else None
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        lane.pending.append(request)
        if lane.task is None:
            lane.task = asyncio.ensure_future(self._drain(key, lane))
        return await request.future

    async def _drain(self, key: Hashable, lane: _Lane) -> None:
        try:
            while lane.pending:
                group = _take_group(lane)
                if not group:
                    continue
                try:
                    outcomes = await self._write_group(group)
                except BaseException as exc:
                    for request in group:
                        request.settle(error=exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                for request, outcome in zip(group, outcomes, strict=True):
                    request.settle(outcome)
        finally:
            lane.task = None
            for request in lane.pending:  # only when cancelled (the store closing)
                request.settle(error=asyncio.CancelledError())
            lane.pending.clear()
            if self._lanes.get(key) is lane:
                del self._lanes[key]

    async def close(self) -> None:
        """Wait until every queued append has been written."""
        while tasks := [lane.task for lane in self._lanes.values() if lane.task is not None]:
            await asyncio.gather(*tasks, return_exceptions=True)


def _take_group(lane: _Lane) -> list[AppendRequest]:
    """The next group: queued requests whose callers still wait, up to MAX_GROUP_ROWS rows."""
    group: list[AppendRequest] = []
    rows = 0
    taken = 0
    for request in lane.pending:
        if group and rows + len(request.rows) > MAX_GROUP_ROWS:
            break
        taken += 1
        if request.future.cancelled():
            continue
        group.append(request)
        rows += len(request.rows)
    del lane.pending[:taken]
    return group
