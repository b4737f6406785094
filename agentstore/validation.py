"""Checks run on every value before anything is written.

A wrong type, a naive datetime, an unknown status or event type is refused with an
:class:`~agentstore.errors.InvalidValueError` (or :class:`~agentstore.errors.InvalidStatusError`)
before a statement is sent, so a bad call never leaves a partial write behind.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from functools import cache
from typing import Any

import sqlalchemy as sa

from agentstore.errors import InvalidStatusError, InvalidValueError
from agentstore.models import Base
from agentstore.types import (
    Flag,
    JSONValue,
    UTCDateTime,
    format_local_timestamp,
    format_timestamp,
)

_Spec = tuple[tuple[str, str, bool], ...]  # (attribute, kind, nullable)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@cache
def columns_of(cls: type[Base]) -> _Spec:
    """The (attribute, kind, nullable) spec of ``cls``'s columns."""
    annotations: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        annotations.update(getattr(klass, "__annotations__", {}))
    spec = []
    for column in cls.__table__.columns:
        annotation = str(annotations.get(column.key, ""))
        nullable = "None" in annotation
        type_ = column.type
        if isinstance(type_, UTCDateTime):
            kind = "datetime"
        elif isinstance(type_, JSONValue):
            kind = "json"
        elif isinstance(type_, sa.Boolean | Flag):
            kind = "bool"
        elif isinstance(type_, sa.Integer):
            kind = "int"
        elif isinstance(type_, sa.Float):
            kind = "float"
        else:
            kind = "str"
        spec.append((column.key, kind, nullable))
    return tuple(spec)


def check_value(owner: str, name: str, kind: str, nullable: bool, value: Any) -> None:
    """Raise InvalidValueError unless ``value`` fits a column of ``kind``."""
    if value is None:
        if nullable or kind == "json":
            return
        raise InvalidValueError(f"{owner}.{name} must not be None")
    ok: bool
    if kind == "str":
        ok = isinstance(value, str)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and not INT64_MIN <= value <= INT64_MAX:
            raise InvalidValueError(f"{owner}.{name} is out of the 64-bit integer range")
    elif kind == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind == "datetime":
        ok = isinstance(value, datetime)
        if ok and value.tzinfo is None:
            raise InvalidValueError(
                f"{owner}.{name} is a naive datetime; pass an aware one (e.g. datetime.now(UTC))"
            )
    else:  # json
        try:
            json.dumps(value, allow_nan=False)  # NaN/Infinity are not JSON (Go, PostgreSQL)
            ok = True
        except (TypeError, ValueError):
            ok = False
    if not ok:
        raise InvalidValueError(
            f"{owner}.{name} must be {kind}{' or None' if nullable else ''}, "
            f"got {type(value).__name__}"
        )


def check_row(obj: Base) -> dict[str, Any]:
    """Check every column value of a model instance; returns the values by column name."""
    values: dict[str, Any] = _row_checker(type(obj))(obj)
    return values


# Fast inline tests per kind; anything they do not accept goes to check_value, which either
# accepts it (a str subclass, say) or raises the error.
_FAST_TEST = {
    "str": "{v}.__class__ is str",
    "bool": "{v}.__class__ is bool",
    "int": "({v}.__class__ is int and -9223372036854775808 <= {v} <= 9223372036854775807)",
    "float": "({v}.__class__ is float or {v}.__class__ is int)",
    "datetime": "({v}.__class__ is _datetime and {v}.tzinfo is not None)",
    "json": "False",
}


@cache
def _row_checker(cls: type[Base]) -> Any:
    """A generated function ``obj -> {column: value}`` that checks every value on the way.

    It reads the instance's ``__dict__`` (falling back to the column default for a field
    never set) rather than going through SQLAlchemy's attribute machinery, which is what
    made validating a batch of events cost more than writing it.
    """
    return _generate(cls, None)


@cache
def sqlite_row_encoder(cls: type[Base], keys: tuple[str, ...]) -> Any:
    """A generated function ``obj -> [value, …]``: :func:`check_row`'s checks, then the
    values of ``keys`` as SQLite stores them (timestamps as UTC text, booleans as 0/1), in
    that order — for the driver's ``executemany``, with no dict in between."""
    return _generate(cls, keys)


def _generate(cls: type[Base], sqlite_keys: tuple[str, ...] | None) -> Any:
    defaults: dict[str, Any] = {}
    lines = ["def check(obj):", "    d = obj.__dict__"]
    for index, (name, kind, nullable) in enumerate(columns_of(cls)):
        column = cls.__table__.columns[name]
        default = column.default.arg if column.default is not None else None
        if callable(default):
            default = None  # a factory (now()): __init__ always stores its value
        defaults[f"D{index}"] = default
        v = f"v{index}"
        lines.append(f"    {v} = d.get({name!r}, D{index})")
        test = _FAST_TEST[kind].format(v=v)
        if nullable or kind == "json" or (name == "id" and kind == "int"):
            test = f"{v} is None or {test}"
        lines.append(f"    if not ({test}):")
        lines.append(f"        _check({cls.__name__!r}, {name!r}, {kind!r}, {nullable!r}, {v})")
    if sqlite_keys is None:
        fields = ", ".join(f"{name!r}: v{i}" for i, (name, _, _) in enumerate(columns_of(cls)))
        lines.append(f"    return {{{fields}}}")
    else:
        position = {name: (i, kind) for i, (name, kind, _) in enumerate(columns_of(cls))}
        encoded = []
        for key in sqlite_keys:
            i, kind = position[key]
            if kind == "datetime":
                local = getattr(cls.__table__.columns[key].type, "local", False)
                encoded.append(f"(None if v{i} is None else {'_tsl' if local else '_ts'}(v{i}))")
            elif kind == "bool":
                encoded.append(f"(None if v{i} is None else (1 if v{i} else 0))")
            else:  # str (a StrEnum binds as its text), numbers, JSON text
                encoded.append(f"v{i}")
        lines.append(f"    return [{', '.join(encoded)}]")
    namespace: dict[str, Any] = {
        "_check": check_value,
        "_datetime": datetime,
        "_ts": format_timestamp,
        "_tsl": format_local_timestamp,
        **defaults,
    }
    exec(
        compile("\n".join(lines) + "\n", f"<agentstore checks for {cls.__name__}>", "exec"),
        namespace,
    )
    return namespace["check"]


def check_enum(enum_cls: type[StrEnum], value: object, what: str) -> str:
    """``value`` as a plain string if it is one of ``enum_cls``'s values, else raise."""
    if isinstance(value, str):
        try:
            return str(enum_cls(value).value)
        except ValueError:
            pass
    allowed = ", ".join(member.value for member in enum_cls)
    raise InvalidStatusError(f"unknown {what} {value!r}; expected one of: {allowed}")


def require_id(value: object, what: str) -> str:
    """A non-empty string id, else InvalidValueError."""
    if not isinstance(value, str) or not value:
        raise InvalidValueError(f"{what} must be a non-empty string, got {value!r}")
    return value
