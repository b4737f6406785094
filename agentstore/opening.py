"""Opening a store: what the target is, what it holds, and bringing its schema to head.

Every refusal is decided before anything is written. An SQLite file is first inspected
through a read-only connection that creates nothing (``immutable=1`` when no ``-wal`` file
exists), so a foreign file, a newer schema, a damaged file, or — with ``migrate=False`` — an
hld file or an old revision is left byte for byte as it was, ``-wal`` and ``-shm`` included.
Only then is a missing file created (0600, in folders made 0700), or the file migrated.

A file already at the newest revision is opened without running Alembic at all; an
in-memory store copies a schema migrated once per process (SQLite's backup API).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.request import pathname2url

from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from agentstore import migrations
from agentstore.adopt import AdoptionReport
from agentstore.db.errors import is_disconnect, translate
from agentstore.db.sqlite import SQLiteTarget, check_file, configure_connection
from agentstore.engine import create_engine, resolve_url, safe_url
from agentstore.errors import (
    DatabaseError,
    InvalidValueError,
    LegacyDatabaseError,
    MigrationRequiredError,
    SchemaTooNewError,
    StoreError,
)
from agentstore.migrations import DatabaseState

__all__ = [
    "DURABILITIES",
    "Target",
    "check_state",
    "inspect_sqlite_file",
    "prepare_sqlite",
    "resolve_target",
]

logger = logging.getLogger("agentstore")

DURABILITIES: Final = ("full", "normal")


@dataclass
class Target:
    """What ``Store.open`` was given, resolved."""

    url: URL
    sqlite: SQLiteTarget | None = None
    engine: AsyncEngine | None = None  # given by the caller (not disposed by the store)


def resolve_target(target: Any) -> Target:
    """A path, ``":memory:"``, a URL (string or SQLAlchemy ``URL``) or an ``AsyncEngine``."""
    engine: AsyncEngine | None = None
    if isinstance(target, AsyncEngine):
        engine = target
        url = target.url
    elif isinstance(target, str | os.PathLike | URL):
        if isinstance(target, str) and not target.strip():
            raise InvalidValueError("the database path is empty")
        url = resolve_url(target)
    else:
        raise InvalidValueError(
            "Store.open takes a path, ':memory:', a database URL or an AsyncEngine, "
            f"got {type(target).__name__}"
        )
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.drivername not in ("sqlite+aiosqlite", "sqlite", "sqlite+pysqlite"):
            raise InvalidValueError(
                f"SQLite URLs use the aiosqlite driver (sqlite+aiosqlite://), got {safe_url(url)}"
            )
        sqlite = SQLiteTarget.from_url_database(url.database, url.query)
        if engine is not None and sqlite.memory:
            raise InvalidValueError(
                "an in-memory SQLite engine keeps its database inside its own connection, "
                "which the store cannot share; open Store.open(':memory:') instead"
            )
        return Target(url, sqlite, engine)
    if backend == "postgresql":
        if url.drivername != "postgresql+asyncpg":
            raise InvalidValueError(
                f"PostgreSQL URLs use the asyncpg driver (postgresql+asyncpg://), "
                f"got {safe_url(url)}"
            )
        try:
            import asyncpg  # noqa: F401
        except ImportError:
            raise InvalidValueError(
                "PostgreSQL needs the asyncpg driver: pip install 'agentstore[postgres]'"
            ) from None
        return Target(url, None, engine)
    raise InvalidValueError(f"unsupported database URL {safe_url(url)}: use sqlite or postgresql")


# --- SQLite ---------------------------------------------------------------------------------


def inspect_sqlite_file(target: SQLiteTarget) -> DatabaseState:
    """What an existing SQLite file holds, read without creating or changing anything."""
    assert target.path is not None
    path = target.path
    if path.stat().st_size == 0:
        return DatabaseState("empty")
    wal = Path(f"{path}-wal")
    # immutable=1: no locks, no -shm; only right when no other connection has a -wal open.
    options = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(f"file://{pathname2url(str(path))}?{options}", uri=True)
    except sqlite3.Error as exc:
        raise translate(exc, str(path)) from exc
    try:
        return sqlite_state(conn)
    except sqlite3.Error as exc:
        raise translate(exc, str(path)) from exc
    finally:
        conn.close()


def sqlite_state(conn: sqlite3.Connection) -> DatabaseState:
    """Classify an SQLite database: empty, agentstore's (its revision), hld's, or foreign."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    tables.discard("sqlite_sequence")
    if migrations.VERSION_TABLE in tables:
        rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        revision = rows[0][0] if rows else None
        if revision is not None or tables != {migrations.VERSION_TABLE}:
            return DatabaseState("agentstore", revision=revision)
        tables.discard(migrations.VERSION_TABLE)
    if not tables:
        return DatabaseState("empty")
    if "schema_version" in tables and "sessions" in tables:
        version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        return DatabaseState("hld", hld_version=int(version or 0))
    return DatabaseState("foreign")


