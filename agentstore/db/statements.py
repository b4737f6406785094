"""Statements defined once in SQLAlchemy, compiled once per backend, run on the driver.

Through SQLAlchemy's async adapter a statement costs several hand-offs and a result
processor call per value (FINDINGS.md). The store's data path instead compiles each
repository statement once per backend, binds its named Python values with the column
types' codecs (:func:`agentstore.types.codec`), sends it to the driver's own connection and
builds the returned models straight from the rows. The statement is ordinary SQLAlchemy
Core, so its meaning is defined in one place; only its execution is ours.

The encoders and builders are generated Python functions: a call per value is what made
reading 10,000 events cost more than fetching them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as postgresql_dialects
from sqlalchemy.dialects import sqlite as sqlite_dialects
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import Executable

from agentstore.models import Base
from agentstore.types import CODEC_HELPERS, EmptyText, codec

__all__ = ["Compiled", "Query", "Statement", "bind", "compile_function", "row_builder"]

M = TypeVar("M", bound=Base)

DIALECTS: dict[str, Dialect] = {
    "sqlite": sqlite_dialects.dialect(paramstyle="qmark"),
    "postgresql": postgresql_dialects.asyncpg.dialect(),  # type: ignore[no-untyped-call]
}


def bind(name: str, column: sa.ColumnElement[Any]) -> sa.BindParameter[Any]:
    """A named parameter typed like ``column``, so that its value is encoded like the column's."""
    return sa.bindparam(name, type_=column.type)


def compile_function(source: str, where: str, namespace: Mapping[str, Any]) -> Any:
    """The function ``generated`` that ``source`` defines, with ``namespace`` as its globals
    (a copy) and ``where`` as its file name in tracebacks: the store's generated encoders,
    row builders and converters."""
    globals_ = dict(namespace)
    exec(compile(source, where, "exec"), globals_)
    return globals_["generated"]


def _compile_function(source: str, where: str, namespace: dict[str, Any]) -> Any:
    return compile_function(source, where, {**CODEC_HELPERS, **namespace})


class Compiled:
    """One statement compiled for one backend: its SQL and how to bind its parameters."""

    __slots__ = ("args", "encoded_args", "names", "sql")

    def __init__(self, statement: ClauseElement, dialect: str) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=DIALECTS[dialect]))
        self.sql: str = str(compiled)
        if "POSTCOMPILE" in self.sql:  # an IN list: its SQL would depend on each call's values
            raise ValueError("a statement run on the driver cannot hold an IN (...) list")
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        # ``args(values)``: the positional driver arguments for named Python values, each
        # encoded by its parameter's type; parameters the statement carries itself (literals
        # such as the 1 in MAX(...) + 1) are constants.
        namespace: dict[str, Any] = {}
        parts = []
        given = []
        for i, name in enumerate(self.names):
            parameter = compiled.binds[name]
            column_codec = codec(parameter.type, dialect)
            if not parameter.required and parameter.callable is None:
                value = parameter.value
                namespace[f"_c{i}"] = (
                    column_codec.encode(value) if column_codec.encode is not None else value
                )
                parts.append(f"_c{i}")
                given.append(f"_c{i}")
            else:
                parts.append(column_codec.encode_expr.format(v=f"values[{name!r}]"))
                given.append(f"values[{name!r}]")
        where = f"<agentstore arguments of {self.sql[:60]!r}>"
        # args: from Python values, each encoded by its parameter's type; encoded_args: from
        # values already encoded for this driver (a row the checks have just encoded).
        self.args: Callable[[Mapping[str, Any]], tuple[Any, ...]] = _compile_function(
            f"def generated(values):\n    return ({''.join(p + ', ' for p in parts)})\n",
            where,
            namespace,
        )
        self.encoded_args: Callable[[Mapping[str, Any]], tuple[Any, ...]] = _compile_function(
            f"def generated(values):\n    return ({''.join(p + ', ' for p in given)})\n",
            where,
            namespace,
        )


class Statement:
    """A SQLAlchemy statement, compiled for a backend the first time it runs there."""

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[str, Compiled] = {}

    def on(self, dialect: str) -> Compiled:
        """The statement compiled for ``dialect``."""
        compiled = self._compiled.get(dialect)
        if compiled is None:
            compiled = self._compiled[dialect] = Compiled(
                cast(ClauseElement, self.statement), dialect
            )
        return compiled


