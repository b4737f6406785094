"""Conversation events: messages, tool calls and results, numbered per Claude session."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from agentstore.errors import DuplicateError, InvalidValueError, NotFoundError
from agentstore.models import ApprovalStatus, ConversationEvent, EventType, Session
from agentstore.repos._base import Database, build, build_all, values_of
from agentstore.repos._errors import integrity_kind
from agentstore.validation import check_enum, check_row, require_id

__all__ = ["ConversationRepo"]

T = cast(sa.Table, ConversationEvent.__table__)
S = cast(sa.Table, Session.__table__)
_TOOL_CALL = EventType.TOOL_CALL.value


def _check_event(event: ConversationEvent) -> None:
    if not isinstance(event, ConversationEvent):
        raise InvalidValueError(f"expected a ConversationEvent, got {type(event).__name__}")
    require_id(event.session_id, "ConversationEvent.session_id")
    check_row(event)
    event.event_type = check_enum(EventType, event.event_type, "event type")
    if event.approval_status:
        event.approval_status = check_enum(ApprovalStatus, event.approval_status, "approval status")


async def _lock_sequence(conn: AsyncConnection, claude_session_ids: Sequence[str]) -> None:
    """Serialise appends to the same Claude sessions across connections and processes.

    On SQLite the write transaction already holds the database's write lock (``BEGIN
    IMMEDIATE``). On PostgreSQL a transaction-scoped advisory lock per Claude session does
    it, taken in sorted order so that batches cannot deadlock.
    """
    if conn.dialect.name != "postgresql":
        return
    for key in sorted(set(claude_session_ids)):
        await conn.execute(
            sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(key, 0)))
        )


async def _next_sequence(conn: AsyncConnection, claude_session_id: str) -> int:
    current = (
        await conn.execute(
            sa.select(sa.func.max(T.c.sequence)).where(T.c.claude_session_id == claude_session_id)
        )
    ).scalar()
    return int(current or 0) + 1


def _translate(exc: IntegrityError, event: ConversationEvent) -> Exception:
    if integrity_kind(exc) == "foreign_key":
        return NotFoundError("session", event.session_id)
    return DuplicateError("conversation event", (event.claude_session_id, event.sequence))


class ConversationRepo:
    """Append and read conversation events; track tool calls and their approvals."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, event: ConversationEvent) -> ConversationEvent:
        """Append ``event``; sets its ``sequence`` (next in its Claude session) and ``id``.

        Sequences are unique and gap-free per ``claude_session_id``, however many tasks or
        processes append at once. Raises :class:`NotFoundError` if the session does not
        exist and :class:`InvalidValueError` for bad values; nothing is written then.
        """
        _check_event(event)
        async with self._db.writing() as conn:
            await _lock_sequence(conn, [event.claude_session_id])
            sequence = await _next_sequence(conn, event.claude_session_id)
            values = values_of(event, skip=("id",))
            values["sequence"] = sequence
            try:
                new_id = (await conn.execute(sa.insert(T).returning(T.c.id), values)).scalar_one()
            except IntegrityError as exc:
                raise _translate(exc, event) from exc
        event.sequence = sequence
        event.id = int(new_id)
        return event

    async def add_many(self, events: Sequence[ConversationEvent]) -> list[ConversationEvent]:
        """Append a batch in one transaction, with contiguous sequences per Claude session.

        Sets ``sequence`` and ``id`` on each event; all or nothing.
        """
        batch = list(events)
        for event in batch:
            _check_event(event)
        if not batch:
            return batch
        try:
            async with self._db.writing() as conn:
                await _lock_sequence(conn, [e.claude_session_id for e in batch])
                next_of: dict[str, int] = {}
                rows: list[dict[str, Any]] = []
                for event in batch:
                    key = event.claude_session_id
                    if key not in next_of:
                        next_of[key] = await _next_sequence(conn, key)
                    values = values_of(event, skip=("id",))
                    values["sequence"] = next_of[key]
                    next_of[key] += 1
                    rows.append(values)
                result = await conn.execute(
                    sa.insert(T).returning(T.c.id, sort_by_parameter_order=True), rows
                )
                ids = [int(r[0]) for r in result]
        except IntegrityError as exc:
            raise await self._translate_batch(exc, batch) from exc
        for event, values, new_id in zip(batch, rows, ids, strict=True):
            event.sequence = values["sequence"]
            event.id = new_id
        return batch

    async def _translate_batch(
        self, exc: IntegrityError, batch: Sequence[ConversationEvent]
    ) -> Exception:
        """The store error for a failed batch, naming the event whose session is missing.

        Runs after the failed unit of work was rolled back, so it costs nothing on success.
        """
        if integrity_kind(exc) != "foreign_key":
            return _translate(exc, batch[0])
        wanted = list(dict.fromkeys(e.session_id for e in batch))
        async with self._db.reading() as conn:
            found = set((await conn.execute(sa.select(S.c.id).where(S.c.id.in_(wanted)))).scalars())
        missing = next((e for e in batch if e.session_id not in found), batch[0])
        return _translate(exc, missing)

    async def get_conversation(
        self,
        claude_session_id: str,
        *,
        after_sequence: int | None = None,
        before_sequence: int | None = None,
        limit: int | None = None,
    ) -> list[ConversationEvent]:
        """Events of one Claude session, oldest first; ``[]`` if none.

        ``after_sequence``/``before_sequence`` bound the page (exclusive). With a ``limit``
        and no ``after_sequence`` the newest ``limit`` events are returned (still oldest
        first); with ``after_sequence`` the next ``limit`` after it.
        """
        stmt = sa.select(T).where(T.c.claude_session_id == claude_session_id)
        if after_sequence is not None:
            stmt = stmt.where(T.c.sequence > after_sequence)
        if before_sequence is not None:
            stmt = stmt.where(T.c.sequence < before_sequence)
        newest = limit is not None and after_sequence is None
        if limit is not None:
            if limit < 0:
                raise InvalidValueError(f"limit must be >= 0, got {limit}")
            order = T.c.sequence.desc() if newest else T.c.sequence.asc()
            stmt = stmt.order_by(order, T.c.id.desc() if newest else T.c.id.asc()).limit(limit)
        else:
            stmt = stmt.order_by(T.c.sequence, T.c.id)
        async with self._db.reading() as conn:
            events = build_all(ConversationEvent, await conn.execute(stmt))
        if newest:
            events.reverse()
        return events

    async def get_session_conversation(self, session_id: str) -> list[ConversationEvent]:
        """The whole conversation of a session and its ancestors, ancestors' events first.

        Walks the ``parent_session_id`` chain (a cycle or a missing ancestor ends the walk).
        Raises :class:`NotFoundError` if the session does not exist; ``[]`` if no events.
        """
        async with self._db.reading() as conn:
            chain: list[str] = []
            seen: set[str] = set()
            current: str | None = session_id
            while current and current not in seen:
                seen.add(current)
                row = (
                    await conn.execute(
                        sa.select(S.c.claude_session_id, S.c.parent_session_id).where(
                            S.c.id == current
                        )
                    )
                ).first()
                if row is None:
                    if current == session_id:
                        raise NotFoundError("session", session_id)
                    break
                if row[0]:
                    chain.insert(0, row[0])
                current = row[1]
            if not chain:
                return []
            position: dict[str, int] = {}
            for index, claude_id in enumerate(chain):
                position.setdefault(claude_id, index)
            stmt = (
                sa.select(T)
                .where(T.c.claude_session_id.in_(list(position)))
                .order_by(sa.case(position, value=T.c.claude_session_id), T.c.sequence, T.c.id)
            )
            return build_all(ConversationEvent, await conn.execute(stmt))

    def _pending_calls(self, session_id: str) -> sa.Select[Any]:
        return (
            sa.select(T)
            .where(
                T.c.session_id == session_id,
                T.c.event_type == _TOOL_CALL,
                T.c.is_completed == sa.false(),
            )
            .order_by(T.c.sequence.desc(), T.c.id.desc())
        )

    async def get_pending_tool_call(
        self, session_id: str, tool_name: str
    ) -> ConversationEvent | None:
        """The most recent uncompleted call of ``tool_name`` in the session, or None."""
        stmt = self._pending_calls(session_id).where(T.c.tool_name == tool_name).limit(1)
        async with self._db.reading() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else build(ConversationEvent, row._mapping)

    async def get_uncorrelated_pending_tool_call(
        self, session_id: str, tool_name: str
    ) -> ConversationEvent | None:
        """The most recent uncompleted call of ``tool_name`` with no approval yet, or None."""
        stmt = (
            self._pending_calls(session_id)
            .where(
                T.c.tool_name == tool_name,
                sa.or_(T.c.approval_status.is_(None), T.c.approval_status == ""),
            )
            .limit(1)
        )
        async with self._db.reading() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else build(ConversationEvent, row._mapping)

    async def get_pending_tool_calls(self, session_id: str) -> list[ConversationEvent]:
        """Every uncompleted tool call of the session, newest first; ``[]`` if none."""
        async with self._db.reading() as conn:
            return build_all(ConversationEvent, await conn.execute(self._pending_calls(session_id)))

    async def get_tool_call_by_id(self, tool_id: str) -> ConversationEvent | None:
        """The tool call with this tool id (the first one stored), or None."""
        stmt = (
            sa.select(T)
            .where(T.c.tool_id == tool_id, T.c.event_type == _TOOL_CALL)
            .order_by(T.c.id)
            .limit(1)
        )
        async with self._db.reading() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else build(ConversationEvent, row._mapping)

    async def mark_tool_call_completed(self, tool_id: str, session_id: str) -> None:
        """Mark the session's calls with this tool id completed; nothing if none match."""
        async with self._db.writing() as conn:
            await conn.execute(
                sa.update(T)
                .where(
                    T.c.tool_id == tool_id,
                    T.c.session_id == session_id,
                    T.c.event_type == _TOOL_CALL,
                )
                .values(is_completed=True)
            )

    async def correlate_approval(self, session_id: str, tool_name: str, approval_id: str) -> None:
        """Attach an approval to the most recent uncompleted call of ``tool_name``.

        Does nothing if there is no such call or if that call already has an approval.
        """
        require_id(approval_id, "approval_id")
        async with self._db.writing() as conn:
            row = (
                await conn.execute(
                    self._pending_calls(session_id)
                    .with_only_columns(T.c.id, T.c.approval_status)
                    .where(T.c.tool_name == tool_name)
                    .limit(1)
                )
            ).first()
            if row is None or row[1]:
                return
            await conn.execute(
                sa.update(T)
                .where(T.c.id == row[0])
                .values(approval_status=ApprovalStatus.PENDING.value, approval_id=approval_id)
            )

    async def link_approval_by_tool_id(
        self, session_id: str, tool_id: str, approval_id: str
    ) -> None:
        """Attach an approval to the uncompleted, uncorrelated call with this tool id.

        Does nothing if no call matches.
        """
        require_id(approval_id, "approval_id")
        async with self._db.writing() as conn:
            await conn.execute(
                sa.update(T)
                .where(
                    T.c.session_id == session_id,
                    T.c.tool_id == tool_id,
                    T.c.event_type == _TOOL_CALL,
                    T.c.is_completed == sa.false(),
                    sa.or_(T.c.approval_status.is_(None), T.c.approval_status == ""),
                )
                .values(approval_status=ApprovalStatus.PENDING.value, approval_id=approval_id)
            )

    async def update_approval_status(self, approval_id: str, status: str) -> None:
        """Set the approval status of the events linked to ``approval_id``.

        ``resolved`` only replaces ``pending`` (a decision is never overwritten). Does
        nothing if no event is linked; raises :class:`InvalidStatusError` for an unknown status.
        """
        value = check_enum(ApprovalStatus, status, "approval status")
        stmt = sa.update(T).where(T.c.approval_id == approval_id).values(approval_status=value)
        if value == ApprovalStatus.RESOLVED:
            stmt = stmt.where(T.c.approval_status == ApprovalStatus.PENDING.value)
        async with self._db.writing() as conn:
            await conn.execute(stmt)

    async def count(self) -> int:
        """How many events are stored."""
        async with self._db.reading() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(T))).scalar_one())
