"""The errors agentstore raises on purpose.

Everything here derives from :class:`StoreError`. Database driver errors that the store can
explain (a duplicate key, a missing parent row, a locked or foreign file) are translated into
these classes in one place (:func:`agentstore.store._translate`) and chained with ``from``.
Messages never contain secrets: URLs are rendered with the password hidden and
``proxy_api_key`` is never part of a message.
"""

from __future__ import annotations

__all__ = [
    "AlreadyDecidedError",
    "DatabaseError",
    "DuplicateError",
    "InvalidStatusError",
    "InvalidValueError",
    "LegacyDatabaseError",
    "MigrationRequiredError",
    "NotADatabaseError",
    "NotFoundError",
    "SchemaTooNewError",
    "StoreError",
]


class StoreError(Exception):
    """Base of every error the store raises on purpose."""


class NotFoundError(StoreError, LookupError):
    """The row that an operation needs does not exist."""

    def __init__(self, kind: str, id: object) -> None:
        self.kind = kind
        self.id = id
        super().__init__(f"{kind} not found: {id!r}")


class DuplicateError(StoreError):
    """A row with the same key already exists; the stored row is kept unchanged."""

    def __init__(self, kind: str, id: object) -> None:
        self.kind = kind
        self.id = id
        super().__init__(f"{kind} already exists: {id!r}")


class AlreadyDecidedError(StoreError):
    """An approval was already approved or denied; the first decision stands."""

    def __init__(self, id: str, status: str) -> None:
        self.id = id
        self.status = status
        super().__init__(f"approval {id!r} was already decided: {status}")


class InvalidValueError(StoreError, ValueError):
    """Bad input (wrong type, missing required field, naive datetime); nothing was written."""


class InvalidStatusError(InvalidValueError):
    """An unknown session status, approval status or event type; nothing was written."""


class DatabaseError(StoreError):
    """The database cannot be used by this version of agentstore."""


class NotADatabaseError(DatabaseError):
    """The file exists but is not an SQLite database; it was left untouched."""


class SchemaTooNewError(DatabaseError):
    """The database was migrated by a newer agentstore (or hld) than this code knows."""


class MigrationRequiredError(DatabaseError):
    """``migrate=False`` was given but the schema is not at the newest revision."""


class LegacyDatabaseError(MigrationRequiredError):
    """An hld database that must be adopted first (``migrate=False`` was given)."""
