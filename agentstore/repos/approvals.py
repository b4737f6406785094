"""Approvals: one human decision on a tool call, made at most once."""

from __future__ import annotations

from typing import Any, cast

import sqlalchemy as sa

from agentstore.db import Conn, Query, Statement, bind
from agentstore.errors import (
    AlreadyDecidedError,
    ConstraintError,
    DuplicateError,
    InvalidStatusError,
    InvalidValueError,
    NotFoundError,
)
from agentstore.models import Approval, ApprovalStatus
from agentstore.repos._base import Database, all_of, first_of
from agentstore.types import instant, utcnow
from agentstore.validation import check_enum, check_row, check_text, require_id, require_str

__all__ = ["ApprovalRepo"]

T = cast(sa.Table, Approval.__table__)
_STORABLE = (ApprovalStatus.PENDING, ApprovalStatus.APPROVED, ApprovalStatus.DENIED)
_DECISIONS = (ApprovalStatus.APPROVED, ApprovalStatus.DENIED)


def _status(value: object, allowed: tuple[ApprovalStatus, ...]) -> ApprovalStatus:
    status: ApprovalStatus = check_enum(ApprovalStatus, value, "approval status")
    if status not in allowed:
        names = ", ".join(s.value for s in allowed)
        raise InvalidStatusError(
            f"approval status {status.value!r} is not allowed here; use {names}"
        )
    return status


class ApprovalRepo:
    """Create approvals and decide them with one atomic compare-and-set."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, approval: Approval) -> Approval:
        """Insert ``approval`` and return it.

        Raises :class:`InvalidStatusError` for a status other than pending, approved or
        denied, :class:`DuplicateError` if the id exists (the stored one is kept) and
        :class:`NotFoundError` if its session does not exist.
        """
        if not isinstance(approval, Approval):
            raise InvalidValueError(f"expected an Approval, got {type(approval).__name__}")
        values = check_row(approval)
        require_id(values["id"], "Approval.id")
        require_id(values["session_id"], "Approval.session_id")
        _status(values["status"], _STORABLE)

        async def unit(conn: Conn) -> None:
            try:
                await conn.execute(_INSERT, values)
            except ConstraintError as exc:
                if exc.kind == "foreign_key":
                    raise NotFoundError("session", approval.session_id) from exc
                if exc.kind in ("unique", "primary_key"):
                    raise DuplicateError("approval", approval.id) from exc
                raise

        await self._db.write(unit)
        return approval

    async def get(self, approval_id: str) -> Approval:
        """The approval with this id; raises :class:`NotFoundError` if there is none."""
        found = await first_of(self._db, _BY_ID, {"id": require_str(approval_id, "approval_id")})
        if found is None:
            raise NotFoundError("approval", approval_id)
        return found

    async def pending(self, session_id: str | None) -> list[Approval]:
        """The session's pending approvals (every session's with None), oldest first; ``[]``
        if none."""
        if session_id is None:
            return await all_of(self._db, _ALL_PENDING, {})
        values = {"session_id": require_str(session_id, "session_id")}
        return await all_of(self._db, _PENDING, values)

    async def decide(self, approval_id: str, status: str, comment: str = "") -> Approval:
        """Approve or deny a pending approval, in one atomic statement; returns it decided.

        Of concurrent decisions exactly one wins; the others raise
        :class:`AlreadyDecidedError`. Raises :class:`NotFoundError` if there is no such
        approval and :class:`InvalidStatusError` unless ``status`` is approved or denied.
        """
        decision = _status(status, _DECISIONS)
        approval_id = require_str(approval_id, "approval_id")
        if not isinstance(comment, str):
            raise InvalidValueError(f"comment must be a string, got {type(comment).__name__}")
        values = {
            "id": approval_id,
            "status": decision,
            "comment": check_text(comment, "comment"),
            "responded_at": utcnow(),
        }

        async def unit(conn: Conn) -> Approval | str | None:
            decided: list[Approval] = await conn.models(_DECIDE, values)
            if decided:
                return decided[0]
            current = await conn.rows(_STATUS_OF, values)
            return str(current[0][0]) if current else None

        outcome = await self._db.write(unit)
        if outcome is None:
            raise NotFoundError("approval", approval_id)
        if isinstance(outcome, str):
            raise AlreadyDecidedError(approval_id, outcome)
        return outcome

    async def count(self) -> int:
        """How many approvals are stored."""

        async def unit(conn: Conn) -> int:
            return int((await conn.rows(_COUNT))[0][0])

        return await self._db.read(unit)


# --- statements -----------------------------------------------------------------------------

_INSERT = Statement(sa.insert(T).values({c.key: bind(c.key, c) for c in T.columns}))
_ID = sa.bindparam("id", type_=sa.Text())
_BY_ID = Query(Approval, sa.select(T).where(T.c.id == _ID).limit(1))
_PENDING = Query(
    Approval,
    sa.select(T)
    .where(
        T.c.session_id == sa.bindparam("session_id", type_=sa.Text()),
        T.c.status == ApprovalStatus.PENDING.value,
    )
    .order_by(instant(T.c.created_at).asc(), T.c.id.asc()),
)
_ALL_PENDING = Query(
    Approval,
    sa.select(T)
    .where(T.c.status == ApprovalStatus.PENDING.value)
    .order_by(instant(T.c.created_at).asc(), T.c.id.asc()),
)
# The compare-and-set: only a pending approval is decided, and it is read back at once.
_DECIDE: Query[Any] = Query(
    Approval,
    sa.update(T)
    .where(T.c.id == _ID, T.c.status == ApprovalStatus.PENDING.value)
    .values(
        status=bind("status", T.c.status),
        comment=bind("comment", T.c.comment),
        responded_at=bind("responded_at", T.c.responded_at),
    ),
)
_STATUS_OF = Statement(sa.select(T.c.status).where(T.c.id == _ID))
_COUNT = Statement(sa.select(sa.func.count()).select_from(T))
