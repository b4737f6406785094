"""The ``Store`` facade: opens the engine, owns the transactions, offers hld's API.

One engine per store; every call is one short unit of work on a connection of its own, so
concurrent tasks never share a connection or a transaction. ``store.transaction()`` groups
several repository calls in one transaction.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import DatabaseError as SQLAlchemyDatabaseError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentstore import migrations
from agentstore.engine import WRITE, create_engine, safe_url
from agentstore.errors import (
    DatabaseError,
    LegacyDatabaseError,
    MigrationRequiredError,
    NotADatabaseError,
    SchemaTooNewError,
    StoreError,
)
from agentstore.leases import DriverLeases
from agentstore.models import (
    Approval,
    ConversationEvent,
    FileSnapshot,
    MCPServer,
    RecentPath,
    Session,
    SessionUpdate,
    UserSettings,
)
from agentstore.repos._driver import Driver
from agentstore.repos.approvals import ApprovalRepo
from agentstore.repos.conversation import ConversationRepo
from agentstore.repos.mcp_servers import MCPServerRepo
from agentstore.repos.raw_events import RawEventRepo
from agentstore.repos.sessions import SessionRepo
from agentstore.repos.settings import SettingsRepo
from agentstore.repos.snapshots import SnapshotRepo

__all__ = ["Store", "Transaction"]

LEASED_CONNECTIONS = 2
"""Pooled connections the hot paths keep (see :mod:`agentstore.leases`)."""
LEASE_IDLE_SECONDS = 2.0
"""A PostgreSQL lease idle longer than this goes back to the pool (whose checkout pre-pings)."""


class _Repositories:
    """The repositories, all bound to one source of connections."""

    dialect_name: str

    def reading(self) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    def writing(self) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    def driver(self) -> AbstractAsyncContextManager[Driver] | None:
        raise NotImplementedError

    def _bind_repositories(self) -> None:
        self.sessions = SessionRepo(self)
        self.conversations = ConversationRepo(self)
        self.approvals = ApprovalRepo(self)
        self.mcp_servers = MCPServerRepo(self)
        self.raw_events = RawEventRepo(self)
        self.snapshots = SnapshotRepo(self)
        self.settings = SettingsRepo(self)


class Transaction(_Repositories):
    """Several repository calls on one connection, committed or rolled back together.

    Made by :meth:`Store.transaction`; use it from one task only.
    """

    def __init__(self, connection: AsyncConnection, dialect_name: str) -> None:
        self._connection = connection
        self.dialect_name = dialect_name
        self._bind_repositories()

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        yield self._connection

    def driver(self) -> AbstractAsyncContextManager[Driver] | None:
        # Inside a transaction every call goes through its one connection.
        return None

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        # A failed statement must not leave the rest of the transaction half-applied: a
        # savepoint lets the caller catch a store error and carry on, or not.
        async with self._connection.begin_nested():
            yield self._connection


class Store(_Repositories):
    """agentstore's entry point: ``store = await Store.open(path_or_url)``.

    Repositories: ``sessions``, ``conversations``, ``approvals``, ``mcp_servers``,
    ``raw_events``, ``snapshots``, ``settings``. The facade methods below are hld's
    ``ConversationStore``/``SQLiteStore`` API in snake_case.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._write_engine = engine.execution_options(**{WRITE: True})
        self.dialect_name = engine.dialect.name
        # Lease two connections when the pool has room for more (not for ":memory:", nor
        # a NullPool); on PostgreSQL only while warm, with per-call checkouts beyond them
        # (see agentstore.leases).
        size = getattr(engine.pool, "size", lambda: 0)()
        lease = size > LEASED_CONNECTIONS
        postgresql = self.dialect_name == "postgresql"
        self._leases = DriverLeases(
            engine,
            LEASED_CONNECTIONS if lease else 0,
            overflow=postgresql,
            idle_limit=LEASE_IDLE_SECONDS if postgresql else None,
        )
        self._bind_repositories()

    # --- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        target: str | os.PathLike[str] | URL = "~/.agentstore/agent.db",
        *,
        migrate: bool = True,
        backup: bool = True,
        **engine_options: Any,
    ) -> Store:
        """Open (and by default migrate) the database at ``target``.

        ``target`` is a file path, ``":memory:"`` or a SQLAlchemy URL
        (``sqlite+aiosqlite:///…``, ``postgresql+asyncpg://…``). A new SQLite file is
        created with mode 0600 in a folder created with mode 0700. ``engine_options`` go to
        :func:`sqlalchemy.ext.asyncio.create_async_engine` (pool size, pre-ping, recycle…).

        Raises :class:`NotADatabaseError` for a file that is not a database,
        :class:`SchemaTooNewError` for a schema newer than this code, and with
        ``migrate=False`` :class:`MigrationRequiredError` unless the schema is current. A
        refused file is left untouched. ``backup`` applies to adopting an hld database.
        """
        engine = create_engine(target, **engine_options)
        store = cls(engine)
        try:
            async with engine.connect() as conn:
                await conn.run_sync(_prepare_schema, migrate, backup)
        except StoreError:
            await engine.dispose()
            raise
        except SQLAlchemyDatabaseError as exc:
            await engine.dispose()
            if "not a database" in str(exc.orig).lower():
                raise NotADatabaseError(
                    f"{safe_url(engine.url)} is not a database; it was left untouched"
                ) from None
            raise DatabaseError(
                f"cannot open {safe_url(engine.url)}: {type(exc.orig).__name__}: {exc.orig}"
            ) from exc
        except (SQLAlchemyError, OSError) as exc:
            # e.g. a server that refuses the connection; the message names the URL with its
            # password hidden.
            await engine.dispose()
            raise DatabaseError(
                f"cannot connect to {safe_url(engine.url)}: {type(exc).__name__}: {exc}"
            ) from exc
        except BaseException:
            await engine.dispose()
            raise
        return store

    async def close(self) -> None:
        """Close every connection; the store cannot be used afterwards."""
        await self._leases.close()
        await self._engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Store({safe_url(self._engine.url)!r})"

    @property
    def engine(self) -> AsyncEngine:
        """The store's engine (for advanced use; the store owns its lifecycle)."""
        return self._engine

    # --- units of work ---------------------------------------------------------------------

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a read transaction, released at the end of the block."""
        async with self._engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a write transaction, committed at the end of the block."""
        async with self._write_engine.begin() as conn:
            yield conn

    def driver(self) -> AbstractAsyncContextManager[Driver] | None:
        """The hot paths' way in: a pooled connection's own aiosqlite or asyncpg connection.

        A statement sent straight to the driver is one hand-off instead of SQLAlchemy's
        several (FINDINGS.md). On SQLite it runs in autocommit, which SQLite makes atomic —
        a writing statement takes the write lock before it reads.
        """
        return self._leases.driver()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Group repository calls: all of them commit at the end of the block, or none.

        ``async with store.transaction() as tx: await tx.sessions.create(...)``. The
        transaction is a write transaction from its start (on SQLite ``BEGIN IMMEDIATE``).
        Use it from one task only.
        """
        async with self._write_engine.begin() as conn:
            yield Transaction(conn, self.dialect_name)

    # --- the seed's API: sessions ----------------------------------------------------------

    async def create_session(self, session: Session) -> Session:
        """Store a new session. Raises DuplicateError if its id or run id exists."""
        return await self.sessions.create(session)

    async def update_session(self, session_id: str, update: SessionUpdate) -> None:
        """Apply the set fields of ``update``. Raises NotFoundError for an unknown id."""
        await self.sessions.update(session_id, update)

    async def hard_delete_session(self, session_id: str) -> None:
        """Delete a session with all its rows. Raises NotFoundError for an unknown id."""
        await self.sessions.hard_delete(session_id)

    async def get_session(self, session_id: str) -> Session:
        """The session. Raises NotFoundError for an unknown id."""
        return await self.sessions.get(session_id)

    async def get_session_by_run_id(self, run_id: str) -> Session | None:
        """The session with this run id, or None."""
        return await self.sessions.get_by_run_id(run_id)

    async def list_sessions(
        self,
        *,
        limit: int | None = None,
        before: Session | tuple[datetime, str] | None = None,
        include_archived: bool = True,
        statuses: Sequence[str] | None = None,
    ) -> list[Session]:
        """Sessions, most recent activity first; see :meth:`SessionRepo.list`."""
        return await self.sessions.list(
            limit=limit, before=before, include_archived=include_archived, statuses=statuses
        )

    async def search_sessions_by_title(self, query: str, limit: int = 10) -> list[Session]:
        """Leaf, visible sessions matching ``query``; see :meth:`SessionRepo.search_by_title`."""
        return await self.sessions.search_by_title(query, limit)

    async def get_expired_dangerous_permissions_sessions(self) -> list[Session]:
        """Active sessions whose bypass-permissions window has expired."""
        return await self.sessions.expired_dangerous_permissions()

    async def get_recent_working_dirs(self, limit: int = 20) -> list[RecentPath]:
        """Working directories by most recent use; ``limit <= 0`` means 20."""
        return await self.sessions.recent_working_dirs(limit)

    async def get_session_count(self) -> int:
        """How many sessions are stored."""
        return await self.sessions.count()

    # --- conversation ----------------------------------------------------------------------

    async def add_conversation_event(self, event: ConversationEvent) -> ConversationEvent:
        """Append an event; sets its ``sequence`` and ``id``."""
        return await self.conversations.add(event)

    async def add_conversation_events(
        self, events: Sequence[ConversationEvent]
    ) -> list[ConversationEvent]:
        """Append a batch in one transaction with contiguous sequences; sets ids and sequences."""
        return await self.conversations.add_many(events)

    async def get_conversation(
        self,
        claude_session_id: str,
        *,
        after_sequence: int | None = None,
        before_sequence: int | None = None,
        limit: int | None = None,
    ) -> list[ConversationEvent]:
        """One Claude session's events, oldest first (see ConversationRepo.get_conversation)."""
        return await self.conversations.get_conversation(
            claude_session_id,
            after_sequence=after_sequence,
            before_sequence=before_sequence,
            limit=limit,
        )

    async def get_session_conversation(self, session_id: str) -> list[ConversationEvent]:
        """A session's events with its ancestors' first. Raises NotFoundError for an unknown id."""
        return await self.conversations.get_session_conversation(session_id)

    async def get_pending_tool_call(
        self, session_id: str, tool_name: str
    ) -> ConversationEvent | None:
        """The most recent uncompleted call of ``tool_name``, or None."""
        return await self.conversations.get_pending_tool_call(session_id, tool_name)

    async def get_pending_tool_calls(self, session_id: str) -> list[ConversationEvent]:
        """Every uncompleted tool call of the session, newest first."""
        return await self.conversations.get_pending_tool_calls(session_id)

    async def get_uncorrelated_pending_tool_call(
        self, session_id: str, tool_name: str
    ) -> ConversationEvent | None:
        """The most recent uncompleted call of ``tool_name`` without an approval, or None."""
        return await self.conversations.get_uncorrelated_pending_tool_call(session_id, tool_name)

    async def get_tool_call_by_id(self, tool_id: str) -> ConversationEvent | None:
        """The tool call with this tool id, or None."""
        return await self.conversations.get_tool_call_by_id(tool_id)

    async def mark_tool_call_completed(self, tool_id: str, session_id: str) -> None:
        """Mark the call completed; nothing if it does not exist."""
        await self.conversations.mark_tool_call_completed(tool_id, session_id)

    async def correlate_approval(self, session_id: str, tool_name: str, approval_id: str) -> None:
        """Attach an approval to the latest pending call of ``tool_name``; nothing if none."""
        await self.conversations.correlate_approval(session_id, tool_name, approval_id)

    async def link_conversation_event_to_approval_using_tool_id(
        self, session_id: str, tool_id: str, approval_id: str
    ) -> None:
        """Attach an approval to the pending call with this tool id; nothing if none."""
        await self.conversations.link_approval_by_tool_id(session_id, tool_id, approval_id)

    async def update_approval_status(self, approval_id: str, status: str) -> None:
        """Set the approval status on linked events (``resolved`` only replaces ``pending``)."""
        await self.conversations.update_approval_status(approval_id, status)

    async def get_event_count(self) -> int:
        """How many conversation events are stored."""
        return await self.conversations.count()

    # --- MCP servers, raw events, snapshots -------------------------------------------------

    async def store_mcp_servers(
        self, session_id: str, servers: Sequence[MCPServer]
    ) -> list[MCPServer]:
        """Append the session's MCP servers in one transaction."""
        return await self.mcp_servers.store(session_id, servers)

    async def get_mcp_servers(self, session_id: str) -> list[MCPServer]:
        """The session's MCP servers in stored order; ``[]`` if none."""
        return await self.mcp_servers.get(session_id)

    async def store_raw_event(self, session_id: str, event_json: str) -> None:
        """Append a raw JSON event for debugging."""
        await self.raw_events.store(session_id, event_json)

    async def create_file_snapshot(self, snapshot: FileSnapshot) -> FileSnapshot:
        """Store a file snapshot; sets its ``id``."""
        return await self.snapshots.create(snapshot)

    async def get_file_snapshots(self, session_id: str) -> list[FileSnapshot]:
        """The session's snapshots, newest first; ``[]`` if none."""
        return await self.snapshots.list(session_id)

    # --- approvals -------------------------------------------------------------------------

    async def create_approval(self, approval: Approval) -> Approval:
        """Store a new approval. Raises DuplicateError if its id exists."""
        return await self.approvals.create(approval)

    async def get_approval(self, approval_id: str) -> Approval:
        """The approval. Raises NotFoundError for an unknown id."""
        return await self.approvals.get(approval_id)

    async def get_pending_approvals(self, session_id: str) -> list[Approval]:
        """The session's pending approvals, oldest first."""
        return await self.approvals.pending(session_id)

    async def update_approval_response(
        self, approval_id: str, status: str, comment: str = ""
    ) -> Approval:
        """Decide a pending approval atomically; see :meth:`ApprovalRepo.decide`.

        Raises NotFoundError, AlreadyDecidedError or InvalidStatusError.
        """
        return await self.approvals.decide(approval_id, status, comment)

    async def get_approval_count(self) -> int:
        """How many approvals are stored."""
        return await self.approvals.count()

    # --- settings --------------------------------------------------------------------------

    async def get_user_settings(self) -> UserSettings:
        """The user settings (defaults if the row is missing)."""
        return await self.settings.get()

    async def update_user_settings(self, settings: UserSettings) -> UserSettings:
        """Store the user settings; ``updated_at`` becomes now."""
        return await self.settings.update(settings)


def _prepare_schema(connection: Connection, migrate: bool, backup: bool) -> None:
    """Bring the schema to the newest revision, or refuse with a clear error.

    Every refusal happens before anything is written: a foreign file, a schema newer than
    this code, or (with ``migrate=False``) an hld file or an old revision stays as it was.
    """
    state = migrations.inspect_state(connection)
    head = migrations.head_revision()
    where = safe_url(connection.engine.url)
    if state.kind == "foreign":
        raise DatabaseError(
            f"{where} holds tables that are neither agentstore's nor hld's; it was left untouched"
        )
    if state.kind == "agentstore" and state.revision == head:
        migrations.ensure_wal(connection)
        return
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
        raise MigrationRequiredError(
            f"{where} is at revision {state.revision!r}, not {head!r}; open with migrate=True "
            "or run `alembic upgrade head`. Nothing was changed."
        )
    # An hld database is adopted on the way (agentstore.adopt, from the migration environment).
    migrations.upgrade(connection, "head", backup=backup)
    migrations.ensure_wal(connection)  # only once nothing can be refused any more
