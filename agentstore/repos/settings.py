"""The single user-settings row."""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa

from agentstore.errors import InvalidValueError
from agentstore.models import UserSettings
from agentstore.repos._base import Database, build
from agentstore.types import utcnow

__all__ = ["SettingsRepo"]

T = cast(sa.Table, UserSettings.__table__)


class SettingsRepo:
    """Read and update the user settings (row ``id = 1``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self) -> UserSettings:
        """The settings; the defaults (not stored) if the row is missing, as in the seed."""
        async with self._db.reading() as conn:
            row = (await conn.execute(sa.select(T).where(T.c.id == 1))).first()
        if row is None:
            return UserSettings()
        return build(UserSettings, row._mapping)

    async def update(self, settings: UserSettings) -> UserSettings:
        """Store ``advanced_providers`` and ``opt_in_telemetry``; ``updated_at`` becomes now.

        Returns the stored settings. Unlike the seed, a missing row is created rather than
        the update silently doing nothing.
        """
        if not isinstance(settings.advanced_providers, bool):
            raise InvalidValueError("UserSettings.advanced_providers must be bool")
        telemetry = settings.opt_in_telemetry
        if telemetry is not None and not isinstance(telemetry, bool):
            raise InvalidValueError("UserSettings.opt_in_telemetry must be bool or None")
        now = utcnow()
        values = {
            "advanced_providers": settings.advanced_providers,
            "opt_in_telemetry": settings.opt_in_telemetry,
            "updated_at": now,
        }
        async with self._db.writing() as conn:
            result = await conn.execute(sa.update(T).where(T.c.id == 1).values(**values))
            if result.rowcount == 0:
                await conn.execute(sa.insert(T).values(id=1, created_at=now, **values))
            row = (await conn.execute(sa.select(T).where(T.c.id == 1))).one()
        return build(UserSettings, row._mapping)
