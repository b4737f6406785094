"""Approvals: one human decision on a tool call, made at most once."""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from agentstore.errors import (
    AlreadyDecidedError,
    DuplicateError,
    InvalidStatusError,
    InvalidValueError,
    NotFoundError,
)
from agentstore.models import Approval, ApprovalStatus
from agentstore.repos._base import Database, build, build_all
from agentstore.repos._errors import integrity_kind
from agentstore.types import instant, utcnow
from agentstore.validation import check_enum, check_row, require_id

__all__ = ["ApprovalRepo"]

T = cast(sa.Table, Approval.__table__)
_STORABLE = (ApprovalStatus.PENDING, ApprovalStatus.APPROVED, ApprovalStatus.DENIED)
_DECISIONS = (ApprovalStatus.APPROVED, ApprovalStatus.DENIED)


def _status(value: object, allowed: tuple[ApprovalStatus, ...]) -> str:
    status = check_enum(ApprovalStatus, value, "approval status")
    if status not in allowed:
        names = ", ".join(s.value for s in allowed)
        raise InvalidStatusError(f"approval status {status!r} is not allowed here; use {names}")
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
        require_id(approval.id, "Approval.id")
        require_id(approval.session_id, "Approval.session_id")
        values = check_row(approval)
        values["status"] = approval.status = _status(approval.status, _STORABLE)
        if values["tool_input"] is None and self._db.dialect_name == "postgresql":
            # The column is NOT NULL (hld's schema): store JSON ``null``, not SQL NULL, as
            # SQLite does; it reads back as None on both backends.
            values["tool_input"] = sa.JSON.NULL
        async with self._db.writing() as conn:
            try:
                await conn.execute(sa.insert(T), values)
            except IntegrityError as exc:
                kind = integrity_kind(exc)
                if kind == "foreign_key":
                    raise NotFoundError("session", approval.session_id) from exc
                if kind == "unique":
                    raise DuplicateError("approval", approval.id) from exc
                raise
        return approval

    async def get(self, approval_id: str) -> Approval:
        """The approval with this id; raises :class:`NotFoundError` if there is none."""
        async with self._db.reading() as conn:
            row = (await conn.execute(sa.select(T).where(T.c.id == approval_id))).first()
        if row is None:
            raise NotFoundError("approval", approval_id)
        return build(Approval, row._mapping)

    async def pending(self, session_id: str) -> list[Approval]:
        """The session's pending approvals, oldest first; ``[]`` if none."""
        stmt = (
            sa.select(T)
            .where(T.c.session_id == session_id, T.c.status == ApprovalStatus.PENDING.value)
            .order_by(instant(T.c.created_at).asc(), T.c.id.asc())
        )
        async with self._db.reading() as conn:
            return build_all(Approval, await conn.execute(stmt))

    async def decide(self, approval_id: str, status: str, comment: str = "") -> Approval:
        """Approve or deny a pending approval, in one atomic statement; returns it decided.

        Of concurrent decisions exactly one wins; the others raise
        :class:`AlreadyDecidedError`. Raises :class:`NotFoundError` if there is no such
        approval and :class:`InvalidStatusError` unless ``status`` is approved or denied.
        """
        decision = _status(status, _DECISIONS)
        if not isinstance(comment, str):
            raise InvalidValueError(f"comment must be a string, got {type(comment).__name__}")
        stmt = (
            sa.update(T)
            .where(T.c.id == approval_id, T.c.status == ApprovalStatus.PENDING.value)
            .values(status=decision, comment=comment, responded_at=utcnow())
            .returning(*T.c)
        )
        async with self._db.writing() as conn:
            row = (await conn.execute(stmt)).first()
            if row is None:
                current = (
                    await conn.execute(sa.select(T.c.status).where(T.c.id == approval_id))
                ).scalar()
                if current is None:
                    raise NotFoundError("approval", approval_id)
                raise AlreadyDecidedError(approval_id, str(current))
        return build(Approval, row._mapping)

    async def count(self) -> int:
        """How many approvals are stored."""
        async with self._db.reading() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(T))).scalar_one())
