"""Conversation events: messages, tool calls and results, numbered per Claude session."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, cast

import sqlalchemy as sa

from agentstore.db import APPEND_COLUMNS, Conn, Query, Statement
from agentstore.db.groups import AppendRequest
from agentstore.errors import InvalidValueError, NotFoundError
from agentstore.models import ApprovalStatus, ConversationEvent, EventType, Session
from agentstore.repos._base import Database, all_of, first_of
from agentstore.validation import check_enum, require_id, require_int, require_str, row_encoder

__all__ = ["ConversationRepo"]

T = cast(sa.Table, ConversationEvent.__table__)
S = cast(sa.Table, Session.__table__)
_TOOL_CALL = EventType.TOOL_CALL.value


def encode_events(
    events: Sequence[ConversationEvent], dialect: str
) -> tuple[list[tuple[Any, ...]], list[str]]:
    """Every event checked (before anything is written) and encoded as an append row; and
    the Claude sessions they append to."""
    encode = row_encoder(ConversationEvent, APPEND_COLUMNS, dialect)
    rows = []
    for event in events:
        if event.__class__ is not ConversationEvent and not isinstance(event, ConversationEvent):
            raise InvalidValueError(f"expected a ConversationEvent, got {type(event).__name__}")
        row = encode(event)
        if not row[_SESSION_AT]:
            require_id(row[_SESSION_AT], "ConversationEvent.session_id")
        rows.append(row)
    return rows, [row[_CLAUDE_AT] for row in rows]


_SESSION_AT = APPEND_COLUMNS.index("session_id")
_CLAUDE_AT = APPEND_COLUMNS.index("claude_session_id")


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
        await self._append([event])
        return event

    async def add_many(self, events: Sequence[ConversationEvent]) -> list[ConversationEvent]:
        """Append a batch in one transaction, with contiguous sequences per Claude session.

        Sets ``sequence`` and ``id`` on each event; all or nothing: a batch naming a
        session that does not exist raises :class:`NotFoundError` and writes nothing.
        """
        if isinstance(events, ConversationEvent) or not isinstance(events, Sequence | list):
            try:
                events = list(events)
            except TypeError:
                raise InvalidValueError(
                    f"expected a list of ConversationEvents, got {type(events).__name__}"
                ) from None
        batch = list(events)
        if batch:
            await self._append(batch)
        return batch

    async def _append(self, batch: list[ConversationEvent]) -> None:
        rows, claude_ids = encode_events(batch, self._db.dialect)
        outcome = await self._db.append(AppendRequest(rows, claude_ids))
        if isinstance(outcome, str):
            raise NotFoundError("session", outcome)
        for event, (new_id, sequence) in zip(batch, outcome, strict=True):
            # Straight into the instance: a new, unsaved value no ORM session tracks, and
            # SQLAlchemy's attribute events would double the cost of a batch.
            state = event.__dict__
            state["id"] = new_id
            state["sequence"] = sequence

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
        claude_session_id = require_str(claude_session_id, "claude_session_id")
        after = require_int(after_sequence, "after_sequence", optional=True)
        before = require_int(before_sequence, "before_sequence", optional=True)
        limit = require_int(limit, "limit", minimum=0, optional=True)
        query = _conversation_query(after is not None, before is not None, limit is not None)
        values = {
            "claude_session_id": claude_session_id,
            "after": after,
            "before": before,
            "limit": limit,
        }
        events = await all_of(self._db, query, values)
        if limit is not None and after is None:
            events.reverse()  # the newest ``limit`` were read newest first
        return events

    async def get_session_conversation(self, session_id: str) -> list[ConversationEvent]:
        """The whole conversation of a session and its ancestors, ancestors' events first.

        Walks the ``parent_session_id`` chain (a cycle or a missing ancestor ends the walk),
        then reads every event of the chain's Claude sessions in one statement, in one
        snapshot. Raises :class:`NotFoundError` if the session does not exist; ``[]`` if
        there are no events.
        """
        session_id = require_str(session_id, "session_id")

        async def unit(conn: Conn) -> list[ConversationEvent] | None:
            chain: list[str] = []
            seen: set[str] = set()
            current = session_id
            while current and current not in seen:
                seen.add(current)
                found = await conn.rows(_PARENT, {"id": current})
                if not found:
                    if current == session_id:
                        return None
                    break
                claude_id, current = found[0]
                if claude_id:  # a Claude id met twice keeps its oldest place, as in hld
                    if claude_id in chain:
                        chain.remove(claude_id)
                    chain.insert(0, claude_id)
            if not chain:
                return []
            values = {f"c{i}": claude_id for i, claude_id in enumerate(chain)}
            return await conn.models(_chain_query(len(chain)), values)

        events = await self._db.read(unit, snapshot=True)
        if events is None:
            raise NotFoundError("session", session_id)
        return events

    async def get_pending_tool_call(
        self, session_id: str, tool_name: str
    ) -> ConversationEvent | None:
        """The most recent uncompleted call of ``tool_name`` in the session, or None."""
        values = {
            "session_id": require_str(session_id, "session_id"),
            "tool_name": require_str(tool_name, "tool_name"),
        }
        return await first_of(self._db, _PENDING_CALL, values)

    async def get_uncorrelated_pending_tool_call(
        self, session_id: str, tool_name: str
    ) -> ConversationEvent | None:
        """The most recent uncompleted call of ``tool_name`` with no approval yet, or None."""
        values = {
            "session_id": require_str(session_id, "session_id"),
            "tool_name": require_str(tool_name, "tool_name"),
        }
        return await first_of(self._db, _UNCORRELATED_CALL, values)

    async def get_pending_tool_calls(self, session_id: str) -> list[ConversationEvent]:
        """Every uncompleted tool call of the session, newest first; ``[]`` if none."""
        values = {"session_id": require_str(session_id, "session_id")}
        return await all_of(self._db, _PENDING_CALLS, values)

    async def get_tool_call_by_id(self, tool_id: str) -> ConversationEvent | None:
        """The tool call with this tool id (the first one stored), or None."""
        return await first_of(
            self._db, _CALL_BY_TOOL_ID, {"tool_id": require_str(tool_id, "tool_id")}
        )

    async def mark_tool_call_completed(self, tool_id: str, session_id: str) -> None:
        """Mark the session's calls with this tool id completed; nothing if none match."""
        values = {
            "tool_id": require_str(tool_id, "tool_id"),
            "session_id": require_str(session_id, "session_id"),
        }
        await self._db.write(_execute(_MARK_COMPLETED, values))

    async def correlate_approval(self, session_id: str, tool_name: str, approval_id: str) -> None:
        """Attach an approval to the most recent uncompleted call of ``tool_name``.

        Does nothing if there is no such call or if that call already has an approval.
        """
        values = {
            "session_id": require_str(session_id, "session_id"),
            "tool_name": require_str(tool_name, "tool_name"),
            "approval_id": require_id(approval_id, "approval_id"),
        }
        await self._db.write(_execute(_CORRELATE, values))

    async def link_approval_by_tool_id(
        self, session_id: str, tool_id: str, approval_id: str
    ) -> None:
        """Attach an approval to the uncompleted, uncorrelated call with this tool id.

        Does nothing if no call matches.
        """
        values = {
            "session_id": require_str(session_id, "session_id"),
            "tool_id": require_str(tool_id, "tool_id"),
            "approval_id": require_id(approval_id, "approval_id"),
        }
        await self._db.write(_execute(_LINK_BY_TOOL_ID, values))

    async def update_approval_status(self, approval_id: str, status: str) -> None:
        """Set the approval status of the events linked to ``approval_id``.

        ``resolved`` only replaces ``pending`` (a decision is never overwritten). Does
        nothing if no event is linked; raises :class:`InvalidStatusError` for an unknown status.
        """
        value = check_enum(ApprovalStatus, status, "approval status")
        values = {"approval_id": require_str(approval_id, "approval_id"), "status": value}
        statement = _RESOLVE if value == ApprovalStatus.RESOLVED else _SET_APPROVAL_STATUS
        await self._db.write(_execute(statement, values))

    async def count(self) -> int:
        """How many events are stored."""

        async def unit(conn: Conn) -> int:
            return int((await conn.rows(_COUNT))[0][0])

        return await self._db.read(unit)


