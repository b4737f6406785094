"""Driver errors translated into agentstore's errors, in one place, by error code.

SQLite is read by ``sqlite_errorname`` (``SQLITE_CONSTRAINT_FOREIGNKEY``, ``SQLITE_BUSY``,
``SQLITE_CORRUPT``…), asyncpg by its exception classes and SQLSTATE, never by message text.
Messages carry no bound values: a refused row's values (a ``proxy_api_key``, say) never
reach an error.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from agentstore.errors import (
    ConnectionLostError,
    ConstraintError,
    CorruptDatabaseError,
    DatabaseBusyError,
    DatabaseError,
    NotADatabaseError,
    ReadOnlyDatabaseError,
    StoreError,
)

__all__ = ["is_disconnect", "translate"]

_SQLITE_CONSTRAINTS = {
    "SQLITE_CONSTRAINT_UNIQUE": "unique",
    "SQLITE_CONSTRAINT_PRIMARYKEY": "primary_key",
    "SQLITE_CONSTRAINT_FOREIGNKEY": "foreign_key",
    "SQLITE_CONSTRAINT_CHECK": "check",
    "SQLITE_CONSTRAINT_NOTNULL": "not_null",
}

_PG_CONSTRAINTS = {
    "23505": "unique",
    "23503": "foreign_key",
    "23514": "check",
    "23502": "not_null",
}


def _asyncpg() -> Any:
    try:  # asyncpg is an optional dependency (agentstore[postgres])
        import asyncpg
    except ImportError:  # pragma: no cover - only without the extra
        return None
    return asyncpg


def is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection to the server is gone (not the statement's fault)."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OSError):
        return True
    asyncpg = _asyncpg()
    if asyncpg is None:
        return False
    if isinstance(exc, asyncpg.exceptions.ConnectionDoesNotExistError | asyncpg.InterfaceError):
        return True
    sqlstate = getattr(exc, "sqlstate", None) or ""
    # Class 08: connection exceptions; 57P01-57P03: the server is shutting down or restarting.
    return sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03")


def translate(exc: BaseException, where: str = "the database") -> StoreError:
    """The agentstore error for a driver error (raise it ``from exc``)."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, sqlite3.Error):
        return _translate_sqlite(exc, where)
    if is_disconnect(exc):
        return ConnectionLostError(
            f"the connection to {where} was lost ({type(exc).__name__}); "
            "the call was not completed, or its outcome is unknown if it was committing"
        )
    asyncpg = _asyncpg()
    if asyncpg is not None and isinstance(exc, asyncpg.PostgresError):
        sqlstate = exc.sqlstate or ""
        if sqlstate in _PG_CONSTRAINTS:
            return ConstraintError(_PG_CONSTRAINTS[sqlstate], getattr(exc, "constraint_name", None))
        # The message only; the detail may quote a refused row's values.
        message = exc.args[0] if exc.args else type(exc).__name__
        return DatabaseError(f"PostgreSQL refused the call ({sqlstate}): {message}")
    return DatabaseError(f"{where} failed: {type(exc).__name__}")


def _translate_sqlite(exc: sqlite3.Error, where: str) -> StoreError:
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name in _SQLITE_CONSTRAINTS:
        return ConstraintError(_SQLITE_CONSTRAINTS[name])
    if name.startswith("SQLITE_CONSTRAINT"):
        return ConstraintError("check")
    if name.startswith("SQLITE_BUSY") or name.startswith("SQLITE_LOCKED"):
        return DatabaseBusyError(
            f"{where} is locked: another connection kept its write lock for longer than the "
            "store waits (30 s); nothing was written"
        )
    if name.startswith("SQLITE_READONLY") or name == "SQLITE_PERM":
        return ReadOnlyDatabaseError(f"{where} cannot be written by this process: {exc}")
    if name == "SQLITE_NOTADB":
        return NotADatabaseError(f"{where} is not an SQLite database; it was left untouched")
    if name.startswith("SQLITE_CORRUPT"):
        return CorruptDatabaseError(
            f"{where} is damaged ({exc}); nothing was written. Restore it from a backup, "
            "or try `sqlite3 FILE .recover`"
        )
    if name == "SQLITE_FULL":
        return DatabaseError(f"{where}: the disk is full; nothing was written")
    if name.startswith("SQLITE_CANTOPEN"):
        return DatabaseError(f"{where} cannot be opened: {exc}")
    if name.startswith("SQLITE_IOERR"):
        return DatabaseError(f"{where}: an I/O error occurred ({name}); the call was rolled back")
    return DatabaseError(f"{where}: {type(exc).__name__}: {exc}")
