"""Moving data (SPEC §10): JSON Lines export and import, and copying a whole database.

The three calls share one description of every row: each column has a *kind* (text, int,
float, flag, ts, json) and one canonical JSON form, the same whichever backend the row was
read from — text as stored (``NULL`` stays ``null``, ``''`` stays ``""``), integers, floats as
Python's ``repr`` (exact), flags as ``true``/``false``, times as ISO 8601 in UTC with six
fraction digits (``2025-01-15T18:30:00.123456+00:00``: every form hld or agentstore ever
stored — Go's nanoseconds truncated to the microsecond, as the store itself reads them), and
JSON columns as their JSON value.

**Export** (:func:`export_jsonl`) reads in one snapshot (``store.snapshot()``) a page at a
time in primary-key order — the next pages are read while the current one is written — so
memory stays bounded by a few pages (pages shrink for large rows, down to a single row)
whatever the size of the database. On SQLite the lines of events, raw events and snapshots
are built by SQLite itself (``json_object``), a whole page as one value, in the snapshot's
thread; rows whose times are not in the two forms the SQL knows (agentstore's, and hld's
``CURRENT_TIMESTAMP``) are built in Python like every other row. A path is written through a
temporary file in the same folder, created with mode 0600, fsynced and renamed over the
destination at the end: a failed or cancelled export leaves no partial file (and an existing
file untouched). A binary file object is written as it is, from the event loop's thread.

The file: a header line ``{"format": "agentstore", "version": 1, "revision": …,
"redacted": […], "counts": {…}, …}`` then one object per row with its ``"type"``:
``settings`` (full exports only: the settings are not a session's), ``session``,
``event``, ``approval``, ``mcp_server``, ``raw_event``, ``snapshot`` — in that order, so
that every session comes before the rows that belong to it. ``redacted`` names the columns
whose secrets were blanked (``sessions.proxy_api_key``; the values of
``mcp_servers.env_json``, whose names are kept), ``[]`` with ``include_secrets=True``.
``counts`` announces the rows per type, so that a truncated file is refused on import.
``schema_version`` (hld's migration ledger) is the database's, not data: it is not exported.

**Import** (:func:`import_jsonl`) runs in one ``store.transaction()``: on SQLite it holds
the file's write lock for its whole duration (other writers, an hld daemon included, wait,
up to their busy timeout), on PostgreSQL the store's tables are locked against other writers
(``SHARE ROW EXCLUSIVE``; readers go on). Lines are checked and converted while the batch
before them is being written; batches go in as multi-row ``INSERT`` on SQLite and binary
``COPY`` on PostgreSQL. A store need not be empty. Every line is checked (JSON object, known
type, known columns, each value of its column's kind) before its batch is written; a refused
line — malformed, an unknown type, a newer format version, a value of the wrong kind, a
conflict, a row the database refuses — is named by its number, and nothing is written.
Values come back exactly: ids, sequences, times to the microsecond, ``''`` vs ``NULL``, JSON
values. Integer ids (events, MCP servers, raw events, snapshots) are kept when their table
is empty at the start of the import; otherwise every imported row of that table is
renumbered after the highest id the table holds or ever gave (order kept; sequences never
change), and the agentstore logger says so. A missing nullable column reads as NULL (a file
from an older revision); an unknown column is refused.

``on_conflict="error"`` refuses the whole file if a session in it exists in the store, or if
a row belongs to a session that is in the store and not in the file; the file's settings
replace the store's. ``"skip"`` leaves existing sessions and every row of theirs alone (a
row of the file that belongs to one is skipped) and keeps the store's settings. A row whose
session is neither earlier in the file nor in the store is refused.

**Copy** (:func:`copy_database`): see its docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import json.decoder
import json.scanner
import logging
import operator
import os
import tempfile
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, NoReturn, cast

import sqlalchemy as sa

from agentstore.db import Conn, Statement
from agentstore.db.sqlite import VARIABLE_LIMIT, remove_created
from agentstore.db.statements import compile_function
from agentstore.errors import (
    ConstraintError,
    DatabaseError,
    InvalidValueError,
    LegacyDatabaseError,
    MigrationRequiredError,
    NotFoundError,
    StoreClosedError,
    StoreError,
)
from agentstore.models import Base, MCPServer
from agentstore.repos.maintenance import DATA_TABLES
from agentstore.types import (
    UTCDateTime,
    dump_json,
    format_local_timestamp,
    format_timestamp,
    load_json,
    read_timestamp,
    value_kind,
)
from agentstore.unicode61 import pg_document

if TYPE_CHECKING:
    from agentstore.store import Store

__all__ = [
    "FORMAT_VERSION",
    "TYPES",
    "CopyRefusedError",
    "ImportRefusedError",
    "VerificationError",
    "copy_database",
    "export_jsonl",
    "import_jsonl",
]

logger = logging.getLogger("agentstore")

FORMAT_VERSION: Final = 1
FORMAT_NAME: Final = "agentstore"

TYPE_TABLES: Final[dict[str, str]] = {
    "settings": "user_settings",
    "session": "sessions",
    "event": "conversation_events",
    "approval": "approvals",
    "mcp_server": "mcp_servers",
    "raw_event": "raw_events",
    "snapshot": "file_snapshots",
}
"""Line types and their tables, in the order an export writes them."""

TYPES: Final[tuple[str, ...]] = tuple(TYPE_TABLES)
DEPENDENT_TYPES: Final = ("event", "approval", "mcp_server", "raw_event", "snapshot")
COPY_TABLES: Final = ("user_settings", "schema_version", *DATA_TABLES)
"""What a copy writes, in order (sessions before the rows that refer to them)."""
ID_TABLES: Final = ("conversation_events", "mcp_servers", "raw_events", "file_snapshots")
"""Tables whose integer ids the database assigns (AUTOINCREMENT / a PostgreSQL sequence)."""
SECRETS: Final = ("sessions.proxy_api_key", "mcp_servers.env_json")
INT64_MAX: Final = 2**63 - 1
ZERO_TIME: Final = datetime(1, 1, 1, tzinfo=UTC)
"""A NOT NULL time whose stored text is not a time exports as Go's zero time (what hld
reads for it)."""

PAGE_BYTES: Final = 4 << 20
"""Pages of rows aim at this many bytes of JSON (memory stays a few pages whatever the size)."""
PAGE_ROWS: Final = 5_000
FIRST_PAGE_ROWS: Final = 64
IMPORT_BATCH_ROWS: Final = 2_000
IMPORT_BATCH_BYTES: Final = 4 << 20
PARSE_LINES: Final = 1_000


class ImportRefusedError(InvalidValueError):
    """An import refused (a malformed line, an unknown type, a newer format, a conflict, a
    row the database refuses); ``line`` is its line number (1 is the header) when there is
    one. Nothing was written."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}{message}; nothing was imported")


class CopyRefusedError(DatabaseError):
    """A copy refused before anything was written (the destination not empty, at another
    revision, an hld database, or the source itself); the destination was left as it was."""


class VerificationError(DatabaseError):
    """A copy whose destination did not read back the source's rows; it was rolled back."""


# --- columns and their kinds ----------------------------------------------------------------


@dataclass(frozen=True)
class _Col:
    name: str
    kind: str  # text, int, float, flag, ts, json
    nullable: bool
    local: bool = False  # a time hld writes in local time (SQLite)


@dataclass(frozen=True)
class _Table:
    name: str
    label: str  # the line type (the table's name for schema_version)
    table: sa.Table
    cols: tuple[_Col, ...]
    pk: str
    pk_at: int
    assigned_ids: bool  # integer ids the database assigns

    def at(self, name: str) -> int:
        return [c.name for c in self.cols].index(name)


# The store's value kinds (types.value_kind) as a line's JSON holds them: a status is text.
_KINDS: Final = {
    "datetime": "ts",
    "json": "json",
    "enum": "text",
    "bool": "flag",
    "int": "int",
    "float": "float",
    "str": "text",
}


def _kind(column: sa.Column[Any]) -> _Col:
    type_ = column.type
    local = isinstance(type_, UTCDateTime) and type_.local
    return _Col(column.key, _KINDS[value_kind(type_)], bool(column.nullable), local)


def _describe_tables() -> dict[str, _Table]:
    labels = {table: kind for kind, table in TYPE_TABLES.items()}
    tables: dict[str, _Table] = {}
    for name in COPY_TABLES:
        table = Base.metadata.tables[name]
        cols = tuple(_kind(c) for c in table.columns)
        pk = next(iter(table.primary_key.columns)).key
        tables[name] = _Table(
            name=name,
            label=labels.get(name, name),
            table=table,
            cols=cols,
            pk=pk,
            pk_at=[c.name for c in cols].index(pk),
            assigned_ids=name in ID_TABLES,
        )
    return tables


TABLES: Final = _describe_tables()
SQL_LINE_TABLES: tuple[str, ...] = ("conversation_events", "raw_events", "file_snapshots")
"""Tables whose export lines SQLite builds itself (no float, JSON or secret columns)."""


# --- canonical values: one JSON text per value, whatever the backend -------------------------

_quote: Callable[[str], str] = json.encoder.encode_basestring
_json_text: Callable[[Any], str] = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":")
).encode
_fromiso = datetime.fromisoformat
_EMPTY_STRING: Final = '""'
_REDACTOR: Final = MCPServer()


class _Odd(Exception):
    """A value the fast line maker does not handle: the row goes through the careful one."""


def _odd() -> Any:
    raise _Odd


def _sqlite_time(value: Any, nullable: bool) -> datetime | None:
    """A stored SQLite time as an aware UTC datetime (None: NULL, or not a time when the
    column may be NULL; the zero time when it may not)."""
    if value is None:
        return None
    found = read_timestamp(value)
    if found is None:
        return None if nullable else ZERO_TIME
    return found


def _pg_time(value: Any) -> datetime | None:
    if value is None:
        return None
    found: datetime = value if value.tzinfo is UTC else value.astimezone(UTC)
    return found


def _time_json(value: datetime | None) -> str:
    if value is None:
        return "null"
    return '"' + value.isoformat(timespec="microseconds") + '"'


def _ts_json_sqlite(value: Any, nullable: bool) -> str:
    return _time_json(_sqlite_time(value, nullable))


def _ts_json_pg(value: Any) -> str:
    return _time_json(_pg_time(value))


