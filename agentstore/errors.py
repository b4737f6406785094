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
    "ConnectionLostError",
    "ConstraintError",
    "CorruptDatabaseError",
    "DatabaseBusyError",
    "DatabaseError",
    "DuplicateError",
    "InvalidStatusError",
    "InvalidValueError",
    "LegacyDatabaseError",
    "MigrationRequiredError",
    "NotADatabaseError",
    "NotFoundError",
    "ReadOnlyDatabaseError",
    "SchemaTooNewError",
    "StoreClosedError",
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


class StoreClosedError(StoreError):
    """The store was closed; it refuses every call."""

    def __init__(self) -> None:
        super().__init__("store is closed")


class ConstraintError(StoreError):
    """The database refused a row for a constraint the store could not name more precisely.

    ``kind`` is ``unique``, ``primary_key``, ``foreign_key``, ``check`` or ``not_null``;
    ``constraint`` the constraint's name where the backend reports it. Nothing was written.
    """

    def __init__(self, kind: str, constraint: str | None = None) -> None:
        self.kind = kind
        self.constraint = constraint
        named = f" ({constraint})" if constraint else ""
        super().__init__(
            f"the database refused the row: {kind.replace('_', ' ')} constraint{named}"
        )


class DatabaseError(StoreError):
    """The database cannot be used, or failed in a way the store cannot mend."""


class DatabaseBusyError(DatabaseError):
    """Another process held the database's write lock longer than the store waits (30 s)."""


class ReadOnlyDatabaseError(DatabaseError):
    """The database file (or its folder) cannot be written by this process."""


class CorruptDatabaseError(DatabaseError):
    """The file is an SQLite database whose pages are damaged; it was left as it was."""


class ConnectionLostError(DatabaseError):
    """The connection to the database server broke during a call; the call may not have
    completed (it was rolled back unless its commit had been sent)."""


class NotADatabaseError(DatabaseError):
    """The file exists but is not an SQLite database; it was left untouched."""


class SchemaTooNewError(DatabaseError):
    """The database was migrated by a newer agentstore (or hld) than this code knows."""


class MigrationRequiredError(DatabaseError):
    """``migrate=False`` was given but the schema is not at the newest revision."""


class LegacyDatabaseError(MigrationRequiredError):
    """An hld database that must be adopted first (``migrate=False`` was given)."""
