"""Raw JSON events from the agent, kept for debugging; append-only."""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from agentstore.errors import InvalidValueError, NotFoundError
from agentstore.models import RawEvent
from agentstore.repos._base import Database, build_all
from agentstore.types import utcnow
from agentstore.validation import require_id

__all__ = ["RawEventRepo"]

T = cast(sa.Table, RawEvent.__table__)


class RawEventRepo:
    """Append and read raw events."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def store(self, session_id: str, event_json: str) -> RawEvent:
        """Append one raw event (stored as the given text) and return it with its id.

        Raises :class:`NotFoundError` if the session does not exist.
        """
        require_id(session_id, "session_id")
        if not isinstance(event_json, str):
            raise InvalidValueError(f"event_json must be str, got {type(event_json).__name__}")
        event = RawEvent(session_id=session_id, event_json=event_json, created_at=utcnow())
        async with self._db.writing() as conn:
            try:
                result = await conn.execute(
                    sa.insert(T).returning(T.c.id),
                    {
                        "session_id": session_id,
                        "event_json": event_json,
                        "created_at": event.created_at,
                    },
                )
            except IntegrityError as exc:
                raise NotFoundError("session", session_id) from exc
            event.id = int(result.scalar_one())
        return event

    async def list(self, session_id: str) -> list[RawEvent]:
        """The session's raw events in the order they were stored; ``[]`` if none."""
        stmt = sa.select(T).where(T.c.session_id == session_id).order_by(T.c.id)
        async with self._db.reading() as conn:
            return build_all(RawEvent, await conn.execute(stmt))
