"""pytest fixtures for code that uses agentstore (a pytest plugin, on when agentstore is installed).

* ``store`` — a fresh, migrated store for each test: an in-memory SQLite database, or a new
  PostgreSQL database when ``AGENTSTORE_TEST_POSTGRES_URL`` names a server (a role that may
  create databases); closed, and the database dropped, after the test.
* ``store_factory`` — ``await store_factory()`` opens another fresh store (or
  ``await store_factory(target, **options)`` one on a target of your own); every store it
  opened is closed after the test.
* ``agentstore_url`` — the URL of a fresh, empty database (a file under ``tmp_path`` on
  SQLite), for tests that open it themselves (other processes, say); on a file or a server,
  ``store`` is opened on this same database.

The fixtures are async: they need pytest-asyncio. The ini option ``agentstore_backends``
(``sqlite``, ``postgresql`` or both) runs each test that uses them once per backend listed,
PostgreSQL only when the URL is set; by default, PostgreSQL when the URL is set, else SQLite.
``agentstore_sqlite = file`` makes ``store`` a file under ``tmp_path`` instead of memory.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from agentstore.store import Store

__all__ = ["fresh_postgres_database"]

POSTGRES_ENV = "AGENTSTORE_TEST_POSTGRES_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "agentstore_backends",
        "backends the agentstore fixtures run each test on (sqlite, postgresql)",
        type="linelist",
        default=[],
    )
    parser.addini(
        "agentstore_sqlite",
        "where the `store` fixture keeps an SQLite database: memory (default) or file",
        default="memory",
    )


def _backends(config: pytest.Config) -> list[str]:
    # One per line, or several on a line (spaces or commas between them).
    wanted = [
        name
        for line in config.getini("agentstore_backends")
        for name in str(line).replace(",", " ").split()
    ]
    postgres = bool(os.environ.get(POSTGRES_ENV))
    if not wanted:
        return ["postgresql"] if postgres else ["sqlite"]
    unknown = set(wanted) - {"sqlite", "postgresql"}
    if unknown:
        raise pytest.UsageError(
            f"agentstore_backends: unknown backend {', '.join(sorted(unknown))}"
        )
    return [name for name in wanted if name == "sqlite" or postgres]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "agentstore_backend" in metafunc.fixturenames:
        metafunc.parametrize("agentstore_backend", _backends(metafunc.config), indirect=True)


@asynccontextmanager
async def fresh_postgres_database(server_url: str | None = None) -> AsyncIterator[str]:
    """A new, empty PostgreSQL database on the server; yields its URL and drops it after."""
    import asyncpg

    base = make_url(server_url or os.environ[POSTGRES_ENV])
    name = f"agentstore_t_{uuid.uuid4().hex[:12]}"
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')  # a name made here, not given
    finally:
        await admin.close()
    try:
        yield base.set(drivername="postgresql+asyncpg", database=name).render_as_string(
            hide_password=False
        )
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - without pytest-asyncio there are no fixtures
    HAVE_PYTEST_ASYNCIO = False
else:
    HAVE_PYTEST_ASYNCIO = True

if HAVE_PYTEST_ASYNCIO:

    @pytest.fixture
    def agentstore_backend(request: pytest.FixtureRequest) -> str:
        """The backend this run of the test uses (``sqlite`` or ``postgresql``)."""
        backend: str = request.param
        return backend

    @pytest_asyncio.fixture
    async def agentstore_url(agentstore_backend: str, tmp_path: Path) -> AsyncIterator[str]:
        """The URL of a fresh, empty database (an SQLite file under ``tmp_path``)."""
        if agentstore_backend == "sqlite":
            yield f"sqlite+aiosqlite:///{tmp_path / 'agent.db'}"
        else:
            async with fresh_postgres_database() as url:
                yield url

    @pytest_asyncio.fixture
    async def store_factory(
        agentstore_backend: str, request: pytest.FixtureRequest, tmp_path: Path
    ) -> AsyncIterator[Callable[..., Awaitable[Store]]]:
        """``await store_factory(target=None, **options)``: a new open store, closed later."""
        opened: list[Store] = []
        databases: list[Any] = []
        in_file = request.config.getini("agentstore_sqlite") == "file"

        async def factory(target: Any = None, **options: Any) -> Store:
            if target is None:
                if agentstore_backend == "sqlite":
                    target = tmp_path / f"store-{len(opened)}.db" if in_file else ":memory:"
                else:
                    database = fresh_postgres_database()
                    target = await database.__aenter__()
                    databases.append(database)
            store = await Store.open(target, **options)
            opened.append(store)
            return store

        try:
            yield factory
        finally:
            for store in reversed(opened):
                await store.close()
            for database in reversed(databases):
                await database.__aexit__(None, None, None)

    @pytest_asyncio.fixture
    async def store(
        store_factory: Callable[..., Awaitable[Store]],
        agentstore_backend: str,
        agentstore_url: str,
        request: pytest.FixtureRequest,
    ) -> Store:
        """A fresh, migrated store for this test (closed after it); on a file or a server,
        the database of ``agentstore_url``."""
        if agentstore_backend == "sqlite" and request.config.getini("agentstore_sqlite") != "file":
            return await store_factory(":memory:")
        return await store_factory(agentstore_url)
