"""The single user-settings row."""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa

from agentstore.db import Conn, Query, Statement, bind
from agentstore.errors import InvalidValueError
from agentstore.models import UserSettings
from agentstore.repos._base import Database, first_of
from agentstore.types import utcnow

__all__ = ["SettingsRepo"]

T = cast(sa.Table, UserSettings.__table__)


class SettingsRepo:
    """Read and update the user settings (row ``id = 1``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self) -> UserSettings:
        """The settings; the defaults (not stored) if the row is missing, as in the seed."""
        found = await first_of(self._db, _GET, {})
        return found if found is not None else UserSettings()

    async def update(self, settings: UserSettings) -> UserSettings:
        """Store ``advanced_providers`` and ``opt_in_telemetry``; ``updated_at`` becomes now.

        Returns the stored settings. Unlike the seed, a missing row is created rather than
        the update silently doing nothing.
        """
        if not isinstance(settings, UserSettings):
            raise InvalidValueError(f"expected UserSettings, got {type(settings).__name__}")
        if not isinstance(settings.advanced_providers, bool):
            raise InvalidValueError("UserSettings.advanced_providers must be bool")
        telemetry = settings.opt_in_telemetry
        if telemetry is not None and not isinstance(telemetry, bool):
            raise InvalidValueError("UserSettings.opt_in_telemetry must be bool or None")
        values = {
            "advanced_providers": settings.advanced_providers,
            "opt_in_telemetry": telemetry,
            "now": utcnow(),
        }

        async def unit(conn: Conn) -> UserSettings:
            if not await conn.execute(_UPDATE, values):
                await conn.execute(_INSERT, values)
            return (await conn.models(_GET))[0]

        return await self._db.write(unit)


_NOW = bind("now", T.c.updated_at)
_FIELDS = {
    "advanced_providers": bind("advanced_providers", T.c.advanced_providers),
    "opt_in_telemetry": bind("opt_in_telemetry", T.c.opt_in_telemetry),
}
_GET = Query(UserSettings, sa.select(T).where(T.c.id == 1))
_UPDATE = Statement(sa.update(T).where(T.c.id == 1).values(**_FIELDS, updated_at=_NOW))
_INSERT = Statement(sa.insert(T).values(id=1, created_at=_NOW, updated_at=_NOW, **_FIELDS))
