"""Checks run on every value before anything is written.

A wrong type, a naive datetime, an unknown status or event type, text that no backend can
store (a lone surrogate, a NUL character), a number out of range — each is refused with an
:class:`~agentstore.errors.InvalidValueError` (or
:class:`~agentstore.errors.InvalidStatusError`) before a statement is sent, so a bad call
never leaves a partial write behind, and both backends accept exactly the same values.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from typing import Any, Final, cast

import sqlalchemy as sa

from agentstore.errors import InvalidStatusError, InvalidValueError
from agentstore.models import Base
from agentstore.types import (
    CODEC_HELPERS,
    EnumText,
    codec,
    dump_json,
    value_kind,
)

__all__ = [
    "check_enum",
    "check_row",
    "check_text",
    "check_value",
    "columns_of",
    "require_id",
    "require_int",
    "require_str",
    "row_encoder",
]

KEY_BYTES: Final = 1024
"""The most UTF-8 bytes an indexed text column (an id, a key, a title, a path) may hold.

PostgreSQL refuses an index entry above ~2.7 KB; both backends accept the same values, so
the limit holds on SQLite too. Text that is not indexed (contents, tool input) has none.
"""
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
_SURROGATE: Final = re.compile("[\ud800-\udfff]")

_Spec = tuple[tuple[str, str, bool], ...]  # (attribute, kind, nullable)


@cache
def indexed_text(cls: type[Base]) -> frozenset[str]:
    """The text columns of ``cls`` that an index or a key holds (limited to KEY_BYTES)."""
    table = cast(sa.Table, cls.__table__)
    names: set[str] = set()
    for index in table.indexes:
        names.update(c.key for c in index.columns)
    for constraint in table.constraints:
        names.update(c.key for c in getattr(constraint, "columns", ()))
    kinds = {name: kind for name, kind, _ in columns_of(cls)}
    return frozenset(name for name in names if kinds[name] in ("str", "enum"))


def limit_of(cls: type[Base], name: str) -> int | None:
    """The byte limit of a text column (None: unlimited)."""
    return KEY_BYTES if name in indexed_text(cls) else None


@cache
def columns_of(cls: type[Base]) -> _Spec:
    """The (attribute, kind, nullable) spec of ``cls``'s columns, in table order."""
    annotations: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        annotations.update(getattr(klass, "__annotations__", {}))
    spec = []
    for column in cls.__table__.columns:
        annotation = str(annotations.get(column.key, ""))
        nullable = "None" in annotation
        spec.append((column.key, value_kind(column.type), nullable))
    return tuple(spec)


def check_text(value: str, what: str, limit: int | None = None) -> str:
    """``value`` as a plain ``str``, refused if a backend could not store it exactly
    (or, with a ``limit``, if it is longer than that many UTF-8 bytes)."""
    if (
        limit is not None
        and len(value) * 4 > limit
        and len(value.encode("utf-8", "replace")) > limit
    ):
        raise InvalidValueError(f"{what} is longer than {limit} UTF-8 bytes (it is indexed)")
    if "\x00" in value:
        raise InvalidValueError(
            f"{what} contains a NUL character, which PostgreSQL cannot store; "
            "agentstore refuses it on every backend"
        )
    if not value.isascii() and _SURROGATE.search(value):
        raise InvalidValueError(f"{what} contains a lone surrogate, which is not valid text")
    return value if value.__class__ is str else str.__str__(value)


