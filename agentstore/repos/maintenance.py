"""Looking after the store as a whole: how much it holds (and, later, pruning it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from agentstore.db import Conn, Statement
from agentstore.models import Base
from agentstore.repos._base import Database

__all__ = ["TABLES", "MaintenanceRepo", "StoreStats"]

TABLES: tuple[str, ...] = (
    "sessions",
    "conversation_events",
    "approvals",
    "mcp_servers",
    "raw_events",
    "file_snapshots",
    "user_settings",
    "schema_version",
)
"""The store's tables (hld's), in the order reports list them."""


@dataclass(frozen=True)
class StoreStats:
    """Rows per table and, on SQLite, the size of the file (and of its write-ahead log)."""

    rows: dict[str, int] = field(default_factory=dict)
    file_bytes: int | None = None
    wal_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"rows": dict(self.rows), "file_bytes": self.file_bytes, "wal_bytes": self.wal_bytes}


def _count_all() -> Statement:
    tables = [Base.metadata.tables[name] for name in TABLES]
    counts = [
        sa.select(sa.literal(table.name).label("name"), sa.func.count().label("rows")).select_from(
            table
        )
        for table in tables
    ]
    return Statement(sa.union_all(*counts))


_COUNT_ALL = _count_all()


class MaintenanceRepo:
    """Whole-store operations."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def prune(
        self,
        *,
        raw_events_before: datetime | None = None,
        snapshots_before: datetime | None = None,
        archived_sessions_before: datetime | None = None,
        dry_run: bool = False,
    ) -> dict[str, int]:
        """Delete what is older than the given instants, in one transaction (SPEC §10)."""
        raise NotImplementedError

    async def row_counts(self) -> dict[str, int]:
        """Rows per table, all counted in one snapshot."""

        async def unit(conn: Conn) -> dict[str, int]:
            return {str(name): int(rows) for name, rows in await conn.rows(_COUNT_ALL)}

        counts = await self._db.read(unit, snapshot=True)
        return {name: counts.get(name, 0) for name in TABLES}
