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

No task sits between a caller and its group: the first request of an idle lane hands the
group to the data path at once, and the job's completion (in the event loop's thread)
answers every request of the group and hands on the next group. A caller cancelled while
it waits only stops waiting; a request whose caller gave up before its group was formed is
left out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence
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


Done = Callable[[Any, BaseException | None], None]
WriteGroup = Callable[[list[AppendRequest], Done], None]
"""Hands a group to the data path; calls ``done(outcomes, error)`` once it has run."""


class _Lane:
    __slots__ = ("busy", "pending")

    def __init__(self) -> None:
        self.pending: list[AppendRequest] = []
        self.busy = False


class GroupCommit:
    """The store's lanes; ``write_group`` writes one group in one transaction."""

    def __init__(self, write_group: WriteGroup, *, lane_per_claude_sessions: bool) -> None:
        self._write_group = write_group
        self._per_claude = lane_per_claude_sessions
        self._lanes: dict[Hashable, _Lane] = {}
        self._idle: asyncio.Event | None = None

    async def append(self, request: AppendRequest) -> Outcome:
        """Queue ``request`` in its lane and wait until its group has committed."""
        key: Hashable = tuple(sorted(set(request.claude_ids))) if self._per_claude else None
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        lane.pending.append(request)
        if not lane.busy:
            self._next_group(key, lane)
        return await request.future

    def _next_group(self, key: Hashable, lane: _Lane) -> None:
        """Hand the lane's next group to the data path, or leave the lane idle."""
        group = _take_group(lane)
        while not group and lane.pending:
            group = _take_group(lane)
        if not group:
            lane.busy = False
            if self._lanes.get(key) is lane:
                del self._lanes[key]
            if not self._lanes and self._idle is not None:
                self._idle.set()
            return
        lane.busy = True

        def done(outcomes: Any, error: BaseException | None) -> None:
            if error is not None:
                for request in group:
                    request.settle(error=error)
            else:
                for request, outcome in zip(group, outcomes, strict=True):
                    request.settle(outcome)
            self._next_group(key, lane)

        try:
            self._write_group(group, done)
        except BaseException as exc:  # refused before it was queued (the store closing)
            done(None, exc)

    async def close(self) -> None:
        """Wait until every queued append has been written."""
        while self._lanes:
            self._idle = asyncio.Event()
            await self._idle.wait()


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
