"""What every repository builds on: a source of connections, and rows turned into models.

A repository never commits. It asks its :class:`Database` for a unit of work — ``reading()``
for a consistent snapshot, ``writing()`` for a write transaction — and the database decides
what that is: the store opens one short transaction per call; a
:class:`~agentstore.store.Transaction` hands every call its one open connection, so that
several calls commit or roll back together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agentstore.models import Base
from agentstore.repos._driver import Driver, DriverStatement

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

    def driver(self) -> AbstractAsyncContextManager[Driver] | None:
        """A pooled connection's own driver connection for the hot paths, or None."""
        ...


def build(cls: type[M], values: Mapping[Any, Any]) -> M:
    """A detached model instance from column values, without running ``__init__``.

    Every attribute is filled, so reading one never touches the database.
    """
    obj: M = object.__new__(cls)  # SQLAlchemy's state is attached lazily (Base.__getattr__)
    obj.__dict__ = dict(values)
    return obj


def build_all(cls: type[M], rows: Iterable[sa.Row[Any]]) -> list[M]:
    """:func:`build` for every row of a result."""
    return [build(cls, row._mapping) for row in rows]


# --- building values straight from driver rows ----------------------------------------------


def driver_columns(columns: Iterable[sa.ColumnElement[Any]]) -> list[sa.ColumnElement[Any]]:
    """The columns to SELECT on the driver path: hld's plain strings already ``''`` for NULL.

    SQLite's ``coalesce`` costs nothing next to a Python test per value per row.
    """
    from agentstore.types import EmptyText

    return [
        sa.func.coalesce(c, "").label(c.key) if isinstance(c.type, EmptyText) else c
        for c in columns
    ]


def _converter_source(column: sa.ColumnElement[Any], var: str, dialect: str) -> tuple[str, str]:
    """Python source (statements, expression) turning the driver's ``var`` into the value."""
    from agentstore.types import EmptyText, Flag, JSONValue, UTCDateTime

    type_ = column.type
    if isinstance(type_, EmptyText):
        return "", var  # coalesced in SQL (driver_columns)
    if isinstance(type_, UTCDateTime) and dialect != "sqlite":
        # asyncpg gives timestamptz as an aware datetime in UTC already.
        return (
            f"        if {var} is not None and {var}.tzinfo is not _UTC:\n"
            f"            {var} = _ts({var})\n",
            var,
        )
    if isinstance(type_, UTCDateTime):
        # Inline fast path for the text agentstore writes; anything else via read_timestamp.
        statements = (
            f"        if {var}.__class__ is str:\n"
            f"            try:\n"
            f"                t = _fromiso({var})\n"
            f"            except ValueError:\n"
            f"                {var} = _ts({var})\n"
            f"            else:\n"
            f"                {var} = t if t.tzinfo is _UTC else _to_utc(t)\n"
            f"        elif {var} is not None:\n"
            f"            {var} = _ts({var})\n"
        )
        return statements, var
    if isinstance(type_, Flag):
        return "", f"(True if {var} else False)"  # bool() without the call
    if isinstance(type_, sa.Boolean):
        return "", f"(None if {var} is None else {var} == 1)"
    if isinstance(type_, JSONValue):
        return "", f"_json({var})"
    return "", var


def row_builder(
    cls: type[M],
    columns: Iterable[sa.ColumnElement[Any]],
    dialect: str = "sqlite",
    known: Sequence[str] = (),
) -> Any:
    """A fast function ``(rows, *known_values) -> list[cls]`` for driver rows.

    The rows hold ``driver_columns(columns)`` minus the columns named in ``known``, whose
    values the caller passes in (the same for every row). It does in one generated loop what
    SQLAlchemy's result processing and ORM loading would do per value: 0/1 to bool,
    timestamp text to aware UTC datetimes, JSON text to values — and nothing else.
    """
    import json
    from datetime import UTC, datetime

    from agentstore.types import read_timestamp, to_utc

    cols = list(columns)
    names = [f"v{i}" for i in range(len(cols))]
    converted = [
        ("", name) if c.key in known else _converter_source(c, name, dialect)
        for c, name in zip(cols, names, strict=True)
    ]
    fields = ", ".join(f"{c.key!r}: {expr}" for c, (_, expr) in zip(cols, converted, strict=True))
    read = [name for c, name in zip(cols, names, strict=True) if c.key not in known]
    name_of = {c.key: name for c, name in zip(cols, names, strict=True)}
    given = [name_of[key] for key in known]
    source = (
        f"def build(rows, {''.join(f'{name}, ' for name in given)}):\n"
        "    out = []\n"
        "    append = out.append\n"
        f"    for ({', '.join(read)},) in rows:\n"
        + "".join(statements for statements, _ in converted)
        + "        obj = _new(_cls)\n"
        f"        obj.__dict__ = {{{fields}}}\n"
        "        append(obj)\n"
        "    return out\n"
    )
    namespace: dict[str, Any] = {
        "_new": object.__new__,
        "_cls": cls,
        "_ts": read_timestamp,
        "_fromiso": datetime.fromisoformat,
        "_UTC": UTC,
        "_to_utc": to_utc,  # local-time text (a session's times): parsed once, then moved
        "_json": lambda v: None if v is None or v == "" else json.loads(v),
    }
    where = f"<agentstore row builder for {cls.__name__} on {dialect}>"
    exec(compile(source, where, "exec"), namespace)
    return namespace["build"]


class ModelQuery(Generic[M]):
    """A SELECT of whole ``cls`` rows, defined once and run on the fastest path available.

    Outside a transaction it runs on the driver's own connection and builds the models
    straight from the rows (:mod:`agentstore.repos._driver`); inside one, through
    SQLAlchemy. Parameters are named ``sa.bindparam``\\ s, given as a dict at run time.

    ``known`` names columns the WHERE clause pins to a parameter of the same name with
    ``=`` (``claude_session_id = :claude_session_id``): every row holds that value, so the
    driver path does not read it back per row but puts the parameter itself in each model.
    The caller must pass such a parameter as a ``str``, the column's own type, so that the
    value compared equal is the value stored.
    """

    def __init__(self, cls: type[M], statement: sa.Select[Any], known: Sequence[str] = ()) -> None:
        self.cls = cls
        self.statement = statement
        self.known = tuple(known)
        self._columns = list(statement.selected_columns)
        read = [c for c in self._columns if c.key not in self.known]
        self.driver = DriverStatement(statement.with_only_columns(*driver_columns(read)))
        self._builders: dict[str, Any] = {}

    def build(self, dialect: str, rows: list[Any], values: dict[str, Any]) -> list[M]:
        """Models from the driver's rows of this statement run with ``values``."""
        builder = self._builders.get(dialect)
        if builder is None:
            builder = self._builders[dialect] = row_builder(
                self.cls, self._columns, dialect, self.known
            )
        built: list[M] = builder(rows, *[values[key] for key in self.known])
        return built

    async def all(self, db: Database, values: dict[str, Any]) -> list[M]:
        """Every matching row as a detached model, in the statement's order."""
        lease = db.driver()
        if lease is not None:
            async with lease as driver:
                rows = await self.driver.fetch(driver, values)
            return self.build(driver.dialect, rows, values)
        async with db.reading() as conn:
            return build_all(self.cls, await conn.execute(self.statement, values))

    async def first(self, db: Database, values: dict[str, Any]) -> M | None:
        """The first matching row, or None (the statement should carry its own LIMIT 1)."""
        found = await self.all(db, values)
        return found[0] if found else None
