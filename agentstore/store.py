"""The ``Store`` facade: opens the database, owns the transactions, offers hld's API.

Every call is one short unit of work run by the store's data path (:mod:`agentstore.db`):
on SQLite in the thread that owns the connection, on PostgreSQL in a task the store owns —
never in the caller's task, so a caller's cancellation can stop its wait but never a unit
half-way. Appends are group-committed (:mod:`agentstore.db.groups`).
``store.transaction()`` groups several calls in one transaction; inside its block, calls
made on the store itself by the same task run in that transaction too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Generator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, BinaryIO, Self, TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from agentstore import opening
from agentstore.adopt import AdoptionReport
from agentstore.db import Conn, Unit
from agentstore.db.errors import translate
from agentstore.db.groups import AppendRequest, GroupCommit, Outcome
from agentstore.db.postgres import HeldConnection, PostgresBackend
from agentstore.db.sqlite import SQLiteBackend, SQLiteTarget, create_file, remove_created
from agentstore.engine import create_engine, safe_url
from agentstore.errors import (
    DatabaseError,
    InvalidValueError,
    MigrationRequiredError,
    StoreClosedError,
    StoreError,
)
from agentstore.migrations import DatabaseState
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
from agentstore.repos.approvals import ApprovalRepo
from agentstore.repos.conversation import ConversationRepo
from agentstore.repos.maintenance import MaintenanceRepo, StoreStats
from agentstore.repos.mcp_servers import MCPServerRepo
from agentstore.repos.raw_events import RawEventRepo
from agentstore.repos.search import SearchHit, SearchRepo
from agentstore.repos.sessions import SessionRepo
from agentstore.repos.settings import SettingsRepo
from agentstore.repos.snapshots import SnapshotRepo
from agentstore.validation import require_int, require_str
from agentstore.watch import ChangeFeed, first_decision, postgres_changes, sqlite_changes

__all__ = ["Snapshot", "Store", "Transaction", "adopt_file"]

logger = logging.getLogger("agentstore")
T = TypeVar("T")


class _Repositories:
    """The repositories, all bound to one database (a store or a transaction)."""

    dialect: str

    def _bind_repositories(self) -> None:
        self.sessions = SessionRepo(self)  # type: ignore[arg-type]
        self.conversations = ConversationRepo(self)  # type: ignore[arg-type]
        self.approvals = ApprovalRepo(self)  # type: ignore[arg-type]
        self.mcp_servers = MCPServerRepo(self)  # type: ignore[arg-type]
        self.raw_events = RawEventRepo(self)  # type: ignore[arg-type]
        self.snapshots = SnapshotRepo(self)  # type: ignore[arg-type]
        self.settings = SettingsRepo(self)  # type: ignore[arg-type]
        self.maintenance = MaintenanceRepo(self)  # type: ignore[arg-type]
        self.search_index = SearchRepo(self)  # type: ignore[arg-type]

    @property
    def dialect_name(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.dialect


def _append_unit(requests: Sequence[AppendRequest]) -> Unit[list[Outcome]]:
    async def unit(conn: Conn) -> list[Outcome]:
        return await conn.append_events([request.rows for request in requests])

    return unit


class Transaction(_Repositories):
    """Several repository calls in one transaction, committed or rolled back together.

    Made by :meth:`Store.transaction`; its repositories (``tx.sessions``,
    ``tx.conversations``, …) run every call in the open transaction, each in a savepoint
    of its own: a call that fails (a :class:`~agentstore.errors.DuplicateError`, say) can be
    caught and the block go on, with the earlier calls kept. Use it from one task only.
    """

    def __init__(self, runner: Any, dialect: str) -> None:
        self._runner = runner
        self._open = True
        self.dialect = dialect
        self._bind_repositories()

    def _check(self) -> Any:
        if not self._open:
            raise StoreError("this transaction has ended; start a new store.transaction()")
        return self._runner

    async def read(self, unit: Unit[T], *, snapshot: bool = False) -> T:
        result: T = await self._check().read(unit, snapshot=snapshot)
        return result

    async def write(self, unit: Unit[T], *, lock_keys: Sequence[str] = ()) -> T:
        result: T = await self._check().write(unit, lock_keys=lock_keys)
        return result

    async def append(self, request: AppendRequest) -> Outcome:
        [outcome] = await self.write(_append_unit([request]), lock_keys=request.claude_ids)
        return outcome


class Snapshot(_Repositories):
    """Reads that all see one consistent state of the database (:meth:`Store.snapshot`).

    Its repositories read only; a write raises :class:`~agentstore.errors.StoreError`.
    """

    def __init__(self, runner: Any, dialect: str) -> None:
        self._runner = runner
        self._open = True
        self.dialect = dialect
        self._bind_repositories()

    async def read(self, unit: Unit[T], *, snapshot: bool = False) -> T:
        if not self._open:
            raise StoreError("this snapshot has ended; start a new store.snapshot()")
        result: T = await self._runner.read(unit)
        return result

    async def write(self, unit: Unit[T], *, lock_keys: Sequence[str] = ()) -> T:
        raise StoreError("a snapshot reads only; write through the store or a transaction")

    async def append(self, request: AppendRequest) -> Outcome:
        raise StoreError("a snapshot reads only; write through the store or a transaction")


@dataclass
class _Active:
    """The transaction a task's context is inside (see :meth:`Store.transaction`), or an
    in-memory store's snapshot (``transaction`` None)."""

    store: Store
    transaction: Transaction | None
    owner: asyncio.Task[Any] | None


