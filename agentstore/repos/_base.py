"""What every repository builds on: the database it runs its units of work on.

A repository checks its arguments, then hands the database a unit of work — an
``async def unit(conn)`` over SQLAlchemy statements defined once at module level
(:mod:`agentstore.db`). It never commits: the database decides what the unit runs in. The
store runs each call as one short transaction (reads on their own connections, writes on
the writer); a :class:`~agentstore.store.Transaction` runs every call in its one open
transaction, each in a savepoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from agentstore.db import Conn, Query, Unit
from agentstore.db.groups import AppendRequest, Outcome
from agentstore.models import Base

__all__ = ["Database", "all_of", "first_of"]

T = TypeVar("T")
M = TypeVar("M", bound=Base)


class Database(Protocol):
    """Where repositories run their units of work."""

    dialect: str

    async def read(self, unit: Unit[T], *, snapshot: bool = False) -> T:
        """Run a read unit (``snapshot``: its statements see one consistent state)."""
        ...

    async def write(self, unit: Unit[T], *, lock_keys: Sequence[str] = ()) -> T:
        """Run a write unit in one transaction, holding the named Claude sessions' locks."""
        ...

    async def append(self, request: AppendRequest) -> Outcome:
        """Append a request's events (group-committed by the store)."""
        ...


async def all_of(db: Database, query: Query[M], values: Mapping[str, Any]) -> list[M]:
    """Every row of ``query`` as a detached model, in the query's order."""

    async def unit(conn: Conn) -> list[M]:
        return await conn.models(query, values)

    return await db.read(unit)


async def first_of(db: Database, query: Query[M], values: Mapping[str, Any]) -> M | None:
    """The first row of ``query`` (which should carry its own LIMIT 1), or None."""
    found = await all_of(db, query, values)
    return found[0] if found else None
