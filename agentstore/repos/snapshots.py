"""File snapshots: a file's content as the agent read it."""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from agentstore.errors import NotFoundError
from agentstore.models import FileSnapshot
from agentstore.repos._base import Database, build_all
from agentstore.types import instant
from agentstore.validation import check_row, require_id

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
        require_id(snapshot.session_id, "FileSnapshot.session_id")
        values = check_row(snapshot)
        del values["id"]
        async with self._db.writing() as conn:
            try:
                result = await conn.execute(sa.insert(T).returning(T.c.id), values)
            except IntegrityError as exc:
                raise NotFoundError("session", snapshot.session_id) from exc
            snapshot.id = int(result.scalar_one())
        return snapshot

    async def list(self, session_id: str) -> list[FileSnapshot]:
        """The session's snapshots, newest first; ``[]`` if none."""
        stmt = (
            sa.select(T)
            .where(T.c.session_id == session_id)
            .order_by(instant(T.c.created_at).desc(), T.c.id.desc())
        )
        async with self._db.reading() as conn:
            return build_all(FileSnapshot, await conn.execute(stmt))
