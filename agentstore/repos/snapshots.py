"""File snapshots: a file's content as the agent read it."""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa

from agentstore.db import Conn, Query, Statement, bind
from agentstore.errors import ConstraintError, InvalidValueError, NotFoundError
from agentstore.models import FileSnapshot
from agentstore.repos._base import Database, all_of
from agentstore.types import instant
from agentstore.validation import check_row, require_id, require_str

__all__ = ["SnapshotRepo"]

T = cast(sa.Table, FileSnapshot.__table__)


class SnapshotRepo:
    """Store and read file snapshots."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, snapshot: FileSnapshot) -> FileSnapshot:
        """Insert ``snapshot``; sets its ``id``.

        Raises :class:`NotFoundError` if the session does not exist.
        """
        if not isinstance(snapshot, FileSnapshot):
            raise InvalidValueError(f"expected a FileSnapshot, got {type(snapshot).__name__}")
        values = check_row(snapshot)
        require_id(values["session_id"], "FileSnapshot.session_id")
        del values["id"]

        async def unit(conn: Conn) -> int:
            try:
                return int((await conn.rows(_INSERT, values))[0][0])
            except ConstraintError as exc:
                if exc.kind == "foreign_key":
                    raise NotFoundError("session", snapshot.session_id) from exc
                raise

        snapshot.__dict__["id"] = await self._db.write(unit)
        return snapshot

    async def list(self, session_id: str) -> list[FileSnapshot]:
        """The session's snapshots, newest first; ``[]`` if none."""
        return await all_of(
            self._db, _OF_SESSION, {"session_id": require_str(session_id, "session_id")}
        )


_INSERT = Statement(
    sa.insert(T)
    .values({c.key: bind(c.key, c) for c in T.columns if c.key != "id"})
    .returning(T.c.id)
)
_OF_SESSION = Query(
    FileSnapshot,
    sa.select(T)
    .where(T.c.session_id == sa.bindparam("session_id", type_=sa.Text()))
    .order_by(instant(T.c.created_at).desc(), T.c.id.desc()),
)