_active: ContextVar[_Active | None] = ContextVar("agentstore_transaction", default=None)


class _Opening:
    """What :meth:`Store.open` returns: await it, or use it in ``async with`` directly."""

    def __init__(self, opening: Any) -> None:
        self._opening = opening
        self._store: Store | None = None

    def __await__(self) -> Generator[Any, None, Store]:
        return self._opening.__await__()  # type: ignore[no-any-return]

    async def __aenter__(self) -> Store:
        self._store = await self._opening
        return self._store

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._store is not None:
            await self._store.close()


class Store(_Repositories):
    """agentstore's entry point: ``store = await Store.open(path_or_url)``.

    Repositories: ``sessions``, ``conversations``, ``approvals``, ``mcp_servers``,
    ``raw_events``, ``snapshots``, ``settings``. The facade methods below are hld's
    ``ConversationStore``/``SQLiteStore`` API in snake_case.
    """

    adoption: AdoptionReport | None
    """What adopting an hld database did when this store opened it (None otherwise)."""

    def __init__(
        self,
        backend: SQLiteBackend | PostgresBackend,
        url: URL,
        *,
        engine: AsyncEngine | None,
        owns_engine: bool,
        engine_options: dict[str, Any],
    ) -> None:
        self._backend = backend
        self._url = url
        self._engine = engine
        self._owns_engine = owns_engine
        self._engine_options = engine_options
        self.dialect = backend.dialect
        self._groups = GroupCommit(
            self._write_group, lane_per_claude_sessions=self.dialect == "postgresql"
        )
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        self.adoption = None
        self._feed = ChangeFeed(self)
        self._bind_repositories()

    # --- lifecycle -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        target: str | os.PathLike[str] | URL | AsyncEngine = "~/.agentstore/agent.db",
        *,
        migrate: bool = True,
        backup: bool = True,
        durability: str = "full",
        **engine_options: Any,
    ) -> _Opening:
        """Open (and by default migrate) the database at ``target``.

        ``target`` is a file path, ``":memory:"``, a SQLAlchemy URL
        (``sqlite+aiosqlite:///…``, ``postgresql+asyncpg://…``) or an existing
        ``AsyncEngine`` (which the store uses and does not dispose). A new SQLite file is
        created with mode 0600 in a folder created with mode 0700. ``engine_options`` go to
        :func:`sqlalchemy.ext.asyncio.create_async_engine` (pool size, pre-ping, recycle…).

        ``durability``: ``"full"`` (the default, as hld runs SQLite: a commit survives a
        power loss) or ``"normal"`` (SQLite's WAL default: the last commits may be lost on a
        power loss, never on a crash). PostgreSQL's durability is the server's own
        (``synchronous_commit``); ``"normal"`` turns it off for the store's connections.

        Use ``store = await Store.open(...)`` or ``async with Store.open(...) as store:``.

        Raises :class:`NotADatabaseError` for a file that is not a database,
        :class:`SchemaTooNewError` for a schema newer than this code, and with
        ``migrate=False`` :class:`MigrationRequiredError` unless the schema is current. A
        refused file is left untouched. ``backup`` applies to adopting an hld database.
        """
        return _Opening(
            cls._open(
                target,
                migrate=migrate,
                backup=backup,
                durability=durability,
                engine_options=engine_options,
            )
        )

    @classmethod
    async def _open(
        cls,
        target: Any,
        *,
        migrate: bool,
        backup: bool,
        durability: str,
        engine_options: dict[str, Any],
    ) -> Store:
        if durability not in opening.DURABILITIES:
            raise InvalidValueError(f"durability must be 'full' or 'normal', got {durability!r}")
        resolved = opening.resolve_target(target)
        if resolved.sqlite is not None:
            return await cls._open_sqlite(
                resolved,
                migrate=migrate,
                backup=backup,
                durability=durability,
                engine_options=engine_options,
            )
        return await cls._open_postgresql(
            resolved, migrate=migrate, durability=durability, engine_options=engine_options
        )

    @classmethod
    async def _open_sqlite(
        cls,
        resolved: opening.Target,
        *,
        migrate: bool,
        backup: bool,
        durability: str,
        engine_options: dict[str, Any],
    ) -> Store:
        target: SQLiteTarget = resolved.sqlite  # type: ignore[assignment]
        created = []
        if target.path is not None:
            # A few system calls and a read of the schema: quick enough to do in place.
            exists = opening.file_exists(target, create=migrate)
            where = str(target.path)
            if exists:
                state = opening.inspect_sqlite_file(target)
            else:
                state = DatabaseState("empty")
            if not exists and not migrate:
                raise MigrationRequiredError(
                    f"{where} does not exist; open it with migrate=True to create it. "
                    "Nothing was created."
                )
            opening.check_state(state, where, migrate=migrate)  # refusals, before any write
            if not exists:
                created = create_file(target.path)
        backend = SQLiteBackend(target, durability=durability)
        try:
            report = await backend.on_writer(
                lambda raw: opening.prepare_sqlite(
                    raw, target, migrate=migrate, backup=backup, durability=durability
                )
            )
        except BaseException as exc:
            await asyncio.shield(backend.close())
            remove_created(created)
            if isinstance(exc, sqlite3.Error | SQLAlchemyError | OSError):
                # A driver or migration error: named, its cause chained.
                original = getattr(exc, "orig", None) or exc
                raise translate(original, str(target.path or ":memory:")) from exc
            raise
        store = cls(
            backend,
            resolved.url,
            engine=resolved.engine,
            owns_engine=False,
            engine_options=engine_options,
        )
        store.adoption = report
        return store

    @classmethod
    async def _open_postgresql(
        cls,
        resolved: opening.Target,
        *,
        migrate: bool,
        durability: str,
        engine_options: dict[str, Any],
    ) -> Store:
        engine = resolved.engine
        owns = engine is None
        if engine is None:
            if durability == "normal":
                connect_args = dict(engine_options.pop("connect_args", {}))
                settings = dict(connect_args.get("server_settings", {}))
                settings.setdefault("synchronous_commit", "off")
                connect_args["server_settings"] = settings
                engine_options["connect_args"] = connect_args
            engine = opening.create_postgres_engine(resolved.url, engine_options)
        try:
            await opening.prepare_postgresql(engine, migrate=migrate)
        except BaseException:
            if owns:
                await asyncio.shield(engine.dispose())
            raise
        return cls(
            PostgresBackend(engine),
            engine.url,
            engine=engine,
            owns_engine=owns,
            engine_options=engine_options,
        )

    async def close(self) -> None:
        """Finish queued work, then close every connection; the store then refuses every
        call with :class:`~agentstore.errors.StoreClosedError`.

        Closing runs to its end even if the caller is cancelled meanwhile.
        """
        self._closed = True
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        try:
            await self._feed.close()  # watches end first: they read through the store
            await self._groups.close()
        finally:
            try:
                await self._backend.close()
            finally:
                if self._engine is not None and self._owns_engine:
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
        state = ", closed" if self._closed else ""
        memory = isinstance(self._backend, SQLiteBackend) and self._backend.target.memory
        return f"Store({':memory:' if memory else safe_url(self._url)!r}{state})"

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def engine(self) -> AsyncEngine:
        """A SQLAlchemy ``AsyncEngine`` on the store's database, for your own queries.

        On PostgreSQL it is the engine whose pool the store uses. On SQLite the store owns
        its connections; this is an aiosqlite engine on the same file, made on first use
        and disposed with the store (an in-memory store has none).
        """
        if self._engine is None:
            if self.dialect == "sqlite" and self._backend.target.memory:  # type: ignore[union-attr]
                raise StoreError(
                    "an in-memory store has no SQLAlchemy engine: its database lives in the "
                    "store's own connection"
                )
            self._engine = create_engine(self._url, **self._engine_options)
            self._owns_engine = True
        return self._engine

    # --- where units of work run -----------------------------------------------------------

    def _transaction_of_task(self, writing: bool) -> Transaction | None:
        """The open transaction this call belongs to, if it is made inside one's block."""
        if self._closed:
            raise StoreClosedError()
        active = _active.get()
        if active is None or active.store is not self:
            return None
        if active.transaction is None:  # an in-memory store's snapshot holds its one connection
            if writing:
                raise StoreError(
                    "writes wait while a store.snapshot() is open on an in-memory store; "
                    "write after the block"
                )
            return None
        if active.owner is asyncio.current_task():
            return active.transaction
        if writing or (self.dialect == "sqlite" and self._backend.target.memory):  # type: ignore[union-attr]
            # A task started inside the block would wait for the block, which may wait for it.
            raise StoreError(
                "this call was made by another task inside a store.transaction() block; "
                "use the block's own repositories (tx.sessions, tx.conversations, …) from the "
                "task that opened it"
            )
        return None

    async def read(self, unit: Unit[T], *, snapshot: bool = False) -> T:
        """Run a read unit of work (for repositories)."""
        transaction = self._transaction_of_task(writing=False)
        if transaction is not None:
            return await transaction.read(unit, snapshot=snapshot)
        return await self._backend.read(unit, snapshot=snapshot)

    async def write(self, unit: Unit[T], *, lock_keys: Sequence[str] = ()) -> T:
        """Run a write unit of work in its own transaction (for repositories)."""
        transaction = self._transaction_of_task(writing=True)
        if transaction is not None:
            return await transaction.write(unit, lock_keys=lock_keys)
        result = await self._backend.write(unit, lock_keys=lock_keys)
        self._feed.approvals_changed()  # approval watches look again (they read a short list)
        return result

    async def append(self, request: AppendRequest) -> Outcome:
        """Append a request's events, group-committed with the others waiting (for repositories)."""
        transaction = self._transaction_of_task(writing=True)
        if transaction is not None:
            return await transaction.append(request)
        return await self._groups.append(request)

    def _write_group(self, group: list[AppendRequest], done: Any) -> None:
        keys = sorted({key for request in group for key in request.claude_ids})
        single = len(group) == 1 and len(group[0].rows) == 1  # one statement, its own locks

        def committed(outcomes: Any, error: BaseException | None) -> None:
            done(outcomes, error)  # the callers first, then the watches of what was written
            if error is None:
                self._feed.appended(
                    {
                        key
                        for request, outcome in zip(group, outcomes, strict=True)
                        if not isinstance(outcome, str)
                        for key in request.claude_ids
                    }
                )

        self._backend.write_then(_append_unit(group), committed, lock_keys=keys, single=single)

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Snapshot]:
        """Several reads that see one consistent state, whatever is written meanwhile.

        ``async with store.snapshot() as snap: await snap.sessions.list(); …``. On SQLite it
        holds a read transaction on a connection of its own (writers are not blocked); on
        PostgreSQL a ``REPEATABLE READ READ ONLY`` transaction. Keep it short: an old
        snapshot keeps SQLite from checkpointing its write-ahead log.
        """
        if self._closed:
            raise StoreClosedError()
        memory = self.dialect == "sqlite" and self._backend.target.memory  # type: ignore[union-attr]
        async with self._backend.snapshot() as runner:
            snapshot = Snapshot(runner, self.dialect)
            token = _active.set(_Active(self, None, asyncio.current_task())) if memory else None
            try:
                yield snapshot
            finally:
                snapshot._open = False
                if token is not None:
                    _active.reset(token)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Group repository calls: all of them commit at the end of the block, or none.

        ``async with store.transaction() as tx: await tx.sessions.create(...)``. The
        transaction is a write transaction from its start (on SQLite ``BEGIN IMMEDIATE``;
        other writers of this store wait for the block). Calls made on the store itself
        from the same task inside the block run in the transaction too. Use it from one
        task only; blocks do not nest.
        """
        if self._transaction_of_task(writing=True) is not None:
            raise StoreError("store.transaction() blocks do not nest")
        async with self._backend.transaction() as runner:
            transaction = Transaction(runner, self.dialect)
            token = _active.set(_Active(self, transaction, asyncio.current_task()))
            try:
                yield transaction
            finally:
                transaction._open = False
                _active.reset(token)
        self._feed.everything_changed()  # committed: whatever it wrote, watches look again

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

    # --- search ----------------------------------------------------------------------------

    async def search(
        self,
        query: str,
        *,
        limit: int = 20,
        offset: int = 0,
        session_id: str | None = None,
    ) -> list[SearchHit]:
        """Full-text search of session titles, summaries and queries and of event contents,
        tool inputs and tool results: best match first (ties: newest first), each hit with
        a snippet, the matched words in ``[`` ``]``. Words must all match; ``"a phrase"``;
        ``prefix*``; any other character is literal (no query is a syntax error). ``limit``
        <= 0 means 20, at most 200. See :mod:`agentstore.repos.search`."""
        return await self.search_index.search(
            query, limit=limit, offset=offset, session_id=session_id
        )

    # --- watching --------------------------------------------------------------------------

    def watch_conversation(
        self, claude_session_id: str, *, after_sequence: int = 0
    ) -> AsyncIterator[ConversationEvent]:
        """The conversation's events with ``sequence > after_sequence``, in sequence order,
        each exactly once, as they are appended — by this store, another store or process,
        or an hld daemon sharing the file. Waits for new events; ends when the caller stops
        iterating (``break``, cancellation) or the store closes. Resume after a restart with
        the last sequence you received. See :mod:`agentstore.watch`.
        """
        claude_session_id = require_str(claude_session_id, "claude_session_id")
        after = require_int(after_sequence, "after_sequence", minimum=0)
        if self._closed:
            raise StoreClosedError()
        return self._feed.conversation(claude_session_id, after)

    def watch_approvals(self, *, session_id: str | None = None) -> AsyncIterator[Approval]:
        """Each approval pending when the watch starts, then each that becomes pending, once
        each, oldest first (of one session, or of every session). Ends like
        :meth:`watch_conversation`."""
        if session_id is not None:
            session_id = require_str(session_id, "session_id")
        if self._closed:
            raise StoreClosedError()
        return self._feed.approvals(session_id)

    async def wait_for_decision(
        self,
        approval_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (the SPEC's signature)
    ) -> Approval:
        """The approval once it is approved or denied (at once if it already is).

        Raises :class:`NotFoundError` for an unknown id and ``TimeoutError`` after
        ``timeout`` seconds; a decision made by another process counts as well.
        """
        approval_id = require_str(approval_id, "approval_id")
        if timeout is not None and (
            not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout < 0
        ):
            raise InvalidValueError("timeout must be a number of seconds >= 0, or None")
        if self._closed:
            raise StoreClosedError()
        return await first_decision(self._feed, approval_id, timeout)

    async def _watch_source(self, feed: ChangeFeed) -> None:
        """Wake the watches for commits made elsewhere, while any watch is open."""
        if isinstance(self._backend, SQLiteBackend):
            target = self._backend.target
            if target.memory:
                return  # no other connection can write an in-memory database
            await sqlite_changes(feed, lambda: sqlite3.connect(target.database, uri=target.uri))
            return
        engine = self.engine
        await postgres_changes(
            feed,
            connect=lambda: HeldConnection.checkout(engine),
            release=lambda held: held.discard(),
        )

    # --- the store as a whole --------------------------------------------------------------

    async def export_jsonl(
        self,
        dest: str | os.PathLike[str] | BinaryIO,
        *,
        session_ids: Sequence[str] | None = None,
        include_secrets: bool = False,
    ) -> dict[str, int]:
        """Write the store (or some sessions, with their ancestors) as JSON Lines; returns
        counts per type. See :func:`agentstore.transfer.export_jsonl`."""
        from agentstore import transfer

        return await transfer.export_jsonl(
            self, dest, session_ids=session_ids, include_secrets=include_secrets
        )

    async def import_jsonl(
        self, source: str | os.PathLike[str] | BinaryIO, *, on_conflict: str = "error"
    ) -> dict[str, int]:
        """Read a file :meth:`export_jsonl` wrote, in one transaction; returns counts per
        type. See :func:`agentstore.transfer.import_jsonl`."""
        from agentstore import transfer

        return await transfer.import_jsonl(self, source, on_conflict=on_conflict)

    async def prune(
        self,
        *,
        raw_events_before: datetime | None = None,
        snapshots_before: datetime | None = None,
        archived_sessions_before: datetime | None = None,
        dry_run: bool = False,
        vacuum: bool = False,
    ) -> dict[str, int]:
        """Delete old raw events, file snapshots and archived sessions, in one transaction;
        returns counts per type (what would go, with ``dry_run``). See
        :meth:`agentstore.repos.maintenance.MaintenanceRepo.prune`."""
        counts = await self.maintenance.prune(
            raw_events_before=raw_events_before,
            snapshots_before=snapshots_before,
            archived_sessions_before=archived_sessions_before,
            dry_run=dry_run,
        )
        if vacuum and not dry_run:
            await self.vacuum()
        return counts

    async def vacuum(self) -> None:
        """Give the space of deleted rows back (SQLite: to the file system)."""
        if self._transaction_of_task(writing=True) is not None:
            raise StoreError("vacuum cannot run inside store.transaction()")
        await self._backend.vacuum()

    async def stats(self) -> StoreStats:
        """Rows per table and, on SQLite, the file's size in bytes (and its -wal's)."""
        rows = await self.maintenance.row_counts()
        path = getattr(self._backend, "target", None)
        path = getattr(path, "path", None)
        if path is None:
            return StoreStats(rows=rows)
        wal = path.with_name(path.name + "-wal")
        return StoreStats(
            rows=rows,
            file_bytes=path.stat().st_size,
            wal_bytes=wal.stat().st_size if wal.exists() else 0,
        )

    # --- settings --------------------------------------------------------------------------

    async def get_user_settings(self) -> UserSettings:
        """The user settings (defaults if the row is missing)."""
        return await self.settings.get()

    async def update_user_settings(self, settings: UserSettings) -> UserSettings:
        """Store the user settings; ``updated_at`` becomes now."""
        return await self.settings.update(settings)


async def adopt_file(path: str | os.PathLike[str], *, backup: bool = True) -> AdoptionReport:
    """Adopt the hld database at ``path`` in place (``agentstore adopt``); returns what was
    done. Refuses, changing nothing, anything that is not an hld database."""
    if not isinstance(path, str | os.PathLike) or not os.fspath(path):
        raise InvalidValueError("adopt needs the path of an hld database file")
    resolved = opening.resolve_target(os.fspath(path) if "://" not in os.fspath(path) else path)
    target = resolved.sqlite
    if target is None or target.path is None:
        raise DatabaseError(f"{path} is not an SQLite file; hld databases are SQLite files")
    if not opening.file_exists(target, create=False):
        raise DatabaseError(f"{target.path} does not exist. Nothing was changed.")
    state = opening.inspect_sqlite_file(target)
    if state.kind != "hld":
        raise DatabaseError(
            f"{target.path} is not an hld database to adopt (found: {state.kind}"
            + (f" at revision {state.revision}" if state.revision else "")
            + "). Nothing was changed."
        )
    store = await Store.open(resolved.url, backup=backup)
    try:
        assert store.adoption is not None
        return store.adoption
    finally:
        await store.close()
