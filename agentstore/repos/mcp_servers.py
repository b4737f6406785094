"""MCP servers configured for a session."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from agentstore.errors import InvalidValueError, NotFoundError
from agentstore.models import MCPServer
from agentstore.repos._base import Database, build_all
from agentstore.validation import check_row, require_id

__all__ = ["MCPServerRepo"]

T = cast(sa.Table, MCPServer.__table__)


class MCPServerRepo:
    """Store and read a session's MCP servers."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def store(self, session_id: str, servers: Sequence[MCPServer]) -> list[MCPServer]:
        """Append ``servers`` to the session (existing rows stay), in one transaction.

        Each server's ``session_id`` is set to ``session_id`` and its ``id`` to the new row's.
        Raises :class:`NotFoundError` if the session does not exist.
        """
        require_id(session_id, "session_id")
        batch = list(servers)
        rows = []
        for server in batch:
            if not isinstance(server, MCPServer):
                raise InvalidValueError(f"expected MCPServer, got {type(server).__name__}")
            server.session_id = session_id
            values = check_row(server)
            del values["id"]
            rows.append(values)
        if not batch:
            return batch
        async with self._db.writing() as conn:
            try:
                result = await conn.execute(
                    sa.insert(T).returning(T.c.id, sort_by_parameter_order=True),
                    rows,
                )
            except IntegrityError as exc:
                raise NotFoundError("session", session_id) from exc
            ids = [int(r[0]) for r in result]
        for server, new_id in zip(batch, ids, strict=True):
            server.id = new_id
        return batch

    async def get(self, session_id: str) -> list[MCPServer]:
        """The session's servers in the order they were stored; ``[]`` if none."""
        stmt = sa.select(T).where(T.c.session_id == session_id).order_by(T.c.id)
        async with self._db.reading() as conn:
            return build_all(MCPServer, await conn.execute(stmt))
