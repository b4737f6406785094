"""Conversation events: messages, tool calls and results, numbered per Claude session."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import cache
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from agentstore.errors import InvalidValueError, NotFoundError
from agentstore.models import ApprovalStatus, ConversationEvent, EventType, Session
from agentstore.repos._appends import (
    APPEND,
    APPEND_DRIVER,
    INTEGRITY_ERRORS,
    add_many_postgresql,
    add_many_sqlite,
    append_postgresql,
    check_event,
    encode_event,
    last_sequences,
    lock_sequence,
    number,
    to_driver,
    translate,
)
from agentstore.repos._base import Database, ModelQuery, build, build_all
from agentstore.repos._driver import DRIVER_INTEGRITY_ERRORS, Driver, DriverStatement
from agentstore.repos._errors import integrity_kind
from agentstore.validation import check_enum, require_id

__all__ = ["ConversationRepo"]

T = cast(sa.Table, ConversationEvent.__table__)
S = cast(sa.Table, Session.__table__)
_TOOL_CALL = EventType.TOOL_CALL.value


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
        values = check_event(event)
        lease = self._db.driver()
        if lease is not None:
            async with lease as driver:
                append = APPEND_DRIVER.on(driver.dialect)
                args = append.args(to_driver(values, driver.dialect))
                try:
                    if driver.dialect == "sqlite":
                        (new_id, sequence), *_ = await driver.conn.execute_fetchall(
                            append.sql, args
                        )
                    else:
                        new_id, sequence = await append_postgresql(
                            driver.conn, append.sql, args, event.claude_session_id
                        )
                except DRIVER_INTEGRITY_ERRORS as exc:
                    raise translate(exc, event) from exc
        else:
            async with self._db.writing() as conn:
                await lock_sequence(conn, [event.claude_session_id])
                try:
                    row = (await conn.execute(APPEND, values)).one()
                except IntegrityError as exc:
                    raise translate(exc, event) from exc
            new_id, sequence = row
        event.sequence = int(sequence)
        event.id = int(new_id)
        return event

    async def add_many(self, events: Sequence[ConversationEvent]) -> list[ConversationEvent]:
        """Append a batch in one transaction, with contiguous sequences per Claude session.

        Sets ``sequence`` and ``id`` on each event; all or nothing.
        """
        batch = list(events)
        lease = self._db.driver()
        on_sqlite_driver = lease is not None and self._db.dialect_name == "sqlite"
        # Every event is checked before anything is written.
        prepared: list[Any] = [
            encode_event(event) if on_sqlite_driver else check_event(event) for event in batch
        ]
        if not batch:
            return batch
        try:
            if lease is None:
                await self._add_many_portable(batch, prepared)
            else:
                async with lease as driver:
                    if on_sqlite_driver:
                        await add_many_sqlite(driver.conn, batch, prepared)
                    else:
                        await add_many_postgresql(driver.conn, batch, prepared)
        except INTEGRITY_ERRORS as exc:
            raise await self._translate_batch(exc, batch) from exc
        return batch

    async def _add_many_portable(
        self, batch: list[ConversationEvent], checked: list[dict[str, Any]]
    ) -> None:
        """Through SQLAlchemy, in the caller's transaction (``store.transaction()``)."""
        keys = [values["claude_session_id"] for values in checked]
        async with self._db.writing() as conn:
            await lock_sequence(conn, keys)
            last = await last_sequences(conn, list(dict.fromkeys(keys)))
            for values, sequence in zip(checked, number(keys, last), strict=True):
                values["sequence"] = sequence
            result = await conn.execute(
                sa.insert(T).returning(T.c.id, sort_by_parameter_order=True), checked
            )
            ids = [int(r[0]) for r in result]
        for event, values, new_id in zip(batch, checked, ids, strict=True):
            event.sequence = values["sequence"]
            event.id = new_id

    async def _translate_batch(
        self, exc: Exception, batch: Sequence[ConversationEvent]
    ) -> Exception:
        """The store error for a failed batch, naming the event whose session is missing.

        Runs after the failed unit of work was rolled back, so it costs nothing on success.
        """
        if integrity_kind(exc) != "foreign_key":
            return translate(exc, batch[0])
        wanted = list(dict.fromkeys(e.session_id for e in batch))
        async with self._db.reading() as conn:
            found = set((await conn.execute(sa.select(S.c.id).where(S.c.id.in_(wanted)))).scalars())
        missing = next((e for e in batch if e.session_id not in found), batch[0])
        return translate(exc, missing)

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
        if limit is not None and limit < 0:
            raise InvalidValueError(f"limit must be >= 0, got {limit}")
        if not isinstance(claude_session_id, str):
            raise InvalidValueError(
                f"claude_session_id must be a str, got {type(claude_session_id).__name__}"
            )
        claude_session_id = str.__str__(claude_session_id)  # a plain str, as stored
        query = _conversation_query(
            after_sequence is not None, before_sequence is not None, limit is not None
        )
        values = {
            "claude_session_id": claude_session_id,
            "after": after_sequence,
            "before": before_sequence,
            "limit": limit,
        }
        events = await query.all(self._db, values)
        if limit is not None and after_sequence is None:
            events.reverse()  # the newest ``limit`` were read newest first
        return events

    async def get_session_conversation(self, session_id: str) -> list[ConversationEvent]:
        """The whole conversation of a session and its ancestors, ancestors' events first.

        Walks the ``parent_session_id`` chain (a cycle or a missing ancestor ends the walk),
        then reads every event of the chain's Claude sessions in one statement, in one
        snapshot. Raises :class:`NotFoundError` if the session does not exist; ``[]`` if
        there are no events.
        """
        lease = self._db.driver()
        if lease is not None:
            async with lease as driver:
                sqlite = driver.dialect == "sqlite"
                conn = driver.conn
                parent = _PARENT.on(driver.dialect)

                async def parent_of(current: str) -> tuple[str, str] | None:
                    args = parent.args({"id": current})
                    if sqlite:
                        rows = await conn.execute_fetchall(parent.sql, args)
                    else:
                        rows = await conn.fetch(parent.sql, *args)
                    return (rows[0][0], rows[0][1]) if rows else None

                # One snapshot for the walk and the read, as on the portable path.
                if sqlite:
                    try:
                        await conn.execute_fetchall("BEGIN")
                        chain = await _walk_chain(session_id, parent_of)
                        rows = await _chain_rows(driver, chain)
                    finally:
                        if conn.in_transaction:
                            await conn.execute_fetchall("COMMIT")
                else:
                    async with conn.transaction(isolation="repeatable_read", readonly=True):
                        chain = await _walk_chain(session_id, parent_of)
                        rows = await _chain_rows(driver, chain)
            # Built once the connection is given back, as ModelQuery.all does.
            if not chain:
                return []
            return _chain_query(len(chain)).build(driver.dialect, rows, _chain_values(chain))
        async with self._db.reading() as conn:

            async def parent_of_sa(current: str) -> tuple[str, str] | None:
                row = (await conn.execute(_PARENT.statement, {"id": current})).first()
                return (row[0], row[1]) if row is not None else None

            chain = await _walk_chain(session_id, parent_of_sa)
            if not chain:
                return []
            query = _chain_query(len(chain))
            return build_all(
                ConversationEvent, await conn.execute(query.statement, _chain_values(chain))
            )

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


