"""Watching for changes: conversations and approvals as they happen, across processes.

A watch never polls the tables on a timer and holds no connection while it waits. The
store keeps one :class:`ChangeFeed`; it wakes watches when something may have changed:

* **this store's writes** wake them directly when they commit (an append wakes the watches
  of its Claude sessions; any other write, the approval watches);
* **other processes** (another store, an hld daemon sharing the file): on SQLite one
  ``PRAGMA data_version`` check on a connection of its own while any watch is open (every
  10 ms while commits come, every 25 ms after a second without one) — a read of a counter
  in shared memory, which changes when another connection commits; on PostgreSQL
  ``LISTEN`` on one connection per store, woken by the ``NOTIFY`` that triggers send in the
  writing transaction (revision 0004). After that connection is lost it reconnects and
  wakes every watch, so nothing is missed.

A woken watch re-reads what is new after the last sequence it gave out: events come in
sequence order, each exactly once, whoever wrote them and whatever was missed while a
connection was down. Watches of the same conversation share one read per wake-up (100
watchers following one session cost one query per change, not 100); they may then hand out
the same event objects, which are to be treated as read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from agentstore.errors import StoreClosedError
from agentstore.models import Approval, ApprovalStatus, ConversationEvent

if TYPE_CHECKING:
    from agentstore.store import Store

__all__ = ["ChangeFeed"]

logger = logging.getLogger("agentstore")

POLL_SECONDS: Final = 0.01
"""How often SQLite's ``data_version`` is checked while a watch is open and commits come."""
IDLE_POLL_SECONDS: Final = 0.025
"""How often after :data:`IDLE_AFTER_SECONDS` without a commit: each check wakes the
process (~40 µs of CPU on a small VM), so idle watches check less often."""
IDLE_AFTER_SECONDS: Final = 1.0
COALESCE_SECONDS: Final = 0.001
"""Commits to one conversation within this long wake its watches once: a writer appending
one event at a time is not slowed by waking every follower for every event."""
BATCH: Final = 1000
"""Events read per query while a watch catches up."""
CHANNEL: Final = "agentstore_changes"
"""The PostgreSQL NOTIFY channel the triggers of revision 0004 send on."""


class _Signal:
    """A counter that waiters can wait to see move past a value they saw."""

    __slots__ = ("_waiters", "version")

    def __init__(self) -> None:
        self.version = 0
        self._waiters: list[asyncio.Future[None]] = []

    def bump(self) -> None:
        self.version += 1
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_past(self, seen: int) -> None:
        while self.version == seen:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)


class _Conversation:
    """The watches of one Claude session, and their shared reads."""

    __slots__ = ("fetching", "pending", "signal", "watchers")

    def __init__(self) -> None:
        self.signal = _Signal()
        self.watchers = 0
        self.pending: asyncio.TimerHandle | None = None  # a coalesced wake-up, scheduled
        # The read in flight: (after which sequence, the signal's version when it started,
        # its result), shared by every watch at that same position.
        self.fetching: tuple[int, int, asyncio.Future[list[ConversationEvent]]] | None = None