def check_value(
    owner: str,
    name: str,
    kind: str,
    nullable: bool | None,
    value: Any,
    enum: type[StrEnum] | None = None,
    limit: int | None = None,
) -> Any:
    """``value`` as stored for a column of ``kind``, or InvalidValueError (with the reason).

    Returns the value normalised: a ``str`` subclass as plain text, a status as its StrEnum
    member, a datetime as it was given.
    """
    what = f"{owner}.{name}"
    if value is None:
        if nullable or kind == "json":
            return None
        raise InvalidValueError(f"{what} must not be None")
    if kind == "str" or kind == "enum":
        if not isinstance(value, str):
            raise InvalidValueError(_wrong_type(what, kind, nullable, value))
        value = check_text(value, what, limit)
        if kind == "enum" and enum is not None and not (value == "" and nullable is None):
            return check_enum(enum, value, _ENUM_WHAT.get(enum.__name__, enum.__name__))
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise InvalidValueError(_wrong_type(what, kind, nullable, value))
        return value
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidValueError(_wrong_type(what, kind, nullable, value))
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidValueError(f"{what} is out of the 64-bit integer range")
        return int(value)
    if kind == "float":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise InvalidValueError(_wrong_type(what, kind, nullable, value))
        try:
            number = float(value)
        except OverflowError:
            raise InvalidValueError(f"{what} is too large for a float") from None
        if not math.isfinite(number):
            raise InvalidValueError(f"{what} must be a finite number, got {number}")
        return number
    if kind == "datetime":
        if not isinstance(value, datetime):
            raise InvalidValueError(_wrong_type(what, kind, nullable, value))
        return check_datetime(value, what)
    # json
    text = _json_text(value, what)
    check_text(text, what)
    return value


_ENUM_WHAT: Final = {
    "SessionStatus": "session status",
    "EventType": "event type",
    "ApprovalStatus": "approval status",
}


def _wrong_type(what: str, kind: str, nullable: bool | None, value: Any) -> str:
    expected = {"enum": "str", "datetime": "an aware datetime"}.get(kind, kind)
    return f"{what} must be {expected}{' or None' if nullable else ''}, got {type(value).__name__}"


def check_datetime(value: datetime, what: str) -> datetime:
    """An aware datetime that every backend can store, else InvalidValueError."""
    if value.utcoffset() is None:
        raise InvalidValueError(
            f"{what} is a naive datetime (no UTC offset); pass an aware one, e.g. datetime.now(UTC)"
        )
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise InvalidValueError(f"{what} is out of range once moved to UTC: {value!r}") from None
    return value


def _json_text(value: Any, what: str) -> str:
    try:
        # NaN and Infinity are not JSON (Go and PostgreSQL refuse them).
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidValueError(f"{what} must be a JSON value: {exc}") from None


def check_enum(enum_cls: type[StrEnum], value: object, what: str) -> Any:
    """``value`` as its ``enum_cls`` member if it names one, else InvalidStatusError."""
    if isinstance(value, str):
        try:
            return enum_cls(value)
        except ValueError:
            pass
    allowed = ", ".join(member.value for member in enum_cls)
    shown = repr(value) if isinstance(value, str) and len(value) <= 80 else type(value).__name__
    raise InvalidStatusError(f"unknown {what} {shown}; expected one of: {allowed}")


def require_str(value: object, what: str) -> str:
    """Plain text (may be empty), else InvalidValueError; used for lookup arguments."""
    if not isinstance(value, str):
        raise InvalidValueError(f"{what} must be str, got {type(value).__name__}")
    return check_text(value, what)


def require_id(value: object, what: str) -> str:
    """A non-empty string id of at most KEY_BYTES UTF-8 bytes, else InvalidValueError."""
    if not isinstance(value, str):
        raise InvalidValueError(f"{what} must be str, got {type(value).__name__}")
    text = check_text(value, what, KEY_BYTES)
    if not text:
        raise InvalidValueError(f"{what} must be a non-empty string")
    return text


