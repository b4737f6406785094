"""What every command shares: the database to open, running async work, reporting errors."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from agentstore.engine import safe_url
from agentstore.errors import StoreError
from agentstore.store import Store

__all__ = [
    "DEFAULT_DATABASE",
    "ENV_DATABASE",
    "Options",
    "cli",
    "database_option",
    "describe",
    "json_option",
    "open_store",
    "run",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

ENV_DATABASE = "AGENTSTORE_DATABASE_URL"
DEFAULT_DATABASE = "~/.agentstore/agent.db"
VERSION = "0.1.0"
_DB_HELP = (
    f"A path, :memory: or a database URL (default: ${ENV_DATABASE}, else {DEFAULT_DATABASE})."
)


@dataclass
class Options:
    """The global options, kept on the click context."""

    db: str | None = None
    debug: bool = False


def database_target(ctx: click.Context, given: str | None) -> str:
    """``--db`` (on the command, else before it), else $AGENTSTORE_DATABASE_URL, else the
    default."""
    if given is not None:
        chosen = given
    else:
        options = ctx.find_object(Options)
        chosen = (
            (options.db if options else None) or os.environ.get(ENV_DATABASE) or DEFAULT_DATABASE
        )
    if not chosen.strip():
        raise click.UsageError("the database (--db or $AGENTSTORE_DATABASE_URL) is empty")
    return chosen


def describe(target: str) -> str:
    """A database for messages: a path made absolute, a URL with its password hidden."""
    if target == ":memory:":
        return target
    if "://" in target:
        try:
            return safe_url(target)
        except Exception:  # not a URL we can parse: show nothing of it
            return "(the given URL)"
    return str(Path(target).expanduser().absolute())


def run(work: Awaitable[T]) -> T:
    """Run a command's async work to its end."""
    return asyncio.run(work)  # type: ignore[arg-type]


@asynccontextmanager
async def open_store(target: str, *, create: bool = False, **options: Any) -> AsyncIterator[Store]:
    """The store at ``target``, closed at the end of the block.

    A command that only reads or decides does not create a missing SQLite file (a mistyped
    ``--db`` is an error, not a new empty database); ``create=True`` for those that write.
    """
    if not create and target != ":memory:" and "://" not in target:
        path = Path(target).expanduser()
        if not path.exists():
            raise StoreError(
                f"{path.absolute()} does not exist (`agentstore db upgrade` creates a database)"
            )
    async with Store.open(target, **options) as store:
        yield store


def database_option(function: F) -> F:
    """``--db TARGET`` on a command (it may also come before the command)."""
    return click.option(
        "--db",
        "db",
        metavar="TARGET",
        default=None,
        help=_DB_HELP,
    )(function)


def json_option(function: F) -> F:
    """``--json``: one JSON document instead of a table."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document (for scripts)."
    )(function)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--db",
    "db",
    metavar="TARGET",
    default=None,
    help=_DB_HELP,
)
@click.option("--debug", is_flag=True, help="Show a traceback when a command fails.")
@click.version_option(VERSION, "--version", prog_name="agentstore", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, db: str | None, debug: bool) -> None:
    """agentstore: look at and look after an agent daemon's store.

    Sessions and their conversations, pending approvals, the schema, and moving and
    keeping data, on an SQLite file or a PostgreSQL server.
    """
    if db is not None and not db.strip():
        raise click.UsageError("--db is empty")
    ctx.obj = Options(db=db, debug=debug)