@cache
def _conversation_query(after: bool, before: bool, limit: bool) -> ModelQuery[ConversationEvent]:
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
    return ModelQuery(ConversationEvent, stmt, known=("claude_session_id",))


_PARENT = DriverStatement(
    sa.select(
        sa.func.coalesce(S.c.claude_session_id, ""), sa.func.coalesce(S.c.parent_session_id, "")
    ).where(S.c.id == sa.bindparam("id", type_=sa.Text()))
)


async def _walk_chain(
    session_id: str, parent_of: Callable[[str], Awaitable[tuple[str, str] | None]]
) -> list[str]:
    """The Claude session ids of the session's resume chain, root first, each once.

    A missing first session raises NotFoundError; a missing ancestor or a cycle ends the walk.
    A Claude id met twice keeps the place of its oldest occurrence, as in hld.
    """
    chain: list[str] = []
    seen: set[str] = set()
    current = session_id
    while current and current not in seen:
        seen.add(current)
        found = await parent_of(current)
        if found is None:
            if current == session_id:
                raise NotFoundError("session", session_id)
            break
        claude_id, current = found
        if claude_id:
            if claude_id in chain:
                chain.remove(claude_id)
            chain.insert(0, claude_id)
    return chain


def _chain_values(chain: list[str]) -> dict[str, str]:
    return {f"c{i}": claude_id for i, claude_id in enumerate(chain)}


async def _chain_rows(driver: Driver, chain: list[str]) -> list[Any]:
    if not chain:
        return []
    return await _chain_query(len(chain)).driver.fetch(driver, _chain_values(chain))


@cache
def _chain_query(length: int) -> ModelQuery[ConversationEvent]:
    """The events of ``length`` Claude sessions, in chain order, then by sequence."""
    claude = T.c.claude_session_id
    ids = [sa.bindparam(f"c{i}", type_=sa.Text()) for i in range(length)]
    stmt = (
        sa.select(T)
        .where(sa.or_(*(claude == p for p in ids)))
        .order_by(sa.case(*((claude == p, i) for i, p in enumerate(ids))), T.c.sequence, T.c.id)
    )
    return ModelQuery(ConversationEvent, stmt)
