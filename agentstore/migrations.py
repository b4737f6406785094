"""Running Alembic: the same revisions from the command line and from ``Store.open``.

The revisions live in ``alembic/`` at the top of the source tree; the wheel carries them as
``agentstore/_migrations``, so an installed agentstore migrates a database with no checkout.

Every upgrade or downgrade runs in one transaction (SQLite and PostgreSQL both have
transactional DDL): a migration that fails part-way leaves the database as it was. On SQLite
it runs with foreign keys OFF — a batch migration recreates a table, and dropping the old one
would otherwise cascade — and ``PRAGMA foreign_key_check`` must come back clean before commit.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from agentstore.adopt import heal_and_stamp
from agentstore.engine import WRITE, on_sqlite_begin
from agentstore.errors import DatabaseError

__all__ = [
    "DatabaseState",
    "alembic_config",
    "configure_context",
    "current_revision_if_any",
    "inspect_state",
    "run_in_migration_transaction",
    "script_location",
    "upgrade",
    "upgrade_sqlite",
]

VERSION_TABLE = "alembic_version"


def script_location() -> Path:
    """The folder holding ``env.py`` and ``versions/`` (packaged copy first)."""
    packaged = Path(__file__).parent / "_migrations"
    if (packaged / "env.py").exists():
        return packaged
    source = Path(__file__).resolve().parent.parent / "alembic"
    if (source / "env.py").exists():
        return source
    raise DatabaseError("agentstore's migration scripts are missing from this installation")


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic ``Config`` for agentstore's revisions, optionally bound to a connection."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    # SQLite's own bookkeeping table is not part of the model, nor is the search index
    # (revision 0005: an FTS4 table and its shadow tables, or PostgreSQL's tsvector table).
    if type_ == "table" and name == "sqlite_sequence":
        return False
    if name is not None and name.startswith(("agentstore_search", "ix_agentstore_search")):
        return False
    parent = getattr(getattr(obj, "table", None), "name", "")
    return not str(parent).startswith("agentstore_search")


def _is_hld_ddl_quirk(op: Any) -> bool:
    """Differences between hld's SQLite DDL text and the models that are not differences.

    * ``id TEXT PRIMARY KEY`` is nullable in SQLite's eyes (an old SQLite quirk hld's DDL
      keeps); the models declare primary keys NOT NULL, as every other backend has them;
    * ``run_id TEXT NOT NULL UNIQUE`` is an inline, unnamed constraint SQLite's reflection
      does not report;
    * ``idx_sessions_last_activity ON sessions(last_activity_at DESC)`` is reflected without
      its ``DESC``, so Alembic cannot match it with the model's index of the same name.
    """
    from alembic.operations import ops

    if isinstance(op, ops.AlterColumnOp):
        return (
            op.column_name in ("id", "version")
            and op.modify_nullable is not None
            and op.modify_type is None
            and op.modify_server_default is False
        )
    if isinstance(op, ops.CreateUniqueConstraintOp):
        return op.table_name == "sessions" and list(op.columns) == ["run_id"]
    if isinstance(op, ops.CreateIndexOp | ops.DropIndexOp):
        return op.index_name == "idx_sessions_last_activity"
    return False


def _drop_hld_quirks(context: Any, revision: Any, directives: list[Any]) -> None:
    from alembic.operations import ops

    def prune(container: Any) -> None:
        kept = []
        for op in container.ops:
            if isinstance(op, ops.ModifyTableOps):
                prune(op)
                if op.ops:
                    kept.append(op)
            elif not _is_hld_ddl_quirk(op):
                kept.append(op)
        container.ops = kept

    if context.dialect.name != "sqlite":
        return
    for script in directives:
        for upgrade_ops in script.upgrade_ops_list:
            prune(upgrade_ops)


def configure_context(context: Any, **kwargs: Any) -> None:
    """``context.configure`` with agentstore's settings (batch mode and one transaction)."""
    connection: Connection | None = kwargs.get("connection")
    url = kwargs.get("url")
    dialect = (
        connection.dialect.name
        if connection is not None
        else sa.engine.make_url(str(url)).get_backend_name()
    )
    context.configure(
        **kwargs,
        render_as_batch=dialect == "sqlite",
        transactional_ddl=True,
        compare_type=True,
        include_object=_include_object,
        process_revision_directives=_drop_hld_quirks,
        version_table=VERSION_TABLE,
    )


def _sqlite_pragma(connection: Connection, sql: str) -> list[Any]:
    # Straight to the driver: through SQLAlchemy it would open a transaction first, and
    # PRAGMA foreign_keys is a no-op inside one.
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def ensure_wal(connection: Connection) -> None:
    """Put a known (agentstore or hld) SQLite file in WAL mode; outside any transaction."""
    if connection.dialect.name != "sqlite" or (connection.engine.url.database or "") in (
        "",
        ":memory:",
    ):
        return
    if connection.in_transaction():
        connection.commit()
    _sqlite_pragma(connection, "PRAGMA journal_mode = WAL")


def _foreign_key_problems(connection: Connection) -> Counter[tuple[Any, ...]]:
    """Rows pointing at missing rows, counted per (table, parent table, key): not by rowid,
    which a batch migration's table rebuild may renumber for the same orphan."""
    return Counter(
        (table, parent, key)
        for table, _rowid, parent, key in connection.exec_driver_sql("PRAGMA foreign_key_check")
    )