def check_state(state: DatabaseState, where: str, *, migrate: bool) -> bool:
    """Refuse what must be refused; returns whether the schema needs migrating."""
    head = migrations.head_revision()
    if state.kind == "foreign":
        raise DatabaseError(
            f"{where} holds tables that are neither agentstore's nor hld's; it was left untouched"
        )
    if state.kind == "agentstore" and state.revision == head:
        return False
    if state.revision is not None and not migrations.is_known_revision(state.revision):
        raise SchemaTooNewError(
            f"{where} is at schema revision {state.revision!r}, newer than this agentstore "
            f"knows (newest: {head!r}); upgrade agentstore. The database was left untouched."
        )
    if not migrate:
        if state.kind == "hld":
            raise LegacyDatabaseError(
                f"{where} is an hld database (schema version {state.hld_version}) that "
                "agentstore has not adopted yet; open it with migrate=True (or run "
                "`agentstore adopt`). Nothing was changed."
            )
        if state.kind == "empty":
            raise MigrationRequiredError(
                f"{where} has no agentstore schema; open it with migrate=True (or run "
                "`agentstore db upgrade`). Nothing was changed."
            )
        raise MigrationRequiredError(
            f"{where} is at revision {state.revision!r}, not {head!r}; open it with "
            "migrate=True (or run `agentstore db upgrade`). Nothing was changed."
        )
    return True


def prepare_sqlite(
    raw: sqlite3.Connection,
    target: SQLiteTarget,
    *,
    migrate: bool,
    backup: bool,
    durability: str,
) -> AdoptionReport | None:
    """On the writer's connection: bring the schema to head (adopting an hld file on the way),
    then put the file in WAL mode. Returns the adoption report, if it adopted."""
    if target.memory:
        copy_memory_template(raw)
        return None
    where = str(target.path)
    try:
        state = sqlite_state(raw)
    except sqlite3.Error as exc:
        raise translate(exc, where) from exc
    report: AdoptionReport | None = None
    if check_state(state, where, migrate=migrate):
        if state.kind == "hld":
            report = AdoptionReport(path=where, hld_version=state.hld_version or 0)
        before = state.revision
        migrations.upgrade_sqlite(raw, database=where, backup=backup, report=report)
        head = migrations.head_revision()
        if report is not None:
            report.revision = head
            logger.info("%s", report.describe())
        else:
            logger.info("migrated %s from revision %s to %s", where, before or "(empty)", head)
    mode = raw.execute("PRAGMA journal_mode").fetchone()[0]
    if mode != "wal":  # only now: a file refused above keeps its header byte for byte
        raw.execute("PRAGMA journal_mode = WAL")
    return report


_template: sqlite3.Connection | None = None
_template_lock = threading.Lock()


def copy_memory_template(raw: sqlite3.Connection) -> None:
    """Give a new in-memory database the migrated schema: migrated once per process, then
    copied with SQLite's backup API (Alembic's machinery costs ~17 ms per run)."""
    global _template
    with _template_lock:
        if _template is None:
            template = sqlite3.connect(":memory:", check_same_thread=False)
            configure_connection(template)
            migrations.upgrade_sqlite(template, database=":memory:", backup=False, report=None)
            _template = template
        _template.backup(raw)


# --- PostgreSQL -----------------------------------------------------------------------------


async def prepare_postgresql(engine: AsyncEngine, *, migrate: bool) -> None:
    """Bring a PostgreSQL database to head, or refuse; the revision is read with one query."""
    where = safe_url(engine.url)
    try:
        async with engine.connect() as conn:
            revision = await conn.run_sync(migrations.current_revision_if_any)
            if revision is not None and revision == migrations.head_revision():
                return
            state = await conn.run_sync(migrations.inspect_state)
            if check_state(state, where, migrate=migrate):
                await conn.run_sync(migrations.upgrade, "head")
                await conn.commit()
                logger.info(
                    "migrated %s from revision %s to %s",
                    where,
                    state.revision or "(empty)",
                    migrations.head_revision(),
                )
    except StoreError:
        raise
    except (SQLAlchemyError, OSError) as exc:
        original = getattr(exc, "orig", None) or exc
        error = translate(original, where)
        if is_disconnect(original):
            reason = getattr(original, "strerror", None) or str(original) or type(original).__name__
            error = DatabaseError(f"cannot connect to {where}: {reason}")
        elif type(error) is DatabaseError:
            error = DatabaseError(f"cannot connect to {where}: {error}")
        raise error from exc


def create_postgres_engine(url: URL, engine_options: dict[str, Any]) -> AsyncEngine:
    """The store's engine for a PostgreSQL URL."""
    return create_engine(url, **engine_options)


def file_exists(target: SQLiteTarget, *, create: bool) -> bool:
    """:func:`check_file` for a target (always False in memory)."""
    return False if target.path is None else check_file(target.path, create=create)
