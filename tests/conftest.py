"""Fixtures: one suite, two backends, through agentstore's own pytest plugin.

The plugin (``agentstore.testing``) runs every test that takes ``store`` or ``db_url`` on an
SQLite file under ``tmp_path`` and, when ``AGENTSTORE_TEST_POSTGRES_URL`` is set, again on a
fresh PostgreSQL database made for that test alone (dropped afterwards): pyproject.toml sets
``agentstore_backends = sqlite postgresql`` and ``agentstore_sqlite = file``. The schema
always comes from the migrations.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentstore.testing import fresh_postgres_database

# hld-written databases (copied from the project's shared fixtures, with their README):
# the suite carries what it tests with, so a clone passes with nothing beside it.
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hld"


@pytest.fixture
def db_url(agentstore_url: str) -> str:
    """The URL of an empty database on each backend."""
    return agentstore_url


@pytest.fixture(params=["postgresql"] if os.environ.get("AGENTSTORE_TEST_POSTGRES_URL") else [])
async def postgres_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The URL of an empty PostgreSQL database, for what only PostgreSQL has (CI sets it)."""
    async with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def hld_fixtures() -> Path:
    """The folder of hld-written databases (``tests/fixtures/hld``); copy before opening."""
    if not FIXTURES.exists():
        pytest.fail(f"hld fixtures not found at {FIXTURES}")
    return FIXTURES