def require_int(
    value: object, what: str, *, minimum: int | None = None, optional: bool = False
) -> Any:
    """An ``int`` (not a bool) within 64 bits and ``>= minimum``, else InvalidValueError."""
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        expected = "int or None" if optional else "int"
        raise InvalidValueError(f"{what} must be {expected}, got {type(value).__name__}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidValueError(f"{what} is out of the 64-bit integer range")
    if minimum is not None and value < minimum:
        raise InvalidValueError(f"{what} must be >= {minimum}, got {value}")
    return int(value)


# --- generated checkers ---------------------------------------------------------------------

# Fast inline tests per kind; a value they do not accept goes to check_value, which either
# normalises it (a str subclass, an int for a float column, ...) or raises the precise error.
_FAST_TEST: Final = {
    "str": "({v}.__class__ is str and '\\x00' not in {v} and {v}.isascii())",
    "enum": "({v}.__class__ is _enum{i})",
    "bool": "{v}.__class__ is bool",
    "int": "({v}.__class__ is int and -9223372036854775808 <= {v} <= 9223372036854775807)",
    "float": "({v}.__class__ is float and _isfinite({v}))",
    "datetime": "({v}.__class__ is _datetime and {v}.tzinfo is _UTC)",
    "json": "False",
}


def check_row(obj: Base) -> dict[str, Any]:
    """Check every column value of a model instance; returns the values by column name.

    Statuses and kinds given as text are set on ``obj`` as their StrEnum members.
    """
    values: dict[str, Any] = _checker(type(obj), None, "")(obj)
    return values


def row_encoder(
    cls: type[Base], keys: Sequence[str], dialect: str
) -> Callable[[Base], tuple[Any, ...]]:
    """``obj -> tuple``: :func:`check_row`'s checks, then the values of ``keys``, in that
    order, encoded for ``dialect``'s driver by the column types' codecs (no dict between)."""
    encoder: Callable[[Base], tuple[Any, ...]] = _checker(cls, tuple(keys), dialect)
    return encoder


@cache
def _checker(cls: type[Base], keys: tuple[str, ...] | None, dialect: str) -> Any:
    """Generate the checking function; ``keys`` None: return a dict of checked values.

    It reads the instance's ``__dict__`` (falling back to the column default for a field
    never set) rather than going through SQLAlchemy's attribute machinery.
    """
    table = cls.__table__
    namespace: dict[str, Any] = {
        "_check": check_value,
        "_datetime": datetime,
        "_UTC": UTC,
        "_isfinite": math.isfinite,
        "_dump_json": dump_json,
    }
    lines = ["def generated(obj):", "    d = obj.__dict__"]
    spec = columns_of(cls)
    for i, (name, kind, nullable) in enumerate(spec):
        column = table.columns[name]
        default = column.default.arg if column.default is not None else None
        if callable(default):
            default = None  # a factory (now()): __init__ always stores its value
        namespace[f"D{i}"] = default
        v = f"v{i}"
        enum_cls = column.type.enum_class if isinstance(column.type, EnumText) else None
        allow_empty = isinstance(column.type, EnumText) and column.type.empty
        lines.append(f"    {v} = d.get({name!r}, D{i})")
        test = _FAST_TEST[kind].format(v=v, i=i)
        limit = limit_of(cls, name) if kind == "str" else None
        if limit is not None:
            test = f"({test} and len({v}) <= {limit // 4})"
        if kind == "enum":
            namespace[f"_enum{i}"] = enum_cls
            if allow_empty:
                test = f"({test} or {v} == '')"
        if nullable or kind == "json" or (name == "id" and kind == "int"):
            test = f"{v} is None or {test}"
        namespace[f"_E{i}"] = enum_cls
        # ``nullable=None`` tells check_value that '' is allowed for this status column.
        allow = None if allow_empty else nullable
        lines.append(f"    if not ({test}):")
        lines.append(
            f"        {v} = _check({cls.__name__!r}, {name!r}, {kind!r}, {allow!r}, {v}, _E{i}, "
            f"{limit!r})"
        )
        if kind == "enum":
            lines.append(f"        d[{name!r}] = {v}")  # the member, on the caller's object
    if keys is None:
        fields = ", ".join(f"{name!r}: v{i}" for i, (name, _, _) in enumerate(spec))
        lines.append(f"    return {{{fields}}}")
    else:
        position = {name: i for i, (name, _, _) in enumerate(spec)}
        encoded = []
        for key in keys:
            i = position[key]
            column_codec = codec(table.columns[key].type, dialect)
            encoded.append(column_codec.encode_expr.format(v=f"v{i}"))
        lines.append(f"    return ({''.join(e + ', ' for e in encoded)})")
    source = "\n".join(lines) + "\n"
    namespace = {**CODEC_HELPERS, **namespace}
    exec(compile(source, f"<agentstore checks for {cls.__name__}>", "exec"), namespace)
    return namespace["generated"]
