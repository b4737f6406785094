"""The engine: one per store, with SQLite configured on every connection.

SQLite connections get, in a ``connect`` listener (so every pooled connection has them, not
just the first one — hld sets them once through its pool):

* ``journal_mode=WAL``, ``synchronous=NORMAL``, ``foreign_keys=ON``, ``busy_timeout``;
* the driver's own transaction handling turned off (``isolation_level=None``) and SQLAlchemy's
  documented "emit our own BEGIN" recipe: a read unit of work starts with ``BEGIN`` (one
  consistent snapshot), a write unit of work with ``BEGIN IMMEDIATE``, which takes the write
  lock before the first read, so read-then-write cannot race — across tasks and across
  processes — and never fails with ``SQLITE_BUSY_SNAPSHOT``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import event, pool
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agentstore.errors import InvalidValueError, NotADatabaseError

__all__ = ["WRITE", "create_engine", "resolve_url", "safe_url"]

WRITE = "agentstore_write"
"""Execution option that makes the next transaction on a connection a write transaction."""

BUSY_TIMEOUT_MS = 30_000
SQLITE_HEADER = b"SQLite format 3\x00"


def resolve_url(target: str | os.PathLike[str] | URL) -> URL:
    """A SQLAlchemy URL for a path, ``":memory:"`` or a URL string."""
    if isinstance(target, URL):
        return target
    text = os.fspath(target)
    if "://" in text:
        url = make_url(text)
        if url.drivername in ("sqlite", "sqlite+pysqlite"):
            url = url.set(drivername="sqlite+aiosqlite")
        elif url.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
            url = url.set(drivername="postgresql+asyncpg")
        return url
    if text == ":memory:":
        return URL.create("sqlite+aiosqlite", database=":memory:")
    return URL.create("sqlite+aiosqlite", database=str(Path(text).expanduser()))


def safe_url(url: URL | str) -> str:
    """The URL with its password hidden, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


def prepare_sqlite_file(url: URL) -> None:
    """Create the folder (0700) and the file (0600); refuse a file that is not a database.

    Nothing is written to an existing file here: a foreign file is left untouched.
    """
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    path = Path(database)
    if path.exists():
        if path.is_dir():
            raise NotADatabaseError(f"{path} is a directory, not an SQLite database")
        with path.open("rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
        if header and header != SQLITE_HEADER:
            raise NotADatabaseError(f"{path} is not an SQLite database; it was left untouched")
        return
    missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    for folder in reversed(missing):  # mkdir(parents=True) would give parents the umask mode
        folder.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver must not open transactions behind our back: we emit BEGIN ourselves.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # WAL is a property of the file. Switch a new, empty file here; a file with tables is
        # switched by Store.open only once it is known to be agentstore's or hld's (a
        # foreign file must be left exactly as it was).
        cursor.execute("PRAGMA journal_mode")
        if cursor.fetchone()[0] != "wal":
            cursor.execute("SELECT COUNT(*) FROM sqlite_master")
            if cursor.fetchone()[0] == 0:
                cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _on_sqlite_reset(dbapi_connection: Any, _record: Any, _state: Any) -> None:
    # Replaces the pool's unconditional ROLLBACK on check-in (a hand-off to aiosqlite's
    # thread on every call): every unit of work ends its own transaction, so roll back only
    # what was really left open.
    driver = getattr(dbapi_connection, "_connection", None)
    if driver is None or driver.in_transaction:
        dbapi_connection.rollback()


def _on_sqlite_begin(connection: Any) -> None:
    write = connection.get_execution_options().get(WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def create_engine(target: str | os.PathLike[str] | URL, **engine_options: Any) -> AsyncEngine:
    """The store's engine for ``target``, with per-connection SQLite set-up."""
    url = resolve_url(target)
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.drivername != "sqlite+aiosqlite":
            raise InvalidValueError(
                f"SQLite needs the aiosqlite driver (sqlite+aiosqlite://), got {safe_url(url)}"
            )
        prepare_sqlite_file(url)
        if url.database in (None, "", ":memory:"):
            # Every aiosqlite connection to ":memory:" is a new, empty database: keep one
            # connection and hand it to one task at a time (a StaticPool would share it
            # between concurrent tasks, which loses rows).
            engine_options.setdefault("poolclass", pool.AsyncAdaptedQueuePool)
            engine_options.setdefault("pool_size", 1)
            engine_options.setdefault("max_overflow", 0)
            engine_options.setdefault("pool_recycle", -1)
        engine_options.setdefault("pool_reset_on_return", None)
        # Bound values (a proxy_api_key, say) must not reach error messages or logs.
        engine_options.setdefault("hide_parameters", True)
        engine = create_async_engine(url, **engine_options)
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
        event.listen(engine.sync_engine, "begin", _on_sqlite_begin)
        if engine_options["pool_reset_on_return"] is None:
            event.listen(engine.sync_engine, "reset", _on_sqlite_reset)
        return engine
    if backend == "postgresql":
        engine_options.setdefault("hide_parameters", True)
        engine_options.setdefault("pool_pre_ping", True)
        engine_options.setdefault("pool_recycle", 1800)
        return create_async_engine(url, **engine_options)
    raise InvalidValueError(f"unsupported database URL {safe_url(url)}: use sqlite or postgresql")