def _json_value_sqlite(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return load_json(value)


def _json_json_sqlite(value: Any) -> str:
    return _json_text(_json_value_sqlite(value))


def _json_json_pg(value: Any) -> str:
    return _json_text(value)


def _float_json(value: Any) -> str:
    if value.__class__ is float or value.__class__ is int:
        return _json_text(float(value))
    raise _Odd


def _redact_env(value: str) -> str:
    values = {"env_json": value}
    _REDACTOR._redact(values)
    return values["env_json"]


def _value_json(col: _Col, value: Any, dialect: str, redact: bool) -> str:
    """The careful form of one value's JSON text (the fast line makers agree with it)."""
    if value is None:
        return "null"
    if redact and col.name == "proxy_api_key":
        return _EMPTY_STRING
    kind = col.kind
    if kind == "text":
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        elif not isinstance(value, str):
            value = str(value)
        if redact and col.name == "env_json":
            value = _redact_env(value)
        return _quote(value)
    if kind == "int":
        return str(value) if value.__class__ is int else _json_text(value)
    if kind == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _json_text(float(value))
        return _json_text(value)
    if kind == "flag":
        return "true" if value else "false"
    if kind == "ts":
        if dialect == "sqlite":
            return _ts_json_sqlite(value, col.nullable)
        return _ts_json_pg(value)
    if dialect == "sqlite":  # json
        return _json_json_sqlite(value)
    return _json_json_pg(value)


_HELPERS: Final[dict[str, Any]] = {
    "_q": _quote,
    "_odd": _odd,
    "_tsl": _ts_json_sqlite,
    "_tsp": _ts_json_pg,
    "_jsl": _json_json_sqlite,
    "_jsp": _json_json_pg,
    "_fl": _float_json,
    "_renv": _redact_env,
    "_E": _EMPTY_STRING,
}


def _fast_expr(col: _Col, v: str, dialect: str, redact: bool) -> str:
    null = f'"null" if {v} is None else ' if col.nullable else ""
    kind = col.kind
    if redact and col.name == "proxy_api_key":
        return f'("null" if {v} is None else _E)'
    if kind == "text":
        if redact and col.name == "env_json":
            return f"({null}_q(_renv({v})))"
        return f"({null}_q({v}))"
    if kind == "int":
        return f"({null}({v} if {v}.__class__ is int else _odd()))"
    if kind == "float":
        return f"({null}_fl({v}))"
    if kind == "flag":
        return f'({null}("true" if {v} else "false"))'
    if kind == "ts":
        if dialect == "sqlite":
            return f"_tsl({v}, {col.nullable})"
        return f"_tsp({v})"
    return f"_jsl({v})" if dialect == "sqlite" else f"_jsp({v})"


LineMaker = Callable[[Sequence[Any]], str]


def _line_maker(table: _Table, dialect: str, redact: bool) -> LineMaker:
    """``row -> line``: a driver row of every column of ``table`` as its JSON line (with
    its ``"type"`` and a final newline), in the canonical form described in the module."""
    names = [f"v{i}" for i in range(len(table.cols))]
    head = '{"type":' + _quote(table.label)
    pieces = [head]
    for col, name in zip(table.cols, names, strict=True):
        pieces.append(f',"{col.name}":{{{_fast_expr(col, name, dialect, redact)}}}')
    body = "".join(pieces).replace('{"type"', '{{"type"', 1) + "}}\\n"
    source = f"def generated(row):\n    ({', '.join(names)},) = row\n    return f'{body}'\n"
    fast = compile_function(
        source, f"<agentstore export line of {table.name} on {dialect}>", _HELPERS
    )

    def careful(row: Sequence[Any]) -> str:
        parts = [head]
        for col, value in zip(table.cols, row, strict=True):
            try:
                text = _value_json(col, value, dialect, redact)
            except (ValueError, TypeError, UnicodeError, RecursionError) as exc:
                raise StoreError(
                    f"{table.name} row {row[table.pk_at]!r}: its {col.name} cannot be "
                    f"written as JSON ({type(exc).__name__}); nothing was exported"
                ) from None
            parts.append(f',"{col.name}":{text}')
        return "".join(parts) + "}\n"

    def make(row: Sequence[Any]) -> str:
        try:
            line: str = fast(row)
        except Exception:
            return careful(row)
        return line

    return make


_MAKERS: dict[tuple[str, str, bool], LineMaker] = {}


def line_maker(table: str, dialect: str, *, redact: bool = False) -> LineMaker:
    """The (cached) line maker of a table on a backend."""
    key = (table, dialect, redact)
    maker = _MAKERS.get(key)
    if maker is None:
        maker = _MAKERS[key] = _line_maker(TABLES[table], dialect, redact)
    return maker


# --- SQLite builds the lines of the big tables itself ---------------------------------------


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_line(table: _Table) -> sa.ColumnElement[Any]:
    """SQLite's own line for a row, without its newline (``json_object``, read as bytes; a
    BLOB makes the query fail, and the table is exported in Python instead).

    Times must be in agentstore's form (``2025-01-15 18:30:00.123456+00:00``) or SQLite's
    ``CURRENT_TIMESTAMP`` form (hld's rows): checked by shape only (length and separators),
    so a value of that shape that is not a real time (month 13) is exported as written —
    and refused, naming its line, by an import. A row holding any other form reads NULL
    here and is built in Python (Go's times, offsets, Unix seconds)."""
    args: list[str] = [_sql_string("type"), _sql_string(table.label)]
    known: list[str] = []
    for col in table.cols:
        c = col.name
        args.append(_sql_string(c))
        if col.kind in ("text", "int"):
            args.append(c)
        elif col.kind == "flag":
            args.append(
                f"CASE WHEN {c} IS NULL THEN NULL WHEN {c} THEN json('true') ELSE json('false') END"
            )
        elif col.kind == "ts":
            args.append(  # one space in either form (checked below): it becomes the T
                f"CASE length({c}) WHEN 32 THEN replace({c}, ' ', 'T') "
                f"WHEN 19 THEN replace({c}, ' ', 'T') || '.000000+00:00' END"
            )
            form = (
                f"((length({c}) = 32 AND substr({c}, 27) = '+00:00' AND substr({c}, 20, 1) = '.'"
                f" OR length({c}) = 19) AND substr({c}, 11, 1) = ' ' "
                f"AND typeof({c}) = 'text')"
            )
            known.append(f"({c} IS NULL OR {form})" if col.nullable else form)
        else:  # pragma: no cover - such tables are exported in Python
            raise AssertionError(f"no SQL line for a {col.kind} column")
    line = f"CAST(json_object({', '.join(args)}) AS BLOB)"
    if known:
        line = f"CASE WHEN {' AND '.join(known)} THEN {line} END"
    return sa.literal_column(line).label("line")


# --- reading a table a page at a time ---------------------------------------------------------


@dataclass(frozen=True)
class _PageQuery:
    first: Statement
    after: Statement
    range: Statement
    bounds: Statement


_PAGE_QUERIES: dict[tuple[str, str, bool], _PageQuery] = {}
READS_AHEAD: Final = 2
"""Pages of an id-ranged table being read while the caller works on the one before."""


def _page_query(table: _Table, shape: str, by_session: bool) -> _PageQuery:
    """``shape``: ``rows`` (every column) or ``blob`` (SQLite's own lines, a page as one
    value: see :func:`_blob`)."""
    key = (table.name, shape, by_session)
    found = _PAGE_QUERIES.get(key)
    if found is not None:
        return found
    t = table.table
    pk = t.c[table.pk]
    columns: list[Any] = list(t.columns) if shape == "rows" else [_sql_line(table), pk]
    base = sa.select(*columns)
    if by_session:
        base = base.where(t.c.session_id == sa.bindparam("session_id", type_=sa.Text()))
    limit = sa.bindparam("limit", type_=sa.Integer())
    after = sa.bindparam("after", type_=pk.type)
    first = base.order_by(pk).limit(limit)
    following = base.where(pk > after).order_by(pk).limit(limit)
    ranged = base.where(pk > after, pk <= sa.bindparam("upto", type_=pk.type)).order_by(pk)
    bounds = sa.select(sa.func.min(pk), sa.func.max(pk))
    if shape == "blob":
        first, following, ranged = (_blob(page) for page in (first, following, ranged))
    found = _PAGE_QUERIES[key] = _PageQuery(
        Statement(first), Statement(following), Statement(ranged), Statement(bounds)
    )
    return found


def _blob(page: sa.Select[Any]) -> Any:
    """A page of SQLite's lines as one value: ``(lines joined by newlines, rows, rows with a
    line, lowest key, highest key)`` — one row, so the reading thread takes Python's lock
    once per page instead of once per row. The lines keep the page's order."""
    inner = page.subquery()
    lines, key = inner.c.line, list(inner.c)[1]
    return sa.select(
        sa.cast(sa.func.group_concat(lines, sa.literal_column("char(10)")), sa.LargeBinary),
        sa.func.count(),
        sa.func.count(lines),
        sa.func.min(key),
        sa.func.max(key),
    ).select_from(inner)


class _Pager:
    """A table's rows in primary-key order, a page at a time, read while the caller works
    on the page before. Pages aim at :data:`PAGE_BYTES` (the caller reports the bytes of
    each page), starting small and never above :data:`PAGE_ROWS` rows.

    A table whose integer ids the database assigns is read by ranges of ids, which need
    not wait for the page before: :data:`READS_AHEAD` of them are queued at once, so the
    connection's thread never idles between pages. Other tables (and one session's rows)
    are read by keyset: the next page after the last key of this one.
    """

    def __init__(
        self,
        db: Any,
        table: _Table,
        *,
        shape: str = "rows",
        session_id: str | None = None,
        after: Any = None,
    ) -> None:
        self._db = db
        self._table = table
        self._query = _page_query(table, shape, session_id is not None)
        self._values: dict[str, Any] = {} if session_id is None else {"session_id": session_id}
        self._key_at = table.pk_at if shape == "rows" else 1
        self._limit = FIRST_PAGE_ROWS
        self._after = after
        self._ranged = session_id is None and table.assigned_ids
        self._blob = shape == "blob"

    def feedback(self, rows: int, size: int) -> None:
        """The caller's bytes for a page of ``rows`` rows: sizes the pages that follow."""
        if rows <= 0:
            return
        per_row = max(1, size // rows)
        wanted = max(1, min(PAGE_ROWS, PAGE_BYTES // per_row))
        self._limit = min(wanted, self._limit * 4)

    def _read(self, statement: Statement, values: dict[str, Any]) -> asyncio.Future[list[Any]]:
        async def unit(conn: Conn) -> list[Any]:
            return await conn.rows(statement, values)

        return _background(self._db.read(unit))

    async def pages(self) -> AsyncGenerator[list[Any], None]:
        if self._ranged:
            generator = self._by_ranges()
        else:
            generator = self._by_keyset()
        async with contextlib.aclosing(generator) as pages:
            async for rows in pages:
                yield rows

    async def _by_keyset(self) -> AsyncGenerator[list[Any], None]:
        def read(after: Any) -> tuple[asyncio.Future[list[Any]], int]:
            values = {**self._values, "limit": self._limit}
            if after is None:
                return self._read(self._query.first, values), self._limit
            return self._read(self._query.after, {**values, "after": after}), self._limit

        pending: tuple[asyncio.Future[list[Any]], int] | None = read(self._after)
        try:
            while pending is not None:
                future, limit = pending
                rows = await future
                pending = None
                if self._blob:  # one row: (lines, rows, rows with a line, lowest, highest)
                    if rows[0][1] == limit:
                        pending = read(rows[0][4])
                    if rows[0][1]:
                        yield rows
                    continue
                if len(rows) == limit:  # maybe more: read on while the caller works
                    pending = read(rows[-1][self._key_at])
                if rows:
                    yield rows
        finally:
            if pending is not None:
                await _cancel(pending[0])

    async def _by_ranges(self) -> AsyncGenerator[list[Any], None]:
        [(low, high)] = await self._read(self._query.bounds, {})
        if high is None:
            return
        start = low - 1 if self._after is None else max(self._after, low - 1)
        queued: deque[asyncio.Future[list[Any]]] = deque()

        def queue_next() -> None:
            nonlocal start
            upto = min(high, start + self._limit)  # ids are unique: at most _limit rows
            queued.append(self._read(self._query.range, {"after": start, "upto": upto}))
            start = upto

        try:
            while start < high and len(queued) < READS_AHEAD:
                queue_next()
            while queued:
                rows = await queued.popleft()
                while start < high and len(queued) < READS_AHEAD:
                    queue_next()
                if rows and (not self._blob or rows[0][1]):
                    yield rows
        finally:
            for future in queued:
                await _cancel(future)


async def _cancel(future: asyncio.Future[Any]) -> None:
    future.cancel()
    with contextlib.suppress(BaseException):
        await future


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _background(coroutine: Any) -> asyncio.Future[Any]:
    task: asyncio.Future[Any] = asyncio.ensure_future(coroutine)
    task.add_done_callback(_retrieve)
    return task


# --- export -----------------------------------------------------------------------------------


def _count_statement(table: _Table) -> Statement:
    t = table.table
    return Statement(
        sa.select(sa.func.count())
        .select_from(t)
        .where(t.c.session_id == sa.bindparam("session_id", type_=sa.Text()))
    )


_COUNT_OF_SESSION: Final = {
    kind: _count_statement(TABLES[TYPE_TABLES[kind]]) for kind in DEPENDENT_TYPES
}
_SESSION_PARENT: Final = Statement(
    sa.select(TABLES["sessions"].table.c.id, TABLES["sessions"].table.c.parent_session_id).where(
        TABLES["sessions"].table.c.id == sa.bindparam("id", type_=sa.Text())
    )
)
_SESSION_BY_ID: Final = Statement(
    sa.select(*TABLES["sessions"].table.columns).where(
        TABLES["sessions"].table.c.id == sa.bindparam("id", type_=sa.Text())
    )
)


def _lines_between(table: _Table, by_session: bool) -> Statement:
    t = table.table
    statement = sa.select(_sql_line(table), t.c.id).where(
        t.c.id >= sa.bindparam("low", type_=t.c.id.type),
        t.c.id <= sa.bindparam("high", type_=t.c.id.type),
    )
    if by_session:
        statement = statement.where(t.c.session_id == sa.bindparam("session_id", type_=sa.Text()))
    return Statement(statement.order_by(t.c.id))


_LINES_BETWEEN: Final = {
    (name, by_session): _lines_between(TABLES[name], by_session)
    for name in SQL_LINE_TABLES
    for by_session in (False, True)
}
_ROW_BY_ID: Final = {
    name: Statement(
        sa.select(*TABLES[name].table.columns).where(
            TABLES[name].table.c.id == sa.bindparam("id", type_=TABLES[name].table.c.id.type)
        )
    )
    for name in SQL_LINE_TABLES
}


def _session_ids(value: Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidValueError("session_ids must be a list of session ids, or None")
    ids = list(dict.fromkeys(value))
    for item in ids:
        if not isinstance(item, str) or not item:
            raise InvalidValueError("session_ids must hold non-empty session id strings")
    return ids


async def _with_ancestors(snap: Any, wanted: list[str]) -> list[str]:
    """The sessions asked for and all their ancestors, sorted; NotFoundError for one asked
    for that does not exist."""

    async def unit(conn: Conn) -> list[str]:
        chosen: set[str] = set()
        for session_id in wanted:
            rows = await conn.rows(_SESSION_PARENT, {"id": session_id})
            if not rows:
                raise NotFoundError("session", session_id)
            chosen.add(session_id)
            parent = rows[0][1]
            while parent and parent not in chosen:
                rows = await conn.rows(_SESSION_PARENT, {"id": parent})
                if not rows:  # a parent that was deleted: the chain ends here
                    break
                chosen.add(parent)
                parent = rows[0][1]
        return sorted(chosen)

    result: list[str] = await snap.read(unit)
    return result


async def _subset_counts(snap: Any, sessions: list[str]) -> dict[str, int]:
    async def unit(conn: Conn) -> dict[str, int]:
        counts = dict.fromkeys(TYPES, 0)
        counts["session"] = len(sessions)
        for session_id in sessions:
            for kind, statement in _COUNT_OF_SESSION.items():
                rows = await conn.rows(statement, {"session_id": session_id})
                counts[kind] += int(rows[0][0])
        return counts

    result: dict[str, int] = await snap.read(unit)
    return result


SYNC_EVERY: Final = 64 << 20
"""An export file is flushed to disk in the background every this many bytes, so that its
final fsync does not wait for the whole file (a machine with memory to spare keeps
gigabytes of it unwritten until then)."""
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


class _Output:
    """Where export lines go: a temporary file renamed over the path at the end, or the
    caller's binary file object."""

    def __init__(self, dest: str | os.PathLike[str] | BinaryIO) -> None:
        self.path: Path | None = None
        self._temp: Path | None = None
        self._unsynced = 0
        self._syncer: ThreadPoolExecutor | None = None
        self._syncing: Future[None] | None = None
        if isinstance(dest, str | os.PathLike):
            text = os.fspath(dest)
            if not text.strip():
                raise InvalidValueError("the export path is empty")
            self.path = Path(text).expanduser().absolute()
            if self.path.is_dir():
                raise StoreError(f"{self.path} is a directory; give the path of a file")
            folder = self.path.parent
            if not folder.is_dir():
                raise StoreError(f"{folder} does not exist; nothing was exported")
            try:
                fd, name = tempfile.mkstemp(
                    prefix=f".{self.path.name}.", suffix=".agentstore-export", dir=folder
                )
            except OSError as exc:
                raise StoreError(f"{self.path} cannot be written: {exc.strerror or exc}") from None
            os.fchmod(fd, 0o600)  # mkstemp's mode already; the umask cannot widen it
            self._temp = Path(name)
            self.file: BinaryIO = open(fd, "wb", buffering=1 << 20)
            self._syncer = ThreadPoolExecutor(1, thread_name_prefix="agentstore-export-sync")
        else:
            if isinstance(dest, io.TextIOBase) or not hasattr(dest, "write"):
                raise InvalidValueError(
                    "dest must be a path or a binary file object (opened with 'wb')"
                )
            self.file = dest

    def write(self, data: bytes) -> None:
        try:
            self.file.write(data)
            if self._syncer is not None:
                self._unsynced += len(data)
                if self._unsynced >= SYNC_EVERY and (self._syncing is None or self._syncing.done()):
                    self._wait_for_sync()  # its error, if it failed
                    self.file.flush()
                    self._syncing = self._syncer.submit(_datasync, self.file.fileno())
                    self._unsynced = 0
        except TypeError:
            raise InvalidValueError(
                "dest must be a path or a binary file object (opened with 'wb')"
            ) from None
        except OSError as exc:
            where = self.path or "the export file"
            raise StoreError(f"{where} cannot be written: {exc.strerror or exc}") from None

    def _wait_for_sync(self) -> None:
        if self._syncing is not None:
            syncing, self._syncing = self._syncing, None
            syncing.result()

    def commit(self) -> None:
        if self.path is None:
            flush = getattr(self.file, "flush", None)
            if flush is not None:
                flush()
            return
        assert self._temp is not None
        try:
            self.file.flush()
            self._wait_for_sync()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self._temp, self.path)
        except OSError as exc:
            raise StoreError(f"{self.path} cannot be written: {exc.strerror or exc}") from None
        finally:
            self._stop_syncer()
        self._temp = None

    def _stop_syncer(self) -> None:
        if self._syncer is not None:
            with contextlib.suppress(Exception):
                self._wait_for_sync()
            self._syncer.shutdown(wait=True)
            self._syncer = None

    def discard(self) -> None:
        self._stop_syncer()
        if self._temp is None:
            return
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            self._temp.unlink()
        self._temp = None


async def export_jsonl(
    store: Store,
    dest: str | os.PathLike[str] | BinaryIO,
    *,
    session_ids: Sequence[str] | None = None,
    include_secrets: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Write JSON Lines: a header, then one object per row; returns counts per type.

    ``dest`` is a path (written through a temporary file, mode 0600, renamed at the end;
    an existing file is replaced only once the export is complete) or a binary file object.
    ``session_ids``: those sessions, their ancestors and every row that belongs to them
    (:class:`~agentstore.errors.NotFoundError` for one that does not exist, before anything
    is written); no settings line then. Secrets are written as ``""`` unless
    ``include_secrets``; the header's ``redacted`` names them. ``progress(rows done, rows
    total)`` is called as pages are written. Everything is read in one snapshot. See the
    module for the format.
    """
    from agentstore import migrations

    wanted = _session_ids(session_ids)
    if not isinstance(include_secrets, bool):
        raise InvalidValueError("include_secrets must be bool")
    redact = not include_secrets
    dialect = store.dialect
    output = _Output(dest)
    written = dict.fromkeys(TYPES, 0)
    try:
        async with store.snapshot() as snap:
            if wanted is None:
                sessions: list[str] | None = None
                rows = await snap.maintenance.row_counts()
                expected = {kind: rows[table] for kind, table in TYPE_TABLES.items()}
            else:
                sessions = await _with_ancestors(snap, wanted)
                expected = await _subset_counts(snap, sessions)
            total = sum(expected.values())
            header = {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "revision": migrations.head_revision(),
                "exported_at": datetime.now(UTC).isoformat(timespec="microseconds"),
                "backend": dialect,
                "redacted": list(SECRETS) if redact else [],
                "sessions": sessions,
                "counts": expected,
            }
            output.write((json.dumps(header, ensure_ascii=False) + "\n").encode())
            done = [0]

            def tick(kind: str, count: int) -> None:
                written[kind] += count
                done[0] += count
                if progress is not None:
                    progress(done[0], total)

            for kind, table_name in TYPE_TABLES.items():
                table = TABLES[table_name]
                if sessions is None:
                    await _export_table(snap, table, None, dialect, redact, output, tick)
                elif kind == "session":
                    await _export_sessions(snap, sessions, dialect, redact, output, tick)
                elif kind != "settings":
                    for session_id in sessions:
                        await _export_table(snap, table, session_id, dialect, redact, output, tick)
        output.commit()
    except BaseException:
        output.discard()
        raise
    return written


async def _export_table(
    snap: Any,
    table: _Table,
    session_id: str | None,
    dialect: str,
    redact: bool,
    output: _Output,
    tick: Callable[[str, int], None],
) -> None:
    sql_lines = dialect == "sqlite" and table.name in SQL_LINE_TABLES
    maker = line_maker(table.name, dialect, redact=redact)
    after: Any = None
    while True:
        shape = "blob" if sql_lines else "rows"
        pager = _Pager(snap, table, shape=shape, session_id=session_id, after=after)
        try:
            async with contextlib.aclosing(pager.pages()) as pages:
                async for rows in pages:
                    if sql_lines:
                        [(data, count, built, low, high)] = rows
                        if built != count:  # some rows are left to Python
                            data = await _sql_page(snap, table, session_id, low, high, maker)
                        output.write(data)
                        if built == count:  # (written apart: data + newline copies the page)
                            output.write(b"\n")
                    else:
                        count, high = len(rows), rows[-1][table.pk_at]
                        data = "".join(map(maker, rows)).encode("utf-8")
                        output.write(data)
                    pager.feedback(count, len(data))
                    tick(table.label, count)
                    after = high
            return
        except DatabaseError:
            if not sql_lines:
                raise
            sql_lines = False  # a value SQLite's JSON cannot hold (a BLOB): go on in Python


async def _sql_page(
    snap: Any, table: _Table, session_id: str | None, low: Any, high: Any, maker: LineMaker
) -> bytes:
    """The lines of the rows with keys ``low..high`` (of one session), each from SQLite or,
    for the rows it leaves to Python, from Python."""
    statement = _LINES_BETWEEN[(table.name, session_id is not None)]
    values = {"low": low, "high": high, "session_id": session_id}
    by_id = _ROW_BY_ID[table.name]

    async def unit(conn: Conn) -> bytes:
        lines: list[bytes] = []
        for line, key in await conn.rows(statement, values):
            if line is None:
                [row] = await conn.rows(by_id, {"id": key})
                line = maker(row)[:-1].encode("utf-8")
            lines.append(line)
        return b"\n".join(lines) + b"\n"

    data: bytes = await snap.read(unit)
    return data


async def _export_sessions(
    snap: Any,
    sessions: list[str],
    dialect: str,
    redact: bool,
    output: _Output,
    tick: Callable[[str, int], None],
) -> None:
    maker = line_maker("sessions", dialect, redact=redact)
    for start in range(0, len(sessions), 500):
        chunk = sessions[start : start + 500]

        async def unit(conn: Conn, chunk: list[str] = chunk) -> list[Any]:
            found: list[Any] = []
            for session_id in chunk:
                found.extend(await conn.rows(_SESSION_BY_ID, {"id": session_id}))
            return found

        rows = await snap.read(unit)
        output.write("".join(map(maker, rows)).encode("utf-8"))
        tick("session", len(rows))


# --- import: from a line's object to the driver's values -------------------------------------


class _Bad(Exception):
    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


def _bad(column: str, expected: str, value: Any) -> Any:
    got = "null" if value is None else type(value).__name__
    raise _Bad(column, f"must be {expected}, not {got}")


def _parse_time(value: Any, column: str) -> datetime:
    if value.__class__ is not str:
        _bad(column, "an ISO 8601 time with its UTC offset", value)
    try:
        parsed = _fromiso(value)
    except ValueError:
        raise _Bad(column, f"{value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise _Bad(column, f"{value!r} has no UTC offset")
    if parsed.tzinfo is not UTC:
        try:
            parsed = parsed.astimezone(UTC)
        except OverflowError:
            raise _Bad(column, f"{value!r} is out of range in UTC") from None
    return parsed


def _time_in_sqlite(value: Any, column: str) -> str:
    return format_timestamp(_parse_time(value, column))


def _time_in_sqlite_local(value: Any, column: str) -> str:
    return format_local_timestamp(_parse_time(value, column))


def _json_in(value: Any, column: str) -> str:
    try:
        return dump_json(value)
    except ValueError:
        raise _Bad(column, "NaN and Infinity are not JSON values") from None


def _float_in(value: Any, column: str) -> float:
    if value.__class__ is float:
        return float(value)
    if value.__class__ is int:
        try:
            return float(value)
        except OverflowError:
            raise _Bad(column, "is out of a float's range") from None
    return cast(float, _bad(column, "a number", value))


_IMPORT_HELPERS: Final[dict[str, Any]] = {
    "_bad": _bad,
    "_pt": _parse_time,
    "_tis": _time_in_sqlite,
    "_til": _time_in_sqlite_local,
    "_ji": _json_in,
    "_fi": _float_in,
    "_MAX": INT64_MAX,
}


def _import_lines(col: _Col, index: int, dialect: str, renumber: bool) -> list[str]:
    """Statements that check ``x`` (the column's value in the line) and set ``c{index}``."""
    name = col.name
    out = f"c{index}"
    none_ok = "x is None or " if col.nullable else ""
    lines = [f"    x = d[{name!r}]"]
    if col.kind == "text":
        lines.append(f"    if not ({none_ok}x.__class__ is str): _bad({name!r}, 'text', x)")
        lines.append(f"    {out} = x")
    elif col.kind == "int":
        if renumber:
            lines.append(
                f"    if x.__class__ is not int or not 1 <= x <= _MAX: "
                f"_bad({name!r}, 'a positive 64-bit integer', x)"
            )
            lines.append(f"    {out} = x + offset")
        else:
            lines.append(
                f"    if not ({none_ok}(x.__class__ is int and -_MAX - 1 <= x <= _MAX)): "
                f"_bad({name!r}, 'a 64-bit integer', x)"
            )
            lines.append(f"    {out} = x")
    elif col.kind == "float":
        lines.append(f"    {out} = None if x is None else _fi(x, {name!r})")
        if not col.nullable:
            lines.append(f"    if {out} is None: _bad({name!r}, 'a number', x)")
    elif col.kind == "flag":
        lines.append(
            f"    if not ({none_ok}x is True or x is False): _bad({name!r}, 'true or false', x)"
        )
        if dialect == "sqlite":
            lines.append(f"    {out} = None if x is None else (1 if x else 0)")
        else:
            lines.append(f"    {out} = x")
    elif col.kind == "ts":
        if dialect == "sqlite":
            convert = f"_til(x, {name!r})" if col.local else f"_tis(x, {name!r})"
        else:
            convert = f"_pt(x, {name!r})"
        if col.nullable:
            lines.append(f"    {out} = None if x is None else {convert}")
        else:
            lines.append(f"    {out} = {convert}")
    else:  # json: any JSON value, null included (stored as the JSON text null)
        lines.append(f"    {out} = _ji(x, {name!r})")
    return lines


def _careful_converter(table: _Table, dialect: str) -> Callable[[dict[str, Any], int], Any]:
    """Checks column by column, raising :class:`_Bad` for the first wrong value."""
    body: list[str] = []
    for index, col in enumerate(table.cols):
        renumber = table.assigned_ids and col.name == table.pk
        body.extend(_import_lines(col, index, dialect, renumber))
    outs = ", ".join(f"c{i}" for i in range(len(table.cols)))
    source = "def generated(d, offset):\n" + "\n".join(body) + f"\n    return ({outs},)\n"
    converter: Callable[[dict[str, Any], int], Any] = compile_function(
        source, f"<agentstore import of {table.name} on {dialect}>", _IMPORT_HELPERS
    )
    return converter


def _time_in_sqlite_fast(value: str, column: str) -> str:
    # The form export writes (UTC, six fraction digits) becomes agentstore's SQLite text by
    # swapping one character, once the datetime parser has accepted it.
    if (
        len(value) == 32
        and value[10] == "T"
        and value[26:] == "+00:00"
        and value[19] == "."
        and value[4] == "-"
        and value[7] == "-"
    ):
        try:
            _fromiso(value)
        except ValueError:
            raise _Bad(column, f"{value!r} is not an ISO 8601 time") from None
        return value[:10] + " " + value[11:]
    return _time_in_sqlite(value, column)


_IMPORT_HELPERS["_tisf"] = _time_in_sqlite_fast

_ALLOWED: Final[dict[str, frozenset[type]]] = {
    "text": frozenset({str}),
    "int": frozenset({int}),
    "float": frozenset({float, int}),
    "flag": frozenset({bool}),
    "ts": frozenset({str}),
}


def _fast_value(col: _Col, v: str, dialect: str, renumber: bool) -> tuple[str | None, str]:
    """A range check (or None) and the converted value's expression, for a value whose
    type was already checked."""
    name = col.name
    kind = col.kind
    maybe = f"{v} is None or " if col.nullable else ""
    if kind == "int":
        if renumber:
            return f"1 <= {v} <= _MAX", f"{v} + offset"
        return f"{maybe}-_MAX - 1 <= {v} <= _MAX", v
    if kind == "float":
        return None, f"(None if {v} is None else _fi({v}, {name!r}))"
    if kind == "flag":
        if dialect != "sqlite":
            return None, v
        if col.nullable:
            return None, f"(None if {v} is None else (1 if {v} else 0))"
        return None, f"(1 if {v} else 0)"
    if kind == "ts":
        if dialect == "sqlite":
            convert = f"_til({v}, {name!r})" if col.local else f"_tisf({v}, {name!r})"
        else:
            convert = f"_pt({v}, {name!r})"
        return None, (f"(None if {v} is None else {convert})" if col.nullable else convert)
    if kind == "json":
        return None, f"_ji({v}, {name!r})"
    return None, v


def _import_converter(
    table: _Table, dialect: str
) -> Callable[[dict[str, Any], int], tuple[Any, ...]]:
    """``(line's object, id offset) -> driver row``. Every value's type is checked in one
    pass (a ``map`` over the row), then the few that need it are converted; anything out
    of the ordinary goes to the careful converter, which names the wrong column."""
    careful = _careful_converter(table, dialect)
    names = [f"v{i}" for i in range(len(table.cols))]
    allowed: list[frozenset[type]] = []
    checks: list[str] = []
    values: list[str] = []
    for col, v in zip(table.cols, names, strict=True):
        if col.kind == "json":
            allowed.append(frozenset({str, int, float, bool, list, dict, type(None)}))
        else:
            kinds = _ALLOWED[col.kind]
            allowed.append(kinds | {type(None)} if col.nullable else kinds)
        check, value = _fast_value(col, v, dialect, table.assigned_ids and col.name == table.pk)
        if check is not None:
            checks.append(f"({check})")
        values.append(value)
    guard = " and ".join(checks) or "True"
    source = (
        "def generated(d, offset):\n"
        "    row = _get(d)\n"
        "    if not _all(_map(_in, _allowed, _map(_type, row))):\n"
        "        return _careful(d, offset)\n"
        f"    ({', '.join(names)},) = row\n"
        f"    if not ({guard}):\n"
        "        return _careful(d, offset)\n"
        f"    return ({', '.join(values)},)\n"
    )
    namespace = {
        **_IMPORT_HELPERS,
        "_get": operator.itemgetter(*(c.name for c in table.cols)),
        "_all": all,
        "_map": map,
        "_in": frozenset.__contains__,
        "_type": type,
        "_allowed": tuple(allowed),
        "_careful": careful,
    }
    converter: Callable[[dict[str, Any], int], tuple[Any, ...]] = compile_function(
        source, f"<agentstore import of {table.name} on {dialect}>", namespace
    )
    return converter


def _check_keys(table: _Table, obj: dict[str, Any]) -> None:
    """Refuse unknown columns; a missing nullable column reads as NULL (mutates ``obj``)."""
    known = {c.name for c in table.cols}
    unknown = sorted(key for key in obj if key != "type" and key not in known)
    if unknown:
        raise _Bad(unknown[0], f"is not a column of {table.name} (a newer agentstore's file?)")
    for col in table.cols:
        if col.name not in obj:
            if not col.nullable:
                raise _Bad(col.name, "is missing")
            obj[col.name] = None


# --- writing batches ----------------------------------------------------------------------


_INSERT_SQL: dict[tuple[str, int], str] = {}


def _sqlite_insert_sql(table: _Table, rows: int) -> str:
    key = (table.name, rows)
    sql = _INSERT_SQL.get(key)
    if sql is None:
        marks = "(" + ", ".join("?" * len(table.cols)) + ")"
        columns = ", ".join(c.name for c in table.cols)
        # Table and column names are the store's own (from the models), never input.
        sql = _INSERT_SQL[key] = (
            f"INSERT INTO {table.name} ({columns}) VALUES "  # noqa: S608
            + ", ".join([marks] * rows)
        )
    return sql


async def _insert(conn: Conn, table: _Table, rows: Sequence[Sequence[Any]]) -> None:
    """Insert driver-encoded rows: multi-row INSERTs on SQLite, binary COPY on PostgreSQL."""
    if not rows:
        return
    if conn.dialect != "sqlite":
        await conn.insert_many(table.name, [c.name for c in table.cols], rows)
        return
    per_statement = max(1, min(1000, VARIABLE_LIMIT // len(table.cols)))
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        await conn.raw_rows(_sqlite_insert_sql(table, len(chunk)), list(chain.from_iterable(chunk)))


def _insert_unit(
    table: _Table, rows: Sequence[Sequence[Any]], documents: list[list[Any]] | None = None
) -> Callable[[Conn], Any]:
    async def unit(conn: Conn) -> None:
        if documents and documents[0]:
            # First: one message, and the server works on it while the client makes the
            # next batch (the COPY after it needs the client's event loop to go on).
            await conn.raw_rows(_INSERT_DOCUMENTS, documents)
        await _insert(conn, table, rows)

    return unit


# --- a copy's (and an import's) search index on PostgreSQL ------------------------------------
# An import does the same with the trigger disabled, but keeps the GIN index: the store it
# imports into may hold other sessions, searched meanwhile.
# The insert trigger's agentstore_document() costs 70-150 µs an event in plpgsql: most of
# a copy's time. A copy into PostgreSQL builds the same documents on the client instead
# (unicode61.pg_document: the same tsvector literal, tested equal for every code point and
# limit), beside each batch, while the last batch is written, and inserts them with the
# events; the trigger is disabled for the copy's own transaction only (ALTER TABLE is
# transactional: a copy that fails or is cancelled rolls it back with everything else). The
# documents' GIN index is dropped for the copy and built again at its end, from its own
# definition (one sort instead of an insertion per lexeme; the destination is empty, and
# DROP INDEX locks the search table: a search of it waits for the copy). The rows and
# columns are revision 0005's. The trigger does the work as usual when it is not in its
# ordinary state (enabled, 'O': one set to fire always or only on replicas is left alone)
# or the store's role does not own the table; an index in a tablespace of its own, or
# owned by another role, is kept (pg_get_indexdef does not name the tablespace).
_SEARCH_TRIGGER: Final = "agentstore_search_events_insert"
_CLIENT_DOCUMENTS_POSSIBLE: Final = (
    "SELECT EXISTS (SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
    "WHERE c.oid = 'conversation_events'::regclass AND t.tgname = $1 AND t.tgenabled = 'O' "
    "AND pg_has_role(current_user, c.relowner, 'USAGE'))"
)
_TRIGGER_SWITCH: Final = "ALTER TABLE conversation_events {action} TRIGGER " + _SEARCH_TRIGGER
_DOCUMENT_INDEX: Final = "ix_agentstore_search_document"
_INDEX_DEFINITION: Final = (
    "SELECT pg_get_indexdef(c.oid) FROM pg_class c WHERE c.oid = to_regclass($1) "
    "AND pg_has_role(current_user, c.relowner, 'USAGE') AND c.reltablespace = 0"
)
_INSERT_DOCUMENTS: Final = (
    "INSERT INTO agentstore_search (event_id, session_id, field, created_at, document) "
    "SELECT e, s, f, c, d::tsvector FROM unnest($1::bigint[], $2::text[], $3::smallint[], "
    "$4::timestamptz[], $5::text[]) AS u(e, s, f, c, d)"
)
# The trigger's fields and their codes (revision 0005).
_DOCUMENT_FIELDS: Final = (("content", 3), ("tool_input_json", 4), ("tool_result_content", 5))


@dataclass(frozen=True)
class _ClientDocuments:
    index: str | None  # the GIN index's definition, to build it again (None: not dropped)


async def _documents_on_the_client(
    conn: Conn, *, drop_index: bool = True
) -> _ClientDocuments | None:
    """Disable the search trigger for this transaction, if it can be, and (``drop_index``)
    drop the documents' index: how to undo it, or None if nothing was changed."""
    if conn.dialect == "sqlite":
        return None
    [(possible,)] = await conn.raw_rows(_CLIENT_DOCUMENTS_POSSIBLE, [_SEARCH_TRIGGER])
    if not possible:
        return None
    await conn.raw_rows(_TRIGGER_SWITCH.format(action="DISABLE"), [])
    found = await conn.raw_rows(_INDEX_DEFINITION, [_DOCUMENT_INDEX]) if drop_index else []
    index = found[0][0] if found else None
    if index is not None:
        await conn.raw_rows(f"DROP INDEX {_DOCUMENT_INDEX}", [])
    return _ClientDocuments(index)


def _documents_by_the_trigger(undo: _ClientDocuments) -> Callable[[Conn], Any]:
    async def unit(conn: Conn) -> None:
        if undo.index is not None:
            await conn.raw_rows(undo.index, [])  # the definition PostgreSQL itself printed
        await conn.raw_rows(_TRIGGER_SWITCH.format(action="ENABLE"), [])

    return unit


def _documents(table: _Table, rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """The search rows of driver-encoded events, as the columns of ``_INSERT_DOCUMENTS``."""
    id_at, session_at, time_at = table.at("id"), table.at("session_id"), table.at("created_at")
    fields = [(table.at(name), code) for name, code in _DOCUMENT_FIELDS]
    ids: list[Any] = []
    sessions: list[Any] = []
    codes: list[int] = []
    times: list[Any] = []
    documents: list[str] = []
    for row in rows:
        for at, code in fields:
            body = row[at]
            if body:  # the trigger's coalesce(body, '') <> ''
                ids.append(row[id_at])
                sessions.append(row[session_at])
                codes.append(code)
                times.append(row[time_at])
                documents.append(pg_document(body))
    return [ids, sessions, codes, times, documents]


async def _first_refused(
    tx: Any, table: _Table, rows: Sequence[Sequence[Any]]
) -> tuple[int | None, StoreError | None]:
    """After a batch failed: insert its rows one at a time (in a savepoint that is rolled
    back) to find the first one the database refuses; its index and the error."""
    reached = [0]

    async def unit(conn: Conn) -> None:
        for index, row in enumerate(rows):
            reached[0] = index
            await _insert(conn, table, [row])
        raise _Found  # every row went in alone: roll them back

    try:
        await tx.write(unit)
    except _Found:
        return None, None
    except StoreError as exc:
        return reached[0], exc
    return None, None  # pragma: no cover - the unit always raises


class _Found(Exception):
    pass


# PostgreSQL: a sequence continues after the highest id its table holds (or after where it
# already was, if that is higher). Table names are the store's own constants.
def _setval_sql(table: str) -> str:
    return (
        f"WITH s AS (SELECT pg_get_serial_sequence('{table}', 'id') AS name), "  # noqa: S608
        f"v AS (SELECT GREATEST(COALESCE((SELECT MAX(id) FROM {table}), 0), "
        f"COALESCE(pg_sequence_last_value((SELECT name FROM s)::regclass), 0)) AS n) "
        "SELECT setval((SELECT name FROM s), GREATEST(n, 1), n > 0) FROM v"
    )


async def _advance_sequences(conn: Conn) -> None:
    if conn.dialect == "sqlite":
        return  # AUTOINCREMENT moves sqlite_sequence past every id inserted
    for table in ID_TABLES:
        await conn.raw_rows(_setval_sql(table), [])


_PG_LOCK: Final = (
    "LOCK TABLE sessions, conversation_events, approvals, mcp_servers, raw_events, "
    "file_snapshots, user_settings, schema_version IN {mode} MODE"
)


async def _ids_in_use(conn: Conn, table: str) -> tuple[bool, int]:
    """Whether ``table`` holds rows, and the highest id it holds or ever gave."""
    if conn.dialect == "sqlite":
        sql = (
            f"SELECT EXISTS (SELECT 1 FROM {table}), "  # noqa: S608 - the store's own names
            f"COALESCE((SELECT MAX(id) FROM {table}), 0), "
            f"COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '{table}'), 0)"
        )
    else:
        sql = (
            f"SELECT EXISTS (SELECT 1 FROM {table}), "  # noqa: S608 - the store's own names
            f"COALESCE((SELECT MAX(id) FROM {table}), 0), "
            f"COALESCE(pg_sequence_last_value(pg_get_serial_sequence('{table}', 'id')::regclass),"
            " 0)"
        )
    [(busy, highest, given)] = await conn.raw_rows(sql, [])
    return bool(busy), max(int(highest), int(given))


async def _existing_sessions(conn: Conn, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    if not ids:
        return found
    if conn.dialect == "sqlite":
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            rows = await conn.raw_rows(
                f"SELECT id FROM sessions WHERE id IN ({marks})",  # noqa: S608 - placeholders
                chunk,
            )
            found.update(row[0] for row in rows)
        return found
    rows = await conn.raw_rows("SELECT id FROM sessions WHERE id = ANY($1::text[])", [list(ids)])
    found.update(row[0] for row in rows)
    return found


_DELETE_SETTINGS: Final = Statement(sa.delete(TABLES["user_settings"].table))
_DELETE_LEDGER: Final = Statement(sa.delete(TABLES["schema_version"].table))


# --- import -----------------------------------------------------------------------------------


@dataclass
class _Batch:
    kind: str = ""
    lines: list[int] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    size: int = 0

    @property
    def full(self) -> bool:
        return len(self.rows) >= IMPORT_BATCH_ROWS or self.size >= IMPORT_BATCH_BYTES


@dataclass(eq=False)
class _Kind:
    """One line type's converter and state in an import."""

    kind: str
    table: _Table
    convert: Callable[[dict[str, Any], int], tuple[Any, ...]]
    offset: int
    width: int
    seen: int = 0
    batch: _Batch = field(default_factory=_Batch)
    unique: Callable[[int, tuple[Any, ...]], None] | None = None

    def __post_init__(self) -> None:
        self.batch.kind = self.kind


class _Importer:
    """One import's state: checked rows in batches per type, written in the transaction."""

    def __init__(
        self,
        tx: Any,
        dialect: str,
        on_conflict: str,
        offsets: dict[str, int],
        documents: bool = False,
    ) -> None:
        self.tx = tx
        self.documents = documents  # build the events' search rows here (PostgreSQL)
        self.dialect = dialect
        self.skip = on_conflict == "skip"
        self.offsets = offsets
        self.tables = {kind: TABLES[table] for kind, table in TYPE_TABLES.items()}
        self.converters = {
            kind: _import_converter(table, dialect) for kind, table in self.tables.items()
        }
        self.session_at = {kind: self.tables[kind].at("session_id") for kind in DEPENDENT_TYPES}
        self.id_at = self.tables["session"].at("id")
        self.specs: dict[str, _Kind] = {
            kind: _Kind(
                kind=kind,
                table=table,
                convert=self.converters[kind],
                offset=offsets.get(table.name, 0),
                width=len(table.cols) + 1,
            )
            for kind, table in self.tables.items()
        }
        self.specs["session"].unique = self._unique_session
        self.specs["settings"].unique = self._unique_settings
        self.written = dict.fromkeys(TYPES, 0)
        self.skipped = dict.fromkeys(TYPES, 0)
        self.session_lines: dict[str, int] = {}  # every session line of the file
        self.accepted: set[str] = set()  # written from the file
        self.passed_over: set[str] = set()  # in the file, existing, skipped
        self.in_store: dict[str, bool] = {}  # sessions not in the file: do they exist?
        self.settings_line: int | None = None
        self.inflight: tuple[asyncio.Future[Any], _Table, _Batch] | None = None

    # -- lines ------------------------------------------------------------------------------

    def add(self, number: int, obj: Any, size: int) -> _Batch:
        """Check one line's object and queue its row; returns its type's batch."""
        try:
            kind = obj["type"]
            spec = self.specs[kind]
        except (KeyError, TypeError, IndexError):
            self._refuse_type(number, obj)
        try:
            try:
                row = spec.convert(obj, spec.offset)
            except KeyError:
                _check_keys(spec.table, obj)
                row = spec.convert(obj, spec.offset)
            if len(obj) != spec.width:
                _check_keys(spec.table, obj)
        except _Bad as bad:
            raise ImportRefusedError(f"{kind} {bad.column} {bad.message}", number) from None
        spec.seen += 1
        if spec.unique is not None:
            spec.unique(number, row)
        batch = spec.batch
        batch.lines.append(number)
        batch.rows.append(row)
        batch.size += size
        return batch

    def _refuse_type(self, number: int, obj: Any) -> NoReturn:
        if not isinstance(obj, dict):
            raise ImportRefusedError(f"expected a JSON object, got {type(obj).__name__}", number)
        if "type" not in obj:
            raise ImportRefusedError('the object has no "type"', number)
        kind = obj["type"]
        shown = kind if isinstance(kind, str) else json.dumps(kind)
        raise ImportRefusedError(f"unknown type {shown!r} (known: {', '.join(TYPES)})", number)

    def _unique_session(self, number: int, row: tuple[Any, ...]) -> None:
        session_id = row[self.id_at]
        first = self.session_lines.get(session_id)
        if first is not None:
            raise ImportRefusedError(
                f"session {session_id!r} is in the file twice (first on line {first})", number
            )
        self.session_lines[session_id] = number

    def _unique_settings(self, number: int, row: tuple[Any, ...]) -> None:
        if self.settings_line is not None:
            raise ImportRefusedError(
                f"a second settings line (the first is line {self.settings_line})", number
            )
        self.settings_line = number

    # -- writing ----------------------------------------------------------------------------

    async def settle(self) -> None:
        """Wait for the batch being written; a refused one is searched for its line."""
        if self.inflight is None:
            return
        task, table, batch = self.inflight
        self.inflight = None
        try:
            await task
        except StoreError as exc:
            await self._refuse_batch(table, batch, exc)

    async def _refuse_batch(self, table: _Table, batch: _Batch, exc: StoreError) -> None:
        index, error = await _first_refused(self.tx, table, batch.rows)
        if index is None:
            span = f"lines {batch.lines[0]}-{batch.lines[-1]}" if batch.lines else "a batch"
            raise ImportRefusedError(f"the database refused {span}: {exc}") from exc
        raise ImportRefusedError(
            f"the database refused this {table.label}: {_why(error or exc, table)}",
            batch.lines[index],
        ) from exc

    async def _submit(self, table: _Table, batch: _Batch) -> None:
        # The search rows are built while the last batch is written (on the server's core).
        documents = (
            _documents(table, batch.rows)
            if self.documents and batch.rows and table.name == "conversation_events"
            else None
        )
        await self.settle()
        if batch.rows:
            task = _background(self.tx.write(_insert_unit(table, batch.rows, documents)))
            self.inflight = (task, table, batch)

    async def flush(self, kind: str) -> None:
        spec = self.specs[kind]
        batch = spec.batch
        if not batch.rows:
            return
        spec.batch = _Batch(kind)
        if kind == "session":
            await self._flush_sessions(batch)
        elif kind == "settings":
            await self._flush_settings(batch)
        else:
            if self.specs["session"].batch.rows:
                await self.flush("session")
            await self._flush_dependents(kind, batch)

    async def _flush_sessions(self, batch: _Batch) -> None:
        table = self.tables["session"]
        await self.settle()
        ids = [row[self.id_at] for row in batch.rows]

        async def unit(conn: Conn) -> set[str]:
            return await _existing_sessions(conn, ids)

        existing: set[str] = await self.tx.read(unit)
        if existing and not self.skip:
            first = min(self.session_lines[i] for i in existing)
            session_id = next(i for i in existing if self.session_lines[i] == first)
            raise ImportRefusedError(
                f"session {session_id!r} exists in the store (on_conflict='error'; "
                "'skip' leaves existing sessions alone)",
                first,
            )
        kept = _Batch()
        for number, row in zip(batch.lines, batch.rows, strict=True):
            session_id = row[self.id_at]
            if session_id in existing:
                self.passed_over.add(session_id)
                self.skipped["session"] += 1
            else:
                self.accepted.add(session_id)
                kept.lines.append(number)
                kept.rows.append(row)
        self.written["session"] += len(kept.rows)
        await self._submit(table, kept)

    async def _flush_settings(self, batch: _Batch) -> None:
        if self.skip:
            self.skipped["settings"] += len(batch.rows)
            return
        table = self.tables["settings"]
        await self.settle()

        async def unit(conn: Conn) -> None:
            await conn.execute(_DELETE_SETTINGS)
            await _insert(conn, table, batch.rows)

        try:
            await self.tx.write(unit)
        except StoreError as exc:
            raise ImportRefusedError(
                f"the database refused the settings: {exc}", batch.lines[0]
            ) from exc
        self.written["settings"] += len(batch.rows)

    async def _flush_dependents(self, kind: str, batch: _Batch) -> None:
        table = self.tables[kind]
        at = self.session_at[kind]
        accepted, passed_over = self.accepted, self.passed_over
        unknown = {
            row[at] for row in batch.rows if row[at] not in accepted and row[at] not in passed_over
        }
        unknown -= self.in_store.keys()
        if unknown:
            await self.settle()
            wanted = sorted(unknown)

            async def unit(conn: Conn) -> set[str]:
                return await _existing_sessions(conn, wanted)

            existing = await self.tx.read(unit)
            for session_id in wanted:
                self.in_store[session_id] = session_id in existing
        kept = _Batch()
        for number, row in zip(batch.lines, batch.rows, strict=True):
            session_id = row[at]
            if session_id in accepted:
                kept.lines.append(number)
                kept.rows.append(row)
                continue
            if session_id in passed_over:
                self.skipped[kind] += 1
                continue
            if self.in_store[session_id]:
                if self.skip:
                    self.skipped[kind] += 1
                    continue
                raise ImportRefusedError(
                    f"this {kind} belongs to session {session_id!r}, which exists in the store "
                    "and is not in the file (on_conflict='error')",
                    number,
                )
            raise ImportRefusedError(
                f"this {kind} belongs to session {session_id!r}, which is neither earlier in "
                "the file nor in the store",
                number,
            )
        self.written[kind] += len(kept.rows)
        await self._submit(table, kept)

    async def finish(self) -> None:
        for kind in TYPES:
            await self.flush(kind)
        await self.settle()
        await self.tx.write(_advance_sequences)


def _why(error: StoreError, table: _Table) -> str:
    if isinstance(error, ConstraintError):
        if error.kind in ("primary_key", "unique"):
            return f"a {table.label} with the same key exists ({error})"
        if error.kind == "foreign_key":
            return f"its session does not exist ({error})"
    return str(error)


async def _prepare_import(conn: Conn) -> dict[str, int]:
    """Lock the tables (PostgreSQL), then the offset of each table's imported ids."""
    if conn.dialect != "sqlite":
        await conn.raw_rows(_PG_LOCK.format(mode="SHARE ROW EXCLUSIVE"), [])
    offsets: dict[str, int] = {}
    for table in ID_TABLES:
        busy, highest = await _ids_in_use(conn, table)
        offsets[table] = highest if busy else 0
    return offsets


class _Source:
    """Lines of the file, read as bytes."""

    def __init__(self, source: str | os.PathLike[str] | BinaryIO) -> None:
        self._owned = False
        self.name = "the file"
        self.size: int | None = None
        if isinstance(source, str | os.PathLike):
            text = os.fspath(source)
            if not text.strip():
                raise InvalidValueError("the import path is empty")
            path = Path(text).expanduser().absolute()
            self.name = str(path)
            try:
                self.file: BinaryIO = open(path, "rb")
            except OSError as exc:
                raise StoreError(f"{path} cannot be read: {exc.strerror or exc}") from None
            self._owned = True
        else:
            if isinstance(source, io.TextIOBase) or not hasattr(source, "readline"):
                raise InvalidValueError(
                    "source must be a path or a binary file object (opened with 'rb')"
                )
            self.file = source

    def readline(self) -> bytes:
        try:
            line = self.file.readline()
        except OSError as exc:
            raise StoreError(f"{self.name} cannot be read: {exc.strerror or exc}") from None
        if not isinstance(line, bytes):
            raise InvalidValueError("source must be a binary file object (opened with 'rb')")
        return line

    def lines(self, count: int) -> list[bytes]:
        try:
            out = list(islice(self.file, count))
        except OSError as exc:
            raise StoreError(f"{self.name} cannot be read: {exc.strerror or exc}") from None
        if out and not isinstance(out[0], bytes):
            raise InvalidValueError("source must be a binary file object (opened with 'rb')")
        return out

    def close(self) -> None:
        if self._owned:
            self.file.close()


_SCAN: Final = json.scanner.c_make_scanner(json.decoder.JSONDecoder())  # type: ignore[attr-defined]


def _parse_line(raw: bytes | str, number: int) -> Any:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise ImportRefusedError(f"not UTF-8 text (byte {exc.start + 1})", number) from None
    if not text.strip():
        raise ImportRefusedError("an empty line", number)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportRefusedError(
            f"not a JSON object: {exc.msg} (column {exc.colno})", number
        ) from None
    except RecursionError:
        raise ImportRefusedError("JSON nested too deeply", number) from None


def _parse_lines(lines: list[bytes], first: int) -> list[Any]:
    """The objects of ``lines`` (numbered from ``first``): parsed in one buffer, each value
    checked to end exactly at its line's end; a line that does not is parsed alone, and
    refused with its own error."""
    try:
        text = b"".join(lines).decode("utf-8")
    except UnicodeDecodeError:
        return [_parse_line(line, first + i) for i, line in enumerate(lines)]
    if not text.endswith("\n"):
        text += "\n"
    out: list[Any] = []
    append = out.append
    scan = _SCAN
    pos = 0
    for i in range(len(lines)):
        try:
            obj, end = scan(text, pos)
            if text[end] != "\n":
                raise ValueError
        except (StopIteration, ValueError, IndexError, RecursionError):
            stop = text.index("\n", pos)
            obj = _parse_line(text[pos:stop], first + i)
            end = stop
        append(obj)
        pos = end + 1
    return out


def _check_header(obj: Any) -> dict[str, int] | None:
    """Refuse what is not a header this code reads; the announced counts, if any."""
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
        raise ImportRefusedError(
            'not an agentstore export (its first line must be {"format": "agentstore", …})', 1
        )
    version = obj.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ImportRefusedError(f"the header's version is not a format version: {version!r}", 1)
    if version > FORMAT_VERSION:
        raise ImportRefusedError(
            f"format version {version} is newer than this agentstore reads "
            f"({FORMAT_VERSION}); upgrade agentstore",
            1,
        )
    counts = obj.get("counts")
    if counts is None:
        return None
    if not isinstance(counts, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values()
    ):
        raise ImportRefusedError("the header's counts are not counts per type", 1)
    return {str(k): int(v) for k, v in counts.items()}


async def import_jsonl(
    store: Store,
    source: str | os.PathLike[str] | BinaryIO,
    *,
    on_conflict: str = "error",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Read a file :func:`export_jsonl` wrote, in one transaction; returns the rows written
    per type.

    ``source`` is a path or a binary file object. ``on_conflict``: ``"error"`` refuses the
    whole file if a session of it exists in the store; ``"skip"`` leaves existing sessions
    and everything of theirs alone. A refused file raises :class:`ImportRefusedError` naming
    its line; nothing is written. ``progress(rows done, rows total)`` (the total from the
    header's counts, 0 if it has none) is called as lines are checked. See the module for
    what is kept exactly, ids renumbered and settings.
    """
    if on_conflict not in ("error", "skip"):
        raise InvalidValueError(f"on_conflict must be 'error' or 'skip', got {on_conflict!r}")
    reader = _Source(source)
    try:
        header_line = reader.readline()
        if not header_line:
            raise ImportRefusedError("the file is empty", 1)
        announced = _check_header(_parse_line(header_line, 1))
        total = sum(announced.get(kind, 0) for kind in TYPES) if announced else 0
        async with store.transaction() as tx:
            offsets = await tx.write(_prepare_import)
            # PostgreSQL: the events' search documents are built here, as a copy builds
            # them; the GIN index stays (the store may hold other sessions, being searched).
            client_documents = await tx.write(partial(_documents_on_the_client, drop_index=False))
            importer = _Importer(
                tx, store.dialect, on_conflict, offsets, documents=client_documents is not None
            )
            number = 1
            done = 0
            while True:
                lines = reader.lines(PARSE_LINES)
                if not lines:
                    break
                objects = _parse_lines(lines, number + 1)
                add = importer.add
                for raw, obj in zip(lines, objects, strict=True):
                    number += 1
                    batch = add(number, obj, len(raw))
                    if batch.full:
                        await importer.flush(batch.kind)
                done += len(lines)
                if progress is not None:
                    progress(done, total)
            await importer.finish()
            if client_documents is not None:
                await tx.write(_documents_by_the_trigger(client_documents))
            if announced is not None:
                for kind in TYPES:
                    seen = importer.specs[kind].seen
                    if seen != announced.get(kind, 0):
                        raise ImportRefusedError(
                            f"the file holds {seen} {kind} lines but its header "
                            f"announces {announced.get(kind, 0)}: it was cut short or edited"
                        )
    finally:
        reader.close()
    renumbered = {
        kind: importer.written[kind]
        for kind in DEPENDENT_TYPES
        if offsets.get(TYPE_TABLES[kind]) and importer.written[kind]
    }
    if renumbered:
        logger.info(
            "import: renumbered the ids of %s (their tables were not empty; sequences kept)",
            ", ".join(f"{n} {kind} rows" for kind, n in renumbered.items()),
        )
    skipped = importer.skipped
    if any(skipped.values()):
        rows = sum(skipped[kind] for kind in DEPENDENT_TYPES)
        logger.info(
            "import: skipped %d sessions that exist in the store, with %d rows of theirs%s",
            skipped["session"],
            rows,
            "; the store's settings were kept" if skipped["settings"] else "",
        )
    return dict(importer.written)


# --- copy -------------------------------------------------------------------------------------


def _copy_value(col: _Col, src: str, dst: str) -> str:
    """An expression converting ``{v}`` from ``src``'s driver value to ``dst``'s."""
    kind = col.kind
    if src == dst:  # PostgreSQL: its driver decodes JSON, and COPY takes it as text
        return "_dump({v})" if kind == "json" else "{v}"
    if kind == "text":
        return "({v} if {v} is None or {v}.__class__ is str else _odd())"
    if kind == "int":
        return "({v} if {v} is None or {v}.__class__ is int else _odd())"
    if kind == "float":
        return "(None if {v} is None else float({v}))"
    if kind == "flag":
        if dst == "sqlite":
            return "(None if {v} is None else (1 if {v} else 0))"
        return "(None if {v} is None else bool({v}))"
    if kind == "ts":
        if dst == "sqlite":
            fmt = "_fmt_local" if col.local else "_fmt"
            return f"(None if {{v}} is None else {fmt}({{v}}))"
        return f"_st({{v}}, {col.nullable})"
    if src == "sqlite":  # json
        return "_dump(_jvs({v}))"
    return "_dump({v})"


def _copy_converter(table: _Table, src: str, dst: str) -> Callable[[list[Any]], list[Any]]:
    if src == dst == "sqlite":
        return lambda rows: rows
    if src == dst and not any(col.kind == "json" for col in table.cols):
        return lambda rows: [tuple(row) for row in rows]
    names = [f"v{i}" for i in range(len(table.cols))]
    values = [
        _copy_value(col, src, dst).format(v=name)
        for col, name in zip(table.cols, names, strict=True)
    ]
    source = (
        "def generated(rows):\n"
        "    out = []\n"
        "    append = out.append\n"
        f"    for ({', '.join(names)},) in rows:\n"
        f"        append(({', '.join(values)},))\n"
        "    return out\n"
    )
    namespace: dict[str, Any] = {
        "_odd": _odd,
        "_fmt": format_timestamp,
        "_fmt_local": format_local_timestamp,
        "_st": _sqlite_time,
        "_dump": dump_json,
        "_jvs": _json_value_sqlite,
    }
    fast: Callable[[list[Any]], list[Any]] = compile_function(
        source, f"<agentstore copy of {table.name}>", namespace
    )

    def convert(rows: list[Any]) -> list[Any]:
        try:
            return fast(rows)
        except Exception:
            pass
        for row in rows:  # find the row, and say what is wrong with it
            try:
                fast([row])
            except Exception as exc:
                raise DatabaseError(
                    f"{table.name} row {row[table.pk_at]!r} cannot be copied to {dst}: a value "
                    f"is not of its column's kind ({type(exc).__name__}); nothing was copied"
                ) from None
        return fast(rows)  # pragma: no cover - some row failed above

    return convert


class _Digest:
    """Rows and an order-independent checksum of their values: the sum of the rows' hashes
    (64 bits). Both sides of a copy are summed in the same process, so Python's hash of a
    tuple is a checksum of the values themselves."""

    MASK: Final = (1 << 64) - 1

    def __init__(self) -> None:
        self.rows = 0
        self.total = 0

    def add(self, rows: int, total: int) -> None:
        self.rows += rows
        self.total = (self.total + total) & self.MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Digest) and (self.rows, self.total) == (other.rows, other.total)

    __hash__ = None  # type: ignore[assignment]


def _nan_safe(value: float) -> Any:
    return value if value == value else "NaN"  # NaN hashes by identity: compare its name


def _digester(table: _Table, dialect: str, canonical: bool) -> Callable[[list[Any]], int]:
    """``rows -> the sum of their hashes``, of the values as stored (``canonical`` False:
    the two sides of a copy on the same backend) or as the store reads them (times as UTC
    datetimes, flags as bools, JSON as its compact text: the two sides of a copy across
    backends, which :func:`_copy_converter` also produces for PostgreSQL)."""
    names = [f"v{i}" for i in range(len(table.cols))]
    values: list[str] = []
    for col, v in zip(table.cols, names, strict=True):
        kind = col.kind
        if kind == "float":
            values.append(f"(None if {v} is None else _nan({v}))")
        elif kind == "json" and dialect != "sqlite":  # decoded by the driver: unhashable
            values.append(f"_dump({v})")
        elif not canonical or kind in ("text", "int"):
            values.append(v)
        elif kind == "ts":
            values.append(f"_st({v}, {col.nullable})" if dialect == "sqlite" else v)
        elif kind == "flag":
            values.append(f"(None if {v} is None else bool({v}))" if dialect == "sqlite" else v)
        else:  # json
            values.append(f"_dump(_jvs({v}))" if dialect == "sqlite" else f"_dump({v})")
    if values == names:  # the values themselves: hashed in C
        return _sum_of_hashes if dialect == "sqlite" else _sum_of_record_hashes
    source = (
        "def generated(rows):\n"
        "    total = 0\n"
        f"    for ({', '.join(names)},) in rows:\n"
        f"        total += _hash(({', '.join(values)},))\n"
        "    return total\n"
    )
    namespace: dict[str, Any] = {
        "_hash": hash,
        "_nan": _nan_safe,
        "_st": _sqlite_time,
        "_dump": dump_json,
        "_jvs": _json_value_sqlite,
    }
    digest: Callable[[list[Any]], int] = compile_function(
        source, f"<agentstore digest of {table.name} on {dialect}>", namespace
    )
    return digest


def _sum_of_hashes(rows: list[Any]) -> int:
    return sum(map(hash, rows))


def _sum_of_record_hashes(rows: list[Any]) -> int:
    return sum(map(hash, map(tuple, rows)))  # asyncpg's records, as tuples


def _estimate_bytes(rows: list[Any]) -> int:
    """About how many bytes a page of rows holds (a sample of its rows, measured)."""
    step = max(1, len(rows) // 16)
    sample = rows[::step]
    size = 0
    for row in sample:
        for value in row:
            size += len(value) if isinstance(value, str | bytes) else 8
    return size * len(rows) // max(1, len(sample))


async def _open_source(source: Any, opened: list[Store]) -> Store:
    from agentstore.store import Store

    if isinstance(source, Store):
        if source.closed:
            raise StoreClosedError()
        return source
    store = await Store.open(source, migrate=False)
    opened.append(store)
    return store


async def _is_blank(target: Any) -> bool:
    """Whether a database that refused ``migrate=False`` holds nothing at all (no file, an
    empty file, a database with no tables): one a copy may create the schema in."""
    from agentstore import migrations, opening
    from agentstore.engine import create_engine

    resolved = opening.resolve_target(target)
    if resolved.sqlite is not None:
        path = resolved.sqlite.path
        if path is None or not path.exists():
            return True
        return opening.inspect_sqlite_file(resolved.sqlite).kind == "empty"
    engine = resolved.engine or create_engine(resolved.url)
    try:
        async with engine.connect() as conn:
            state = await conn.run_sync(migrations.inspect_state)
    finally:
        if resolved.engine is None:
            await engine.dispose()
    return state.kind == "empty"


def _where(target: Any) -> str:
    from agentstore import opening
    from agentstore.engine import safe_url

    try:
        resolved = opening.resolve_target(target)
    except StoreError:
        return "the destination"
    if resolved.sqlite is not None:
        return str(resolved.sqlite.path or ":memory:")
    return safe_url(resolved.url)


async def _open_dest(dest: Any, opened: list[Store], created: list[Path]) -> Store:
    from agentstore import opening
    from agentstore.store import Store

    if isinstance(dest, Store):
        if dest.closed:
            raise StoreClosedError()
        return dest
    where = _where(dest)
    try:
        store = await Store.open(dest, migrate=False)
    except LegacyDatabaseError:
        raise CopyRefusedError(
            f"{where} is an hld database, not an empty one; the copy was refused and it was "
            "left as it was"
        ) from None
    except MigrationRequiredError as exc:
        if not await _is_blank(dest):
            raise CopyRefusedError(
                f"{where} is not at this agentstore's revision ({exc}); a copy goes into an "
                "empty database at the same revision. It was left as it was."
            ) from None
        resolved = opening.resolve_target(dest)
        path = resolved.sqlite.path if resolved.sqlite is not None else None
        existed = path is not None and path.exists()
        store = await Store.open(dest)
        if path is not None and not existed:
            created.append(path)
    opened.append(store)
    return store


def _same_target(source: Any, dest: Any) -> bool:
    from agentstore import opening
    from agentstore.store import Store

    if source is dest:
        return True
    if isinstance(source, Store) or isinstance(dest, Store):
        return False
    try:
        a, b = opening.resolve_target(source), opening.resolve_target(dest)
    except StoreError:
        return False
    if a.sqlite is not None and b.sqlite is not None:
        return a.sqlite.path is not None and a.sqlite.path == b.sqlite.path
    return a.url.render_as_string(hide_password=False) == b.url.render_as_string(
        hide_password=False
    )


async def copy_database(
    source: object, dest: object, *, progress: Callable[[int, int], None] | None = None
) -> dict[str, int]:
    """Copy a whole database into an empty one at the same revision; returns rows per table.

    ``source`` and ``dest`` are each a path, a database URL, an ``AsyncEngine`` or an open
    :class:`~agentstore.Store` (any backend to any backend). A store this call opens, it
    closes; a store given is left open. The source is opened with ``migrate=False`` and is
    never written: an hld file or an older revision is refused (adopt or upgrade it first).
    A destination that does not exist yet, or holds nothing at all, is created and migrated;
    one at another revision, an hld file, or one holding any session, event, approval, MCP
    server, raw event or snapshot is refused with :class:`CopyRefusedError`, left as it was.
    Its ``user_settings`` row and ``schema_version`` ledger — which every migrated database
    has — are replaced by the source's, so that every table ends with exactly the source's
    rows.

    The source is read in one snapshot, a page at a time; the destination is written in one
    transaction (on PostgreSQL with its tables locked ``EXCLUSIVE``), in batches (binary
    ``COPY`` on PostgreSQL, multi-row ``INSERT`` on SQLite), the next page read while the
    last is written. Into PostgreSQL, the events' search documents are built on the client
    (exactly what the insert trigger would make, for a fifth of its cost): the trigger is
    disabled and the documents' GIN index dropped within the copy's transaction, both back
    before it commits (a search of the destination waits for the copy). Values are kept
    exactly (between two SQLite files, byte for byte; across backends as the store reads
    them: times to the microsecond). Before the commit every
    table is read back and compared with the source: its row count and a checksum of its
    rows — an order-independent sum of each row's hash, over the values as stored between
    two databases of one backend, over the values as the store reads them across backends
    (times as instants, flags as bools, JSON as its text) — and :class:`VerificationError`,
    everything rolled back, if they differ. On PostgreSQL the id sequences then continue
    after the highest copied id (SQLite's AUTOINCREMENT does so by itself). ``progress(rows
    done, rows total)`` is called after each batch.

    A copy that fails or is cancelled midway leaves the destination empty (a file it
    created is removed): running it again succeeds. A killed one cannot remove anything:
    the database rolls its transaction back, and a file it created stays, empty and at its
    revision, for the next copy to fill.
    """
    if _same_target(source, dest):
        raise CopyRefusedError("the source and the destination are the same database")
    opened: list[Store] = []
    created: list[Path] = []
    try:
        src = await _open_source(source, opened)
        dst = await _open_dest(dest, opened, created)
        if src is dst:
            raise CopyRefusedError("the source and the destination are the same store")
        result = await _copy(src, dst, progress)
    except BaseException:
        for store in reversed(opened):
            with contextlib.suppress(Exception):
                await asyncio.shield(store.close())
        if created:
            remove_created(created)
        raise
    for store in reversed(opened):
        await store.close()
    return result


async def _copy(
    src: Store, dst: Store, progress: Callable[[int, int], None] | None
) -> dict[str, int]:
    async with src.snapshot() as snap:
        counts = await snap.maintenance.row_counts()
        total = sum(counts.get(name, 0) for name in COPY_TABLES)
        async with dst.transaction() as tx:

            async def prepare(conn: Conn) -> None:
                if conn.dialect != "sqlite":
                    await conn.raw_rows(_PG_LOCK.format(mode="EXCLUSIVE"), [])

            await tx.write(prepare)
            present = await tx.maintenance.row_counts()
            busy = {name: present.get(name, 0) for name in DATA_TABLES if present.get(name)}
            if busy:
                held = ", ".join(f"{name}: {n}" for name, n in busy.items())
                raise CopyRefusedError(
                    f"the destination is not empty ({held}); the copy was refused and it was "
                    "left as it was"
                )

            async def clear(conn: Conn) -> None:
                await conn.execute(_DELETE_SETTINGS)
                await conn.execute(_DELETE_LEDGER)

            await tx.write(clear)
            client_documents = await tx.write(_documents_on_the_client)
            done = [0]
            digests: dict[str, _Digest] = {}
            for name in COPY_TABLES:
                digests[name] = await _copy_table(
                    snap,
                    tx,
                    TABLES[name],
                    src.dialect,
                    dst.dialect,
                    done,
                    total,
                    progress,
                    documents=client_documents is not None and name == "conversation_events",
                )
            if client_documents is not None:
                await tx.write(_documents_by_the_trigger(client_documents))
            await tx.write(_advance_sequences)
            for name in COPY_TABLES:
                table = TABLES[name]
                copied = _Digest()
                digest = _digester(table, dst.dialect, canonical=src.dialect != dst.dialect)
                pager = _Pager(tx, table)
                async with contextlib.aclosing(pager.pages()) as pages:
                    async for rows in pages:
                        copied.add(len(rows), digest(rows))
                        pager.feedback(len(rows), _estimate_bytes(rows))
                if copied != digests[name]:
                    raise VerificationError(
                        f"{name} did not read back as copied ({digests[name].rows} rows copied, "
                        f"{copied.rows} found, or their checksums differ); the copy was rolled "
                        "back and the destination left empty"
                    )
    return {name: digests[name].rows for name in COPY_TABLES}


async def _copy_table(
    snap: Any,
    tx: Any,
    table: _Table,
    src: str,
    dst: str,
    done: list[int],
    total: int,
    progress: Callable[[int, int], None] | None,
    *,
    documents: bool = False,
) -> _Digest:
    digest = _Digest()
    convert = _copy_converter(table, src, dst)
    if src == dst:
        digester = _digester(table, src, canonical=False)
    elif src == "sqlite":
        digester = None  # the converted rows are the values as the store reads them
    else:
        digester = _digester(table, src, canonical=True)
    pager = _Pager(snap, table)
    pending: asyncio.Future[Any] | None = None
    pending_rows = 0

    async def settle() -> None:
        # The batch being written: wait for it, then count it.
        nonlocal pending
        if pending is None:
            return
        await _written(pending, table)
        pending = None
        done[0] += pending_rows
        if progress is not None:
            progress(done[0], total)

    try:
        async with contextlib.aclosing(pager.pages()) as pages:
            async for rows in pages:
                converted = convert(rows)
                # Built while the last batch is written (on the server's core).
                search_rows = _documents(table, converted) if documents else None
                digest.add(len(rows), digester(rows) if digester else _sum_of_hashes(converted))
                pager.feedback(len(rows), _estimate_bytes(rows))
                await settle()
                pending = _background(tx.write(_insert_unit(table, converted, search_rows)))
                pending_rows = len(converted)
        await settle()
    finally:
        if pending is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(pending)
    return digest


async def _written(pending: asyncio.Future[Any], table: _Table) -> None:
    try:
        await pending
    except ConstraintError as exc:
        if exc.kind == "foreign_key":
            raise DatabaseError(
                f"{table.name}: the source holds rows whose session does not exist (hld wrote "
                "them with foreign keys off); the destination refuses them. Nothing was copied."
            ) from exc
        raise
