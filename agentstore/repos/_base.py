"""What every repository builds on: a source of connections, and rows turned into models.

A repository never commits. It asks its :class:`Database` for a unit of work — ``reading()``
for a consistent snapshot, ``writing()`` for a write transaction — and the database decides
what that is: the store opens one short transaction per call; a
:class:`~agentstore.store.Transaction` hands every call its one open connection, so that
several calls commit or roll back together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agentstore.models import Base

M = TypeVar("M", bound=Base)


class Database(Protocol):
    """Where repositories get their connection from."""

    dialect_name: str

    def reading(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection in a read transaction (one snapshot for the whole unit)."""
        ...

    def writing(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection in a write transaction (SQLite: ``BEGIN IMMEDIATE``)."""
        ...

    def sqlite_driver(self) -> AbstractAsyncContextManager[Any] | None:
        """SQLite's own aiosqlite connection for single-statement hot paths, or None."""
        ...


def build(cls: type[M], values: Mapping[Any, Any]) -> M:
    """A detached model instance from column values, without running ``__init__``.

    Every attribute is filled, so reading one never touches the database.
    """
    obj: M = cls._sa_class_manager.new_instance()  # type: ignore[attr-defined]
    obj.__dict__.update(values)
    return obj


def build_all(cls: type[M], rows: Iterable[sa.Row[Any]]) -> list[M]:
    """:func:`build` for every row of a result."""
    new = cls._sa_class_manager.new_instance  # type: ignore[attr-defined]
    out: list[M] = []
    for row in rows:
        obj = new()
        obj.__dict__.update(row._mapping)
        out.append(obj)
    return out


def values_of(obj: Base, *, skip: Iterable[str] = ()) -> dict[str, Any]:
    """The column values of a model instance, by column name, checked (see check_row)."""
    from agentstore.validation import check_row

    values = check_row(obj)
    for key in skip:
        del values[key]
    return values


# --- building values straight from driver rows ----------------------------------------------


def _converter_source(column: sa.ColumnElement[Any], var: str) -> str:
    """Python source that turns the driver's value ``var`` into the model's value."""
    from agentstore.types import EmptyText, Flag, JSONValue, UTCDateTime

    type_ = column.type
    if isinstance(type_, EmptyText):
        return f"({var} if {var} is not None else '')"
    if isinstance(type_, UTCDateTime):
        return f"_ts({var})"
    if isinstance(type_, Flag):
        return f"bool({var})"
    if isinstance(type_, sa.Boolean):
        return f"(None if {var} is None else {var} == 1)"
    if isinstance(type_, JSONValue):
        return f"_json({var})"
    return var


def row_builder(cls: type[M], columns: Iterable[sa.ColumnElement[Any]]) -> Any:
    """A fast function ``rows -> list[cls]`` for rows of ``columns`` from the SQLite driver.

    It does in one generated loop what SQLAlchemy's result processing and ORM loading would
    do per value: ``''`` for NULL plain strings, 0/1 to bool, timestamp text to aware UTC
    datetimes, JSON text to values — and nothing else.
    """
    import json

    from agentstore.types import parse_timestamp

    cols = list(columns)
    names = [f"v{i}" for i in range(len(cols))]
    fields = ", ".join(
        f"{c.key!r}: {_converter_source(c, n)}" for c, n in zip(cols, names, strict=True)
    )
    source = (
        "def build(rows):\n"
        "    out = []\n"
        "    append = out.append\n"
        f"    for ({', '.join(names)},) in rows:\n"
        "        obj = _new(_cls)\n"
        f"        obj.__dict__.update({{{fields}}})\n"
        "        append(obj)\n"
        "    return out\n"
    )
    namespace: dict[str, Any] = {
        "_new": object.__new__,
        "_cls": cls,
        "_ts": parse_timestamp,
        "_json": lambda v: None if v is None or v == "" else json.loads(v),
    }
    exec(compile(source, f"<agentstore row builder for {cls.__name__}>", "exec"), namespace)
    return namespace["build"]


class ModelQuery(Generic[M]):
    """A SELECT of whole ``cls`` rows, defined once and run on the fastest path available.

    On SQLite outside a transaction it runs on the driver's own connection and builds the
    models straight from the rows (:mod:`agentstore.repos._sqlite`); elsewhere through
    SQLAlchemy. Parameters are named ``sa.bindparam``\\ s, given as a dict at run time.
    """

    def __init__(self, cls: type[M], statement: sa.Select[Any]) -> None:
        from agentstore.repos._sqlite import CompiledSQLite

        self.cls = cls
        self.statement = statement
        self.sqlite = CompiledSQLite(statement)
        self._build = row_builder(cls, cls.__table__.columns)

    async def all(self, db: Database, values: dict[str, Any]) -> list[M]:
        """Every matching row as a detached model, in the statement's order."""
        driver = db.sqlite_driver()
        if driver is not None:
            async with driver as raw:
                rows = await raw.execute_fetchall(self.sqlite.sql, self.sqlite.args(values))
            built: list[M] = self._build(rows)
            return built
        async with db.reading() as conn:
            return build_all(self.cls, await conn.execute(self.statement, values))

    async def first(self, db: Database, values: dict[str, Any]) -> M | None:
        """The first matching row, or None (the statement should carry its own LIMIT 1)."""
        found = await self.all(db, values)
        return found[0] if found else None
