"""Fixtures: one suite, two backends.

Every test that takes ``store`` or ``db_url`` runs on an SQLite file under ``tmp_path`` and,
when ``AGENTSTORE_TEST_POSTGRES_URL`` is set, again on a fresh PostgreSQL database made for
that test alone (dropped afterwards). The schema always comes from the migrations.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from agentstore import Store

POSTGRES_URL = os.environ.get("AGENTSTORE_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite", *(["postgresql"] if POSTGRES_URL else [])]
# hld-written databases (copied from the project's shared fixtures, with their README):
# the suite carries what it tests with, so a clone passes with nothing beside it.
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hld"


@asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database; yields its URL and drops it afterwards."""
    import asyncpg

    base = make_url(POSTGRES_URL)
    name = f"agentstore_t_{uuid.uuid4().hex[:12]}"
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(params=BACKENDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'agent.db'}"
    else:
        async with fresh_postgres_database() as url:
            yield url


@pytest.fixture(params=[b for b in BACKENDS if b == "postgresql"])
async def postgres_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The URL of an empty PostgreSQL database, for what only PostgreSQL has (CI sets it)."""
    async with fresh_postgres_database() as url:
        yield url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """A migrated store on each backend."""
    opened = await Store.open(db_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def hld_fixtures() -> Path:
    """The folder of hld-written databases (``tests/fixtures/hld``); copy before opening."""
    if not FIXTURES.exists():
        pytest.fail(f"hld fixtures not found at {FIXTURES}")
    return FIXTURES
