"""The hot paths: the repositories' own statements, sent straight to the driver.

Through SQLAlchemy's async adapter a statement costs several hand-offs to the driver (on
SQLite, to aiosqlite's worker thread) plus result processing per value (FINDINGS.md): that,
not the database, is where an append or a conversation read spends its time. For the few
calls a daemon makes thousands of times, the repositories compile their SQLAlchemy statement
once per backend, run it on a pooled connection's own driver connection (aiosqlite or
asyncpg), and build the returned models straight from the rows. The statement is the same
one the portable path executes, so there is one definition of what each call does.
"""

from __future__ import annotations

import operator
import sqlite3
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as postgresql_dialects
from sqlalchemy.dialects import sqlite as sqlite_dialects
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import Executable

__all__ = ["DRIVER_INTEGRITY_ERRORS", "Driver", "DriverStatement", "bind"]


def _integrity_errors() -> tuple[type[Exception], ...]:
    errors: list[type[Exception]] = [sqlite3.IntegrityError]
    try:  # asyncpg is an optional dependency (agentstore[postgres])
        from asyncpg.exceptions import IntegrityConstraintViolationError
    except ImportError:
        pass
    else:
        errors.append(IntegrityConstraintViolationError)
    return tuple(errors)


DRIVER_INTEGRITY_ERRORS = _integrity_errors()
"""What the drivers raise for a broken constraint (a missing session, a duplicate key)."""

_DIALECTS: dict[str, Dialect] = {
    "sqlite": sqlite_dialects.dialect(paramstyle="qmark"),
    "postgresql": postgresql_dialects.asyncpg.dialect(),  # type: ignore[no-untyped-call]
}


@dataclass(frozen=True, slots=True)
class Driver:
    """A driver connection lent for one call: ``conn`` is aiosqlite's or asyncpg's."""

    dialect: str
    conn: Any


class _Compiled:
    """One statement compiled for one backend, with its named parameters in order."""

    __slots__ = ("_pick", "constants", "names", "sql")

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        self.sql: str = str(compiled)
        if "POSTCOMPILE" in self.sql:  # an IN list: its SQL would depend on each call's values
            raise ValueError("a statement run on the driver cannot hold an IN (...) list")
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        # Parameters the statement carries itself (literals such as the 1 in MAX(...) + 1).
        self.constants: dict[str, Any] = {
            name: bp.value for name, bp in compiled.binds.items() if not bp.required
        }
        pick = operator.itemgetter(*self.names) if self.names else (lambda _: ())
        # itemgetter of one name returns the bare value, of several a tuple.
        self._pick = (lambda values: (pick(values),)) if len(self.names) == 1 else pick

    def args(self, values: dict[str, Any]) -> tuple[Any, ...]:
        """The positional arguments for ``values`` (already in the driver's types)."""
        if self.constants:
            values = {**self.constants, **values}
        return tuple(self._pick(values))


class DriverStatement:
    """A statement compiled, once per backend on first use, for its driver."""

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def on(self, dialect: str) -> _Compiled:
        """The statement's SQL and argument order for ``dialect``."""
        compiled = self._compiled.get(dialect)
        if compiled is None:
            statement = cast(ClauseElement, self.statement)
            compiled = self._compiled[dialect] = _Compiled(statement, _DIALECTS[dialect])
        return compiled

    async def fetch(self, driver: Driver, values: dict[str, Any]) -> list[Any]:
        """Every row, as the driver returns it."""
        compiled = self.on(driver.dialect)
        if driver.dialect == "sqlite":
            return list(await driver.conn.execute_fetchall(compiled.sql, compiled.args(values)))
        return list(await driver.conn.fetch(compiled.sql, *compiled.args(values)))


def bind(name: str, column: sa.Column[Any]) -> sa.BindParameter[Any]:
    """A named parameter typed like ``column`` (so the portable path converts values)."""
    return sa.bindparam(name, type_=column.type)