def _execute(statement: Statement, values: dict[str, Any]) -> Any:
    async def unit(conn: Conn) -> int:
        return await conn.execute(statement, values)

    return unit


# --- statements -----------------------------------------------------------------------------


@cache
def _conversation_query(after: bool, before: bool, limit: bool) -> Query[ConversationEvent]:
    """``get_conversation``'s statement for one combination of paging arguments."""
    stmt = sa.select(T).where(T.c.claude_session_id == sa.bindparam("claude_session_id"))
    if after:
        stmt = stmt.where(T.c.sequence > sa.bindparam("after"))
    if before:
        stmt = stmt.where(T.c.sequence < sa.bindparam("before"))
    if limit:
        newest = not after  # only a limit (or a limit before a point): the latest N
        if newest:
            stmt = stmt.order_by(T.c.sequence.desc(), T.c.id.desc())
        else:
            stmt = stmt.order_by(T.c.sequence, T.c.id)
        stmt = stmt.limit(sa.bindparam("limit"))
    else:
        stmt = stmt.order_by(T.c.sequence, T.c.id)
    # Every row's claude_session_id is the parameter: not read back per row.
    return Query(ConversationEvent, stmt, known=("claude_session_id",))


_PARENT = Statement(
    sa.select(
        sa.func.coalesce(S.c.claude_session_id, ""), sa.func.coalesce(S.c.parent_session_id, "")
    ).where(S.c.id == sa.bindparam("id", type_=sa.Text()))
)


