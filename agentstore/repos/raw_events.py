"""Raw JSON events from the agent, kept for debugging; append-only."""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa

from agentstore.db import Conn, Query, Statement, bind
from agentstore.errors import ConstraintError, InvalidValueError, NotFoundError
from agentstore.models import RawEvent
from agentstore.repos._base import Database, all_of
from agentstore.types import utcnow
from agentstore.validation import check_text, require_id, require_str

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
        event = RawEvent(
            session_id=session_id,
            event_json=check_text(event_json, "event_json"),
            created_at=utcnow(),
        )
        values = {
            "session_id": session_id,
            "event_json": event.event_json,
            "created_at": event.created_at,
        }

        async def unit(conn: Conn) -> int:
            try:
                return int((await conn.rows(_INSERT, values))[0][0])
            except ConstraintError as exc:
                if exc.kind == "foreign_key":
                    raise NotFoundError("session", session_id) from exc
                raise

        event.__dict__["id"] = await self._db.write(unit)
        return event

    async def list(self, session_id: str) -> list[RawEvent]:
        """The session's raw events in the order they were stored; ``[]`` if none."""
        return await all_of(
            self._db, _OF_SESSION, {"session_id": require_str(session_id, "session_id")}
        )


_INSERT = Statement(
    sa.insert(T)
    .values({key: bind(key, T.c[key]) for key in ("session_id", "event_json", "created_at")})
    .returning(T.c.id)
)
_OF_SESSION = Query(
    RawEvent,
    sa.select(T)
    .where(T.c.session_id == sa.bindparam("session_id", type_=sa.Text()))
    .order_by(T.c.id),
)
