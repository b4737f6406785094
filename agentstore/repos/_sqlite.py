"""The hot paths on SQLite: the repositories' own statements, sent straight to the driver.

Through SQLAlchemy's async adapter a statement costs several hand-offs to aiosqlite's worker
thread, plus result processing per value (FINDINGS.md): on SQLite that, not SQLite, is where
an append or a conversation read spends its time. For the few calls a daemon makes thousands
of times, the repositories therefore compile their SQLAlchemy statement for SQLite once, run
it on the pooled connection's own aiosqlite connection (one hand-off), and build the returned
models straight from the rows. The statement is the same one the portable path executes, so
there is one definition of what each call does.
"""

from __future__ import annotations

import operator
import sqlite3
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

__all__ = ["CompiledSQLite", "IntegrityError", "bind"]

IntegrityError = sqlite3.IntegrityError
_DIALECT = sqlite_dialect.dialect(paramstyle="qmark")


class CompiledSQLite:
    """A statement compiled once for SQLite, with its named parameters in qmark order."""

    __slots__ = ("_pick", "constants", "names", "sql")

    def __init__(self, statement: ClauseElement) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=_DIALECT))
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


def bind(name: str, column: sa.Column[Any]) -> sa.BindParameter[Any]:
    """A named parameter typed like ``column`` (so the portable path converts values)."""
    return sa.bindparam(name, type_=column.type)
