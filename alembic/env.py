"""Alembic environment for agentstore (async).

The database is taken, in order, from a connection handed over by ``Store.open``
(``config.attributes["connection"]``), a URL handed over by ``agentstore db``
(``config.attributes["agentstore_url"]``), the ``AGENTSTORE_DATABASE_URL`` environment
variable, or ``sqlalchemy.url`` in alembic.ini. Engines come from
:func:`agentstore.engine.create_engine`, so the command line sets SQLite up as the store does;
a new SQLite file is created 0600 (in folders made 0700), and only by an upgrade.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from sqlalchemy.engine import Connection

from agentstore.db.sqlite import SQLiteTarget, check_file, create_file
from agentstore.engine import create_engine, resolve_url
from agentstore.errors import DatabaseError
from agentstore.migrations import adopt_legacy, configure_context, run_in_migration_transaction
from agentstore.models import Base
from alembic import context

config = context.config
target_metadata = Base.metadata

# `alembic` on the command line: its alembic.ini's loggers (Alembic's own progress lines).
# When agentstore runs the migrations there is no ini file, and logging stays the caller's.
if config.config_file_name is not None and os.path.exists(config.config_file_name):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    return (
        config.attributes.get("agentstore_url")
        or os.environ.get("AGENTSTORE_DATABASE_URL")
        or config.get_main_option("sqlalchemy.url")
        or ""
    )


def _prepare_file(url: str) -> None:
    """Create a missing SQLite file privately for an upgrade; refuse it for anything else."""
    resolved = resolve_url(url)
    if resolved.get_backend_name() != "sqlite":
        return
    target = SQLiteTarget.from_url_database(resolved.database, resolved.query)
    if target.path is None or check_file(target.path, create=_upgrading()):
        return
    if not _upgrading():
        raise DatabaseError(f"{target.path} does not exist")
    create_file(target.path)


def run_migrations_offline() -> None:
    configure_context(context, url=_url(), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


def _upgrading() -> bool:
    """Only an upgrade adopts an hld database: ``alembic current`` or ``check`` change nothing."""
    if "agentstore_backup" in config.attributes:  # agentstore.migrations.upgrade
        return True
    command = getattr(config.cmd_opts, "cmd", None)
    return command is not None and getattr(command[0], "__name__", "") == "upgrade"


def _run(connection: Connection) -> None:
    if _upgrading():
        # An hld daemon.db is adopted in the same transaction as the upgrade (agentstore.adopt).
        adopt_legacy(connection, config.attributes)
    configure_context(context, connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    _prepare_file(_url())
    engine = create_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_in_migration_transaction, _run)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
