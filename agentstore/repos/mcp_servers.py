"""MCP servers configured for a session."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import sqlalchemy as sa

from agentstore.db import Conn, Query, Statement, bind
from agentstore.errors import ConstraintError, InvalidValueError, NotFoundError
from agentstore.models import MCPServer
from agentstore.repos._base import Database, all_of
from agentstore.validation import check_row, require_id, require_str

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
        if isinstance(servers, MCPServer | str | bytes) or not isinstance(servers, Sequence):
            raise InvalidValueError(
                f"servers must be a list of MCPServer, got {type(servers).__name__}"
            )
        batch = list(servers)
        rows = []
        for server in batch:
            if not isinstance(server, MCPServer):
                raise InvalidValueError(f"expected MCPServer, got {type(server).__name__}")
            values = check_row(server)
            values["session_id"] = session_id
            del values["id"]
            rows.append(values)
        if not batch:
            return batch

        async def unit(conn: Conn) -> list[int]:
            try:
                return [(await conn.rows(_INSERT, values))[0][0] for values in rows]
            except ConstraintError as exc:
                if exc.kind == "foreign_key":
                    raise NotFoundError("session", session_id) from exc
                raise

        ids = await self._db.write(unit)
        for server, new_id in zip(batch, ids, strict=True):
            server.session_id = session_id
            server.id = int(new_id)
        return batch

    async def get(self, session_id: str) -> list[MCPServer]:
        """The session's servers in the order they were stored; ``[]`` if none."""
        return await all_of(
            self._db, _OF_SESSION, {"session_id": require_str(session_id, "session_id")}
        )


_INSERT = Statement(
    sa.insert(T)
    .values({c.key: bind(c.key, c) for c in T.columns if c.key != "id"})
    .returning(T.c.id)
)
_OF_SESSION = Query(
    MCPServer,
    sa.select(T)
    .where(T.c.session_id == sa.bindparam("session_id", type_=sa.Text()))
    .order_by(T.c.id),
)