@cache
def _chain_query(length: int) -> Query[ConversationEvent]:
    """The events of ``length`` Claude sessions, in chain order, then by sequence."""
    claude = T.c.claude_session_id
    ids = [sa.bindparam(f"c{i}", type_=sa.Text()) for i in range(length)]
    stmt = (
        sa.select(T)
        .where(sa.or_(*(claude == p for p in ids)))
        .order_by(sa.case(*((claude == p, i) for i, p in enumerate(ids))), T.c.sequence, T.c.id)
    )
    return Query(ConversationEvent, stmt)


def _pending_calls() -> sa.Select[Any]:
    return (
        sa.select(T)
        .where(
            T.c.session_id == sa.bindparam("session_id", type_=sa.Text()),
            T.c.event_type == _TOOL_CALL,
            T.c.is_completed == sa.false(),
        )
        .order_by(T.c.sequence.desc(), T.c.id.desc())
    )


_NO_APPROVAL = sa.or_(T.c.approval_status.is_(None), T.c.approval_status == "")
_TOOL_NAME = sa.bindparam("tool_name", type_=sa.Text())
_PENDING_CALLS = Query(ConversationEvent, _pending_calls())
_PENDING_CALL = Query(
    ConversationEvent, _pending_calls().where(T.c.tool_name == _TOOL_NAME).limit(1)
)
_UNCORRELATED_CALL = Query(
    ConversationEvent,
    _pending_calls().where(T.c.tool_name == _TOOL_NAME, _NO_APPROVAL).limit(1),
)
_CALL_BY_TOOL_ID = Query(
    ConversationEvent,
    sa.select(T)
    .where(T.c.tool_id == sa.bindparam("tool_id", type_=sa.Text()), T.c.event_type == _TOOL_CALL)
    .order_by(T.c.id)
    .limit(1),
)
_MARK_COMPLETED = Statement(
    sa.update(T)
    .where(
        T.c.tool_id == sa.bindparam("tool_id", type_=sa.Text()),
        T.c.session_id == sa.bindparam("session_id", type_=sa.Text()),
        T.c.event_type == _TOOL_CALL,
    )
    .values(is_completed=sa.true())
)
# One statement: the latest pending call of the tool, if it has no approval yet.
_LATEST_CALL = (
    sa.select(T.c.id)
    .where(
        T.c.session_id == sa.bindparam("session_id", type_=sa.Text()),
        T.c.event_type == _TOOL_CALL,
        T.c.is_completed == sa.false(),
        T.c.tool_name == _TOOL_NAME,
    )
    .order_by(T.c.sequence.desc(), T.c.id.desc())
    .limit(1)
    .scalar_subquery()
)
_APPROVAL_ID = sa.bindparam("approval_id", type_=sa.Text())
_CORRELATE = Statement(
    sa.update(T)
    .where(T.c.id == _LATEST_CALL, _NO_APPROVAL)
    .values(approval_status=ApprovalStatus.PENDING.value, approval_id=_APPROVAL_ID)
)
_LINK_BY_TOOL_ID = Statement(
    sa.update(T)
    .where(
        T.c.session_id == sa.bindparam("session_id", type_=sa.Text()),
        T.c.tool_id == sa.bindparam("tool_id", type_=sa.Text()),
        T.c.event_type == _TOOL_CALL,
        T.c.is_completed == sa.false(),
        _NO_APPROVAL,
    )
    .values(approval_status=ApprovalStatus.PENDING.value, approval_id=_APPROVAL_ID)
)
_STATUS = sa.bindparam("status", type_=sa.Text())
_BY_APPROVAL = T.c.approval_id == sa.bindparam("approval_id", type_=sa.Text())
_SET_APPROVAL_STATUS = Statement(sa.update(T).where(_BY_APPROVAL).values(approval_status=_STATUS))
_RESOLVE = Statement(
    sa.update(T)
    .where(_BY_APPROVAL, T.c.approval_status == ApprovalStatus.PENDING.value)
    .values(approval_status=_STATUS)
)
_COUNT = Statement(sa.select(sa.func.count()).select_from(T))
