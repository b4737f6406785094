"""Column types, and the one table of how each type's values go to a driver and come back.

On SQLite every value is stored the way hld (go-sqlite3) can read it back:

* timestamps are TEXT in columns *declared* ``TIMESTAMP`` or ``DATETIME`` (go-sqlite3 only
  parses a column as a time when its declared type is exactly one of those), written as
  ``2025-01-15 10:30:00.123456+00:00`` — six fraction digits, in UTC where hld writes
  ``CURRENT_TIMESTAMP`` and in local time where hld writes a Go time (``local=True``);
* strings that hld scans into a Go ``string`` are ``''``, never NULL;
* booleans are 0/1.

Reading accepts every format hld ever wrote: Go's ``2006-01-02 15:04:05.999999999-07:00``
(1-9 fraction digits, none at all on a whole second, any offset), SQLite's
``CURRENT_TIMESTAMP`` text (UTC, no offset) and Unix seconds or milliseconds stored as
INTEGER. Python's ``datetime`` holds microseconds, so a nanosecond fraction reads back
truncated to the microsecond; the stored text is never rewritten unless the row is updated.

On PostgreSQL the natural types are used: ``timestamptz``, ``boolean``, ``json``.

:func:`codec` is the single definition of each conversion: the TypeDecorators below use it
when SQLAlchemy runs a statement (Alembic, ``store.engine``), and the store's own data path
(:mod:`agentstore.db`) generates its row encoders and builders from it.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FunctionElement

__all__ = [
    "Codec",
    "EmptyText",
    "EnumText",
    "Flag",
    "Int64",
    "JSONValue",
    "UTCDateTime",
    "codec",
    "dump_json",
    "format_local_timestamp",
    "format_timestamp",
    "instant",
    "instant_key",
    "parse_timestamp",
    "read_timestamp",
    "to_utc",
    "utcnow",
    "value_kind",
]


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def format_timestamp(value: datetime) -> str:
    """The text agentstore stores on SQLite: UTC, six fraction digits, ``+00:00``."""
    if value.utcoffset() is None:
        raise ValueError("naive datetime: agentstore stores aware datetimes only")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(sep=" ", timespec="microseconds")


def format_local_timestamp(value: datetime) -> str:
    """The text hld itself binds for a Go ``time.Time``: the machine's local time and offset.

    Used for the columns hld fills from Go times and compares as text (a session's times, an
    approval's ``created_at``): written in the same offset as hld's own rows, agentstore's
    rows compare and sort correctly in hld too. Six fraction digits, like every agentstore time.
    """
    if value.utcoffset() is None:
        raise ValueError("naive datetime: agentstore stores aware datetimes only")
    try:
        local = value.astimezone()
    except (OverflowError, ValueError):  # near year 1 or 9999
        return format_timestamp(value)
    offset = local.utcoffset()
    if offset is None or offset.seconds % 60 or offset.microseconds:
        # Historic offsets with seconds (-00:44:30) are text neither SQLite nor go-sqlite3
        # can read as a time: use UTC then.
        return format_timestamp(value)
    return local.isoformat(sep=" ", timespec="microseconds")


def parse_timestamp(value: object) -> datetime | None:
    """Read any timestamp hld or agentstore stored as an aware UTC datetime.

    Text without an offset is UTC (SQLite's ``CURRENT_TIMESTAMP``). Integers are Unix seconds,
    or milliseconds above 1e12, as go-sqlite3 reads them. Returns None for NULL and for text
    that is not a timestamp (go-sqlite3 gives the zero time there; None is the honest value).
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            # 3.11's fromisoformat takes 1-9 fraction digits (truncating past 6), a space or
            # "T", "Z" and numeric offsets: every form hld wrote.
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e12 else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    else:
        return None
    return _safe_to_utc(parsed)


def to_utc(parsed: datetime) -> datetime:
    """A parsed stored time in UTC: with an offset, converted; without one, it was UTC."""
    zone = parsed.tzinfo
    if zone is UTC:
        return parsed
    return parsed.replace(tzinfo=UTC) if zone is None else parsed.astimezone(UTC)


_fromisoformat = datetime.fromisoformat


def _safe_to_utc(parsed: datetime) -> datetime | None:
    try:
        return to_utc(parsed)
    except OverflowError:  # an offset that moves it past year 1 or 9999
        return None


def read_timestamp(value: object) -> datetime | None:
    """:func:`parse_timestamp`, with a fast path for the text agentstore itself writes."""
    if value.__class__ is str:
        try:
            parsed = _fromisoformat(value)  # type: ignore[arg-type,unused-ignore]
        except ValueError:
            return parse_timestamp(value)
        return _safe_to_utc(parsed)
    return parse_timestamp(value)


def dump_json(value: Any) -> str:
    """Compact JSON text, non-ASCII kept as is (hld's ``encoding/json`` does the same)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def load_json(value: Any) -> Any:
    """A stored JSON text as its value; NULL and ``''`` read as None."""
    if value is None or value == "":
        return None
    return json.loads(value)


# --- the codec table ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Codec:
    """How one column type's values go to one driver and come back.

    ``encode``/``decode`` are None where the driver's value is the Python value. The
    ``*_expr`` forms are the same conversions as Python expressions over ``{v}``, for the
    generated row encoders and builders (a call per value is what made them slow); each
    names only helpers listed in :data:`CODEC_HELPERS`.
    """

    encode: Callable[[Any], Any] | None = None
    decode: Callable[[Any], Any] | None = None
    encode_expr: str = "{v}"
    decode_expr: str = "{v}"
    decode_lines: str | None = None
    """Statements that decode ``{v}`` in place, faster than ``decode_expr`` where given."""


def _flag_sqlite(value: Any) -> Any:
    return None if value is None else (1 if value else 0)


def _optional_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _utc_datetime(value: Any) -> Any:
    # asyncpg returns timestamptz as an aware UTC datetime already.
    return value if value is None or value.tzinfo is UTC else value.astimezone(UTC)


CODEC_HELPERS: Final[dict[str, Any]] = {
    "_fmt_ts": format_timestamp,
    "_fmt_local_ts": format_local_timestamp,
    "_read_ts": read_timestamp,
    "_fromiso": _fromisoformat,
    "_to_utc": _safe_to_utc,
    "_UTC": UTC,
    "_dump_json": dump_json,
    "_load_json": load_json,
}
"""The names the ``*_expr`` forms of the codecs may use (generated code's globals)."""

_IDENTITY: Final = Codec()
_EMPTY_TEXT: Final = Codec(
    decode=lambda v: "" if v is None else v, decode_expr="('' if {v} is None else {v})"
)
_FLAG_SQLITE: Final = Codec(
    encode=_flag_sqlite,
    decode=lambda v: True if v else False,
    encode_expr="(None if {v} is None else (1 if {v} else 0))",
    decode_expr="(True if {v} else False)",
)
_FLAG_PG: Final = Codec(
    decode=lambda v: True if v else False, decode_expr="(True if {v} else False)"
)
_OPTIONAL_BOOL_SQLITE: Final = Codec(
    encode=_flag_sqlite,
    decode=_optional_bool,
    encode_expr="(None if {v} is None else (1 if {v} else 0))",
    decode_expr="(None if {v} is None else {v} == 1)",
)
_JSON: Final = Codec(
    encode=dump_json,
    decode=load_json,
    encode_expr="_dump_json({v})",
    decode_expr="_load_json({v})",
)
_JSON_PG: Final = Codec(encode=dump_json, encode_expr="_dump_json({v})")


def codec(type_: sa.types.TypeEngine[Any], dialect: str) -> Codec:
    """The codec of a column type on ``dialect`` (``"sqlite"`` or ``"postgresql"``)."""
    if isinstance(type_, UTCDateTime):
        return type_.codec(dialect)
    if isinstance(type_, EnumText):
        return type_.codec(dialect)
    if isinstance(type_, EmptyText):
        return _EMPTY_TEXT
    if isinstance(type_, Flag):
        return _FLAG_SQLITE if dialect == "sqlite" else _FLAG_PG
    if isinstance(type_, sa.Boolean):
        return _OPTIONAL_BOOL_SQLITE if dialect == "sqlite" else _IDENTITY
    if isinstance(type_, JSONValue):
        # SQLAlchemy's asyncpg connections decode json themselves (and take text in).
        return _JSON if dialect == "sqlite" else _JSON_PG
    return _IDENTITY


# --- column types ---------------------------------------------------------------------------


class _DeclaredText(sa.types.UserDefinedType[str]):
    """A text column declared with hld's type name (``TIMESTAMP``/``DATETIME``), no processing."""

    cache_ok = True

    def __init__(self, declared: str) -> None:
        self.declared = declared

    def get_col_spec(self, **kw: Any) -> str:
        return self.declared


Int64: Final = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""Go's ``int``/``int64``: ``bigint`` on PostgreSQL; on SQLite hld's ``INTEGER`` (64-bit there)."""


# The text agentstore writes parses in one call; anything else (Go's forms, integers) goes
# through read_timestamp. A local-time text is parsed once, then moved to UTC. NULL is
# tested first: a raised and caught exception costs more than the parse.
_DECODE_TS_LINES: Final = """\
if {v} is not None:
    try:
        {v} = _fromiso({v})
    except (ValueError, TypeError):
        {v} = _read_ts({v})
    else:
        if {v}.tzinfo is not _UTC:
            {v} = _to_utc({v})
"""


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """An aware UTC ``datetime``; hld's text on SQLite, ``timestamptz`` on PostgreSQL.

    ``declared`` is the type name used on SQLite: hld declares ``TIMESTAMP`` almost everywhere
    and ``DATETIME`` on ``approvals``; both are names go-sqlite3 parses as times. ``local``
    marks the columns hld writes in local time (:func:`format_local_timestamp`); the others
    hld fills with ``CURRENT_TIMESTAMP``, which is UTC. Reading gives UTC either way.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    # ``local`` is positional-or-keyword so that it is part of SQLAlchemy's cache key.
    def __init__(self, declared: str = "TIMESTAMP", local: bool = False) -> None:
        super().__init__()
        self.declared = declared
        self.local = local

    def codec(self, dialect: str) -> Codec:
        if dialect != "sqlite":
            return Codec(
                decode=_utc_datetime,
                decode_expr="({v} if {v} is None or {v}.tzinfo is _UTC else {v}.astimezone(_UTC))",
            )
        if self.local:
            return Codec(
                encode=format_local_timestamp,
                decode=read_timestamp,
                encode_expr="(None if {v} is None else _fmt_local_ts({v}))",
                decode_expr="_read_ts({v})",
                decode_lines=_DECODE_TS_LINES,
            )
        return Codec(
            encode=format_timestamp,
            decode=read_timestamp,
            encode_expr="(None if {v} is None else _fmt_ts({v}))",
            decode_expr="_read_ts({v})",
            decode_lines=_DECODE_TS_LINES,
        )

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_DeclaredText(self.declared))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.utcoffset() is None:
            raise ValueError("naive datetime: agentstore stores aware datetimes only")
        encode = self.codec(dialect.name).encode
        return encode(value) if encode is not None else value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return read_timestamp(value)

    def compare_against_backend(
        self, dialect: Dialect, conn_type: sa.types.TypeEngine[Any]
    ) -> bool | None:
        if dialect.name == "sqlite":
            return type(conn_type).__name__.upper() == self.declared
        return None


class EmptyText(sa.types.TypeDecorator[str]):
    """hld's plain Go ``string``: NULL reads as ``''`` and ``None`` is stored as ``''``."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return "" if value is None else value

    def process_result_value(self, value: Any, dialect: Dialect) -> str:
        return "" if value is None else str(value)


class EnumText(sa.types.TypeDecorator[str]):
    """A status or kind stored as hld's text, read back as the StrEnum member it names.

    Text that names no member (a value a newer hld wrote, say) reads back as plain text;
    ``empty`` columns read NULL as ``''`` (hld's plain strings).
    """

    impl = sa.Text
    cache_ok = True

    def __init__(self, enum_class: type[enum.StrEnum], empty: bool = False) -> None:
        super().__init__()
        self.enum_class = enum_class
        self.empty = empty
        self.members: dict[str, enum.StrEnum] = {m.value: m for m in enum_class}

    def codec(self, dialect: str) -> Codec:
        members = self.members
        empty = self.empty
        table = f"_members_{self.enum_class.__name__}"
        CODEC_HELPERS[table] = members  # what the generated builders look members up in

        def decode(value: Any) -> Any:
            if value is None:
                return "" if empty else None
            return members.get(value, value)

        # NULL reads as '' (a plain string) or None; .get(None, None) is None already.
        expr = (
            f"('' if {{v}} is None else {table}.get({{v}}, {{v}}))"
            if empty
            else f"{table}.get({{v}}, {{v}})"
        )
        return Codec(
            encode=_plain_text,
            decode=decode,
            encode_expr="_plain_text({v})",
            decode_expr=expr,
        )

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return _plain_text(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        decode = self.codec(dialect.name).decode
        assert decode is not None
        return decode(value)


def _plain_text(value: Any) -> Any:
    """A StrEnum member as its plain ``str`` value (what the drivers bind)."""
    return value if value is None or value.__class__ is str else str.__str__(value)


CODEC_HELPERS["_plain_text"] = _plain_text


class Flag(sa.types.TypeDecorator[bool]):
    """hld's Go ``bool``: 0/1 (``boolean`` on PostgreSQL); NULL, as hld reads it, is False."""

    impl = sa.Boolean
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> bool:
        return bool(value)


class JSONValue(sa.types.TypeDecorator[Any]):
    """A decoded JSON value; compact JSON text on SQLite, ``json`` on PostgreSQL.

    ``json`` (not ``jsonb``) keeps the text as written, key order included, like hld's
    ``json.RawMessage``. JSON keeps what JSON can: object keys are text, so ``{1: 'a'}``
    reads back as ``{'1': 'a'}``, and tuples read back as lists.
    """

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSON(none_as_null=False))
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return value
        return dump_json(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if dialect.name == "postgresql" or value is None:
            return value
        return load_json(value)

    def compare_against_backend(
        self, dialect: Dialect, conn_type: sa.types.TypeEngine[Any]
    ) -> bool | None:
        if dialect.name == "sqlite":
            return isinstance(conn_type, sa.Text | sa.String)
        return None


def value_kind(type_: sa.types.TypeEngine[Any]) -> str:
    """What a column of ``type_`` holds, as the store's checks and transfers see it:
    ``datetime``, ``json``, ``enum``, ``bool``, ``int``, ``float`` or ``str``."""
    if isinstance(type_, UTCDateTime):
        return "datetime"
    if isinstance(type_, JSONValue):
        return "json"
    if isinstance(type_, EnumText):
        return "enum"
    if isinstance(type_, sa.Boolean | Flag):
        return "bool"
    if isinstance(type_, sa.Integer):
        return "int"
    if isinstance(type_, sa.Float):
        return "float"
    return "str"


def is_finite(value: float) -> bool:
    """Whether a float is storable alike on both backends (NaN and infinities are not)."""
    return math.isfinite(value)


# --- ordering by instant ------------------------------------------------------------------


class _Instant(FunctionElement[Any]):
    """A sort/compare key that orders a timestamp column by instant on every backend."""

    inherit_cache = True
    name = "agentstore_instant"


@compiles(_Instant, "sqlite")
def _instant_sqlite(element: _Instant, compiler: Any, **kw: Any) -> str:
    # The UTC instant to the microsecond as text, 'YYYY-MM-DD HH:MM:SS.ffffff', whatever form
    # hld or agentstore stored: strftime normalises the offset (to the second) and the
    # fraction digits are cut from the text (a Go fraction has 1-9 digits, then maybe a
    # '-07:00' offset or 'Z'), padded or truncated to six.
    x = compiler.process(element.clauses, **kw)
    return (
        f"(strftime('%Y-%m-%d %H:%M:%S', {x}) || '.' || "
        f"CASE WHEN substr({x}, 20, 1) = '.' THEN substr("
        f"CASE WHEN substr({x}, -6, 1) IN ('+', '-') THEN substr({x}, 21, length({x}) - 26) "
        f"WHEN substr({x}, -1, 1) = 'Z' THEN substr({x}, 21, length({x}) - 21) "
        f"ELSE substr({x}, 21) END || '000000', 1, 6) ELSE '000000' END)"
    )


@compiles(_Instant)
def _instant_default(element: _Instant, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


def instant(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """``column`` as a key that sorts and compares by instant, to the microsecond.

    On SQLite this is UTC text (see :func:`instant_key` for the same key of a Python value);
    on PostgreSQL the ``timestamptz`` column itself.
    """
    return _Instant(column)


def instant_key(value: datetime, dialect_name: str) -> Any:
    """The :func:`instant` key of a Python datetime, to compare with a column's key."""
    if dialect_name == "sqlite":
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value
