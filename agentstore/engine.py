"""URLs, and the SQLAlchemy engines: PostgreSQL's store engine and SQLite's side doors.

On PostgreSQL the store's data path takes its connections from this engine's pool. On
SQLite the data path owns its connections (:mod:`agentstore.db.sqlite`); an aiosqlite
engine is still what ``alembic`` on the command line and ``store.engine`` use, and its
connections are set up like the store's, in a ``connect`` listener (so every pooled
connection has them, not just the first one — hld sets them once through its pool):
foreign keys on, a 30 s busy timeout, ``synchronous=FULL``, and SQLAlchemy's documented
"emit our own BEGIN" recipe (``BEGIN IMMEDIATE`` for a write unit, ``BEGIN`` otherwise).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import event, pool
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agentstore.db.sqlite import BUSY_TIMEOUT_MS
from agentstore.errors import InvalidValueError

__all__ = ["WRITE", "create_engine", "on_sqlite_begin", "resolve_url", "safe_url"]

WRITE = "agentstore_write"
"""Execution option that makes the next transaction on a connection a write transaction."""


def resolve_url(target: str | os.PathLike[str] | URL) -> URL:
    """A SQLAlchemy URL for a path, ``":memory:"`` or a URL string."""
    if isinstance(target, URL):
        url = target
    else:
        text = os.fspath(target)
        if "://" not in text:
            if text == ":memory:":
                return URL.create("sqlite+aiosqlite", database=":memory:")
            return URL.create("sqlite+aiosqlite", database=str(Path(text).expanduser().absolute()))
        try:
            url = make_url(text)
        except ArgumentError:
            raise InvalidValueError("the database URL cannot be parsed") from None
    if url.drivername in ("sqlite", "sqlite+pysqlite"):
        url = url.set(drivername="sqlite+aiosqlite")
    elif url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+asyncpg")
    if url.password is None and "password" in url.query:
        # A password given as ?password=…: moved to where SQLAlchemy hides it in every repr.
        password = url.query["password"]
        url = url.difference_update_query(["password"]).set(
            password=password if isinstance(password, str) else password[-1]
        )
    return url


def safe_url(url: URL | str) -> str:
    """The URL with its password hidden — also one given as ``?password=`` — for messages."""
    parsed = url if isinstance(url, URL) else make_url(url)
    hidden = {key: "***" for key in parsed.query if key.lower() in ("password", "passfile")}
    if hidden:
        parsed = parsed.update_query_dict(hidden)
    return parsed.render_as_string(hide_password=True)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver must not open transactions behind our back: we emit BEGIN ourselves.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = FULL")
    finally:
        cursor.close()


def on_sqlite_begin(connection: Any) -> None:
    """SQLAlchemy's "emit our own BEGIN" recipe: ``BEGIN IMMEDIATE`` for writes."""
    write = connection.get_execution_options().get(WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def create_engine(target: str | os.PathLike[str] | URL, **engine_options: Any) -> AsyncEngine:
    """An async engine for ``target`` (aiosqlite or asyncpg), set up as the store needs."""
    url = resolve_url(target)
    backend = url.get_backend_name()
    # Bound values (a proxy_api_key, say) must not reach error messages or logs.
    engine_options.setdefault("hide_parameters", True)
    if backend == "sqlite":
        if url.drivername != "sqlite+aiosqlite":
            raise InvalidValueError(
                f"SQLite needs the aiosqlite driver (sqlite+aiosqlite://), got {safe_url(url)}"
            )
        if url.database in (None, "", ":memory:"):
            # Every aiosqlite connection to ":memory:" is a new, empty database: keep one.
            engine_options.setdefault("poolclass", pool.AsyncAdaptedQueuePool)
            engine_options.setdefault("pool_size", 1)
            engine_options.setdefault("max_overflow", 0)
            engine_options.setdefault("pool_recycle", -1)
        engine = create_async_engine(url, **engine_options)
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
        event.listen(engine.sync_engine, "begin", on_sqlite_begin)
        return engine
    if backend == "postgresql":
        if url.drivername != "postgresql+asyncpg":
            raise InvalidValueError(
                f"PostgreSQL needs the asyncpg driver (postgresql+asyncpg://), got {safe_url(url)}"
            )
        engine_options.setdefault("pool_pre_ping", True)
        engine_options.setdefault("pool_recycle", 1800)
        return create_async_engine(url, **engine_options)
    raise InvalidValueError(f"unsupported database URL {safe_url(url)}: use sqlite or postgresql")
