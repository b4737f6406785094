"""Adopting an existing hld database in place (SPEC §6)."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from agentstore.errors import LegacyDatabaseError
from agentstore.migrations import DatabaseState


def adopt_connection(connection: Connection, state: DatabaseState, *, backup: bool = True) -> None:
    """Adopt the hld database behind ``connection``."""
    raise LegacyDatabaseError("adopting hld databases is not implemented yet")