def _driver_columns(
    columns: Iterable[sa.ColumnElement[Any]],
) -> list[sa.ColumnElement[Any]]:
    """The columns to SELECT: hld's plain strings already ``''`` for NULL.

    SQLite's ``coalesce`` costs nothing next to a Python test per value per row.
    """
    out: list[sa.ColumnElement[Any]] = []
    for c in columns:
        plain_string = isinstance(c.type, EmptyText)
        out.append(sa.func.coalesce(c, "").label(c.key) if plain_string else c)
    return out


def row_builder(
    cls: type[M],
    columns: Sequence[sa.ColumnElement[Any]],
    dialect: str,
    known: Sequence[str] = (),
) -> Callable[..., list[M]]:
    """A function ``(rows, *known_values) -> list[cls]`` for driver rows of ``columns``.

    The rows hold ``columns`` minus those named in ``known``, whose values the caller passes
    in (the same for every row). Each value is decoded by its column's codec, in one
    generated loop, and every instance is built without ``__init__``: a plain, detached
    value whose attributes are all set (SQLAlchemy's state is attached lazily, see
    :class:`agentstore.models.Base`).
    """
    names = [f"v{i}" for i in range(len(columns))]
    read = [n for c, n in zip(columns, names, strict=True) if c.key not in known]
    given = {c.key: n for c, n in zip(columns, names, strict=True) if c.key in known}
    lines: list[str] = []
    fields: list[str] = []
    for column, name in zip(columns, names, strict=True):
        column_codec = codec(column.type, dialect)
        plain_string = isinstance(column.type, EmptyText)  # coalesced in SQL
        if column.key in known or plain_string:
            value = name
        elif column_codec.decode_lines is not None:
            block = column_codec.decode_lines.format(v=name)
            lines.extend("        " + line for line in block.splitlines())
            value = name
        else:
            value = column_codec.decode_expr.format(v=name)
        fields.append(f"        attrs[{column.key!r}] = {value}\n")
    # Each instance's __dict__ starts as a copy of one template with every key (a copy of a
    # dict is a memory copy; a dict display of 17-42 keys costs twice as much), whose values
    # are then set in place.
    body = (
        "    out = []\n"
        "    append = out.append\n"
        f"    for ({', '.join(read)},) in rows:\n"
        + "".join(line + "\n" for line in lines)
        + "        attrs = _template()\n"
        + "".join(fields)
        + "        obj = _new(_cls)\n"
        "        obj.__dict__ = attrs\n"
        "        append(obj)\n"
        "    return out\n"
    )
    # Helpers as keyword defaults: local lookups in the loop, not global ones.
    helpers = sorted(
        name
        for name in {*CODEC_HELPERS, "_new", "_cls", "_template"}
        if re.search(rf"\b{name}\b", body)
    )
    source = (
        f"def generated(rows, {''.join(given[k] + ', ' for k in known)}*, "
        f"{', '.join(f'{name}={name}' for name in helpers)}):\n" + body
    )
    builder: Callable[..., list[M]] = _compile_function(
        source,
        f"<agentstore row builder for {cls.__name__} on {dialect}>",
        {
            "_new": object.__new__,
            "_cls": cls,
            "_template": dict.fromkeys(column.key for column in columns).copy,
        },
    )
    return builder


class Query(Statement, Generic[M]):
    """A SELECT of whole ``cls`` rows (or a DML statement returning them), its rows built
    into models.

    ``known`` names columns the WHERE clause pins to a parameter of the same name with
    ``=`` (``claude_session_id = :claude_session_id``): every row holds that value, so it is
    not read back per row; the parameter itself is put in each model. The caller passes
    such a parameter as a plain ``str``, the column's own type, so that the value compared
    equal is the value stored.
    """

    __slots__ = ("_builders", "_columns", "cls", "known")

    def __init__(self, cls: type[M], statement: Any, known: Sequence[str] = ()) -> None:
        self.cls = cls
        self.known = tuple(known)
        if isinstance(statement, sa.Select):
            self._columns = list(statement.selected_columns)
            read = [c for c in self._columns if c.key not in self.known]
            super().__init__(statement.with_only_columns(*_driver_columns(read)))
        else:  # an INSERT, UPDATE or DELETE: RETURNING every column of ``cls``
            self._columns = list(cls.__table__.columns)
            super().__init__(statement.returning(*_driver_columns(self._columns)))
        self._builders: dict[str, Callable[..., list[M]]] = {}

    def build(self, dialect: str, rows: Iterable[Any], values: Mapping[str, Any]) -> list[M]:
        """Models from the driver's rows of this query run with ``values``."""
        builder = self._builders.get(dialect)
        if builder is None:
            builder = self._builders[dialect] = row_builder(
                self.cls, self._columns, dialect, self.known
            )
        return builder(rows, *[values[key] for key in self.known])