class ChangeFeed:
    """The store's wake-ups for its watches (see the module)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._conversations: dict[str, _Conversation] = {}
        self._approvals = _Signal()
        self._everything = _Signal()  # bumped for other processes' commits and on close
        self._watches = 0
        self._closed = False
        self._source: asyncio.Task[None] | None = None

    # --- wake-ups ---------------------------------------------------------------------------

    def appended(self, claude_session_ids: Iterable[str]) -> None:
        """This store committed events in these Claude sessions."""
        for key in claude_session_ids:
            conversation = self._conversations.get(key)
            if conversation is not None and conversation.pending is None:
                conversation.pending = asyncio.get_running_loop().call_later(
                    COALESCE_SECONDS, self._wake, conversation
                )

    @staticmethod
    def _wake(conversation: _Conversation) -> None:
        conversation.pending = None
        conversation.signal.bump()

    def approvals_changed(self) -> None:
        """This store committed a write that may have changed approvals."""
        self._approvals.bump()

    def everything_changed(self) -> None:
        """Something may have changed anywhere (another process, a reconnect, an import)."""
        for conversation in self._conversations.values():
            conversation.signal.bump()
        self._approvals.bump()
        self._everything.bump()

    async def close(self) -> None:
        """End every watch (their iterations stop) and the change source."""
        self._closed = True
        self.everything_changed()
        if self._source is not None:
            self._source.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._source
            self._source = None

    # --- the source of other processes' changes ---------------------------------------------

    def _opened(self) -> None:
        if self._closed:
            raise StoreClosedError()
        self._watches += 1
        self._start_source()

    def _start_source(self) -> None:
        if self._source is None or self._source.done():
            self._source = asyncio.ensure_future(self._store._watch_source(self))
            self._source.add_done_callback(self._source_ended)

    def _source_ended(self, task: asyncio.Task[None]) -> None:
        # It stops when the last watch ends; a watch opened as it stopped gets a new one.
        if not task.cancelled() and task.exception() is not None:
            # The type only: a driver's message may quote a row's values.
            logger.warning(
                "agentstore: the change source failed (%s); restarting it",
                type(task.exception()).__name__,
            )
        if self.watching and self._source is task:
            self._start_source()

    def _ended(self) -> None:
        self._watches -= 1

    @property
    def watching(self) -> bool:
        """Whether any watch is open (the change source stops when none is)."""
        return self._watches > 0 and not self._closed

    # --- conversations ----------------------------------------------------------------------

    async def conversation(
        self, claude_session_id: str, after_sequence: int
    ) -> AsyncIterator[ConversationEvent]:
        """Events of one Claude session after ``after_sequence``, in order, as they come."""
        self._opened()
        conversation = self._conversations.get(claude_session_id)
        if conversation is None:
            conversation = self._conversations[claude_session_id] = _Conversation()
        conversation.watchers += 1
        position = after_sequence
        try:
            while not self._closed:
                seen, events = await self._read_after(claude_session_id, conversation, position)
                if events:
                    for event in events:
                        yield event
                        position = event.sequence
                    continue  # perhaps more than one batch
                if self._closed:
                    return
                await conversation.signal.wait_past(seen)
        finally:
            conversation.watchers -= 1
            if (
                conversation.watchers == 0
                and self._conversations.get(claude_session_id) is conversation
            ):
                del self._conversations[claude_session_id]
            self._ended()

    async def _read_after(
        self, claude_session_id: str, conversation: _Conversation, position: int
    ) -> tuple[int, list[ConversationEvent]]:
        """One batch of events after ``position``, read once for every watch at that
        position; and the signal's version when the read began (a wake-up after it may have
        come too late for the read: the watch waits only for one past that version)."""
        shared = conversation.fetching
        if shared is not None and shared[0] == position:
            _, version, future = shared
        else:
            version = conversation.signal.version
            future = asyncio.ensure_future(
                self._store.conversations.get_conversation(
                    claude_session_id, after_sequence=position, limit=BATCH
                )
            )
            conversation.fetching = (position, version, future)

            def forget(done: asyncio.Future[list[ConversationEvent]]) -> None:
                if conversation.fetching is not None and conversation.fetching[2] is done:
                    conversation.fetching = None

            future.add_done_callback(forget)
        found = await asyncio.shield(future)
        return version, [event for event in found if event.sequence > position]

    # --- approvals --------------------------------------------------------------------------

    async def approvals(self, session_id: str | None) -> AsyncIterator[Approval]:
        """Pending approvals now, then each that becomes pending, once each, oldest first."""
        self._opened()
        given: set[str] = set()
        try:
            while not self._closed:
                seen = self._approvals.version
                pending = await self._store.approvals.pending(session_id)
                for approval in pending:
                    if approval.id not in given:
                        given.add(approval.id)
                        yield approval
                if self._closed:
                    return
                await self._approvals.wait_past(seen)
        finally:
            self._ended()

    async def decision(self, approval_id: str) -> Approval:
        """The approval once it is approved or denied."""
        self._opened()
        try:
            while True:
                seen = self._approvals.version
                approval = await self._store.approvals.get(approval_id)
                if approval.status != ApprovalStatus.PENDING:
                    return approval
                if self._closed:
                    raise StoreClosedError()
                await self._approvals.wait_past(seen)
        finally:
            self._ended()


# --- change sources -------------------------------------------------------------------------


async def sqlite_changes(feed: ChangeFeed, connect: Callable[[], sqlite3.Connection]) -> None:
    """Wake every watch when another connection has committed (``PRAGMA data_version``).

    The check runs in the event loop itself: it reads a counter in shared memory and never
    waits (``busy_timeout`` 0; a busy moment is simply checked again next time). Every 10 ms
    while commits come, every 25 ms after a second without one.
    """
    conn = connect()
    try:
        conn.execute("PRAGMA busy_timeout = 0")
        last = conn.execute("PRAGMA data_version").fetchone()[0]
        interval = POLL_SECONDS
        changed_at = time.monotonic()
        while feed.watching:
            await asyncio.sleep(interval)
            try:
                version = conn.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if version != last:
                last = version
                feed.everything_changed()
                changed_at = time.monotonic()
                interval = POLL_SECONDS
            elif time.monotonic() - changed_at > IDLE_AFTER_SECONDS:
                interval = IDLE_POLL_SECONDS
    finally:
        conn.close()


async def postgres_changes(
    feed: ChangeFeed,
    connect: Callable[[], Awaitable[Any]],
    release: Callable[[Any], Awaitable[None]],
) -> None:
    """Wake watches from ``NOTIFY`` on one listening connection; reconnect when it is lost.

    Payloads: ``e:<claude session id>`` for appended events, ``a`` for approvals. After a
    (re)connect every watch is woken, so what was committed while no one listened is read.
    ``release`` closes the connection (never lent again with a LISTEN on it).
    """
    delay = 0.05
    while feed.watching:
        try:
            held = await connect()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning(
                "agentstore: cannot listen for changes (%s); retrying", type(exc).__name__
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            continue
        driver = held.driver
        lost = asyncio.get_running_loop().create_future()

        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            if payload.startswith("e:"):
                feed.appended([payload[2:]])
            else:
                feed.approvals_changed()

        def on_lost(_conn: Any, lost: asyncio.Future[None] = lost) -> None:
            if not lost.done():
                lost.set_result(None)

        try:
            driver.add_termination_listener(on_lost)
            await driver.add_listener(CHANNEL, on_notify)
            delay = 0.05
            feed.everything_changed()  # whatever was committed before we listened
            while feed.watching and not lost.done():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await asyncio.shield(lost)
                if driver.is_closed() and not lost.done():
                    lost.set_result(None)
        except asyncio.CancelledError:
            await asyncio.shield(release(held))
            raise
        except Exception as exc:
            logger.info(
                "agentstore: the change listener's connection failed (%s)", type(exc).__name__
            )
        with contextlib.suppress(Exception):
            await asyncio.shield(release(held))
        # Lost: reconnect (and wake everything); no watch left: done.


async def first_decision(feed: ChangeFeed, approval_id: str, seconds: float | None) -> Approval:
    """:meth:`ChangeFeed.decision`, bounded by ``seconds`` (TimeoutError)."""
    if seconds is None:
        return await feed.decision(approval_id)
    async with asyncio.timeout(seconds):
        return await feed.decision(approval_id)