def run_in_migration_transaction(
    connection: Connection, work: Callable[[Connection], None]
) -> None:
    """Run ``work`` in one write transaction, with SQLite's foreign keys off during it."""
    sqlite = connection.dialect.name == "sqlite"
    if connection.in_transaction():
        connection.commit()
    if sqlite:
        _sqlite_pragma(connection, "PRAGMA foreign_keys = OFF")
    try:
        connection.execution_options(**{WRITE: True})
        with connection.begin():
            # hld enabled foreign keys on one pooled connection only, so its files can hold
            # rows whose session was deleted: those are kept as they are; only a violation
            # the migration itself would introduce stops it.
            before = _foreign_key_problems(connection) if sqlite else Counter()
            work(connection)
            if sqlite:
                introduced = _foreign_key_problems(connection) - before
                if introduced:
                    raise DatabaseError(
                        f"the migration would leave {introduced.total()} rows pointing at "
                        "missing rows; it was rolled back and nothing changed"
                    )
    finally:
        connection.execution_options(**{WRITE: False})
        if sqlite:
            _sqlite_pragma(connection, "PRAGMA foreign_keys = ON")


StateKind = Literal["empty", "agentstore", "hld", "foreign"]


class DatabaseState:
    """What a database holds before the store touches it."""

    def __init__(
        self, kind: StateKind, revision: str | None = None, hld_version: int | None = None
    ) -> None:
        self.kind = kind
        self.revision = revision
        self.hld_version = hld_version

    def __repr__(self) -> str:
        return (
            f"DatabaseState({self.kind!r}, revision={self.revision!r}, "
            f"hld_version={self.hld_version!r})"
        )


def inspect_state(connection: Connection) -> DatabaseState:
    """Classify the database: empty, agentstore's (with its revision), legacy hld, or foreign."""
    tables = set(sa.inspect(connection).get_table_names())
    tables.discard("sqlite_sequence")
    if VERSION_TABLE in tables:
        revision = MigrationContext.configure(
            connection, opts={"version_table": VERSION_TABLE}
        ).get_current_revision()
        if revision is not None or tables != {VERSION_TABLE}:
            return DatabaseState("agentstore", revision=revision)
        tables.discard(VERSION_TABLE)
    if not tables:
        return DatabaseState("empty")
    if "schema_version" in tables and "sessions" in tables:
        version = connection.exec_driver_sql("SELECT MAX(version) FROM schema_version").scalar()
        return DatabaseState("hld", hld_version=int(version or 0))
    return DatabaseState("foreign")


@cache
def _scripts() -> ScriptDirectory:
    # The revisions this code ships; read once, not at every Store.open.
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision this code knows."""
    head = _scripts().get_current_head()
    assert head is not None
    return head


def is_known_revision(revision: str) -> bool:
    """Whether ``revision`` is one of this code's revisions."""
    try:
        return _scripts().get_revision(revision) is not None
    except Exception:
        return False


def upgrade(
    connection: Connection,
    target: str = "head",
    *,
    backup: bool = True,
    report: Any = None,
    database: str | None = None,
) -> None:
    """``alembic upgrade`` on this connection, in one transaction.

    An hld database is adopted on the way (see :mod:`agentstore.adopt`); ``backup``,
    ``report`` and the file's path (``database``, for the backup) are handed to it.
    """
    from alembic import command

    config = alembic_config(connection=connection)
    config.attributes["agentstore_backup"] = backup
    config.attributes["agentstore_report"] = report
    config.attributes["agentstore_database"] = database
    run_in_migration_transaction(connection, lambda _: command.upgrade(config, target))


def sqlite_engine_on(raw: sqlite3.Connection) -> sa.Engine:
    """A synchronous SQLAlchemy engine whose one connection is ``raw`` (for Alembic, in the
    thread that owns ``raw``); it emits its own ``BEGIN``, as the store does."""
    engine = sa.create_engine("sqlite://", creator=lambda: raw, poolclass=sa.pool.StaticPool)
    sa.event.listen(engine, "begin", on_sqlite_begin)
    return engine


def upgrade_sqlite(raw: sqlite3.Connection, *, database: str, backup: bool, report: Any) -> None:
    """:func:`upgrade` to head on a store's own SQLite connection."""
    engine = sqlite_engine_on(raw)
    with engine.connect() as connection:
        upgrade(connection, "head", backup=backup, report=report, database=database)
    # Not disposed: that would close ``raw``, which belongs to the store's writer thread.


def current_revision_if_any(connection: Connection) -> str | None:
    """The stamped revision, read with one query; None if there is no version table."""
    if connection.dialect.name == "postgresql":
        found = connection.exec_driver_sql(
            "SELECT to_regclass('alembic_version') IS NOT NULL"
        ).scalar()
    else:
        found = connection.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).scalar()
    if not found:
        return None
    rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").fetchall()
    if connection.in_transaction():
        connection.rollback()
    return str(rows[0][0]) if len(rows) == 1 else None


def adopt_legacy(connection: Connection, attributes: dict[str, Any]) -> None:
    """In the migration environment: adopt an hld database before Alembic looks at it."""
    if connection.dialect.name != "sqlite":
        return
    state = inspect_state(connection)
    if state.kind == "hld":
        heal_and_stamp(
            connection,
            backup=attributes.get("agentstore_backup", True),
            report=attributes.get("agentstore_report"),
            database=attributes.get("agentstore_database"),
        )
    elif state.kind == "foreign":
        raise DatabaseError("the database holds tables that are neither agentstore's nor hld's")
