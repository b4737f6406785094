"""Declarative models, one per hld table, with hld's table names, column names and types.

Every model is a dataclass-style mapped class: ``Session(id="s1", run_id="r1", query="q")``
builds a complete value with every unset field at its default (``''`` for hld's plain
strings, ``None`` for nullable ones, ``0``/``False``, now for timestamps). Objects the store
returns are detached plain values: reading never touches the database and changing one
changes nothing stored.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Self, TypeAlias, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    MappedAsDataclass,
    mapped_column,
)

from agentstore.types import EmptyText, EnumText, Flag, Int64, JSONValue, UTCDateTime, utcnow

__all__ = [
    "UNSET",
    "Approval",
    "ApprovalStatus",
    "Base",
    "ConversationEvent",
    "EventType",
    "FileSnapshot",
    "MCPServer",
    "MCPServerConfig",
    "RawEvent",
    "RecentPath",
    "SchemaVersion",
    "Session",
    "SessionConfig",
    "SessionStatus",
    "SessionUpdate",
    "UserSettings",
    "mcp_servers_from_config",
]


class SessionStatus(enum.StrEnum):
    """The lifecycle of a session (hld's ``SessionStatus*`` constants)."""

    DRAFT = "draft"
    STARTING = "starting"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTING = "interrupting"
    INTERRUPTED = "interrupted"
    WAITING_INPUT = "waiting_input"
    DISCARDED = "discarded"


class EventType(enum.StrEnum):
    """The kind of a conversation event (hld's ``EventType*`` constants)."""

    MESSAGE = "message"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    SYSTEM = "system"
    THINKING = "thinking"


class ApprovalStatus(enum.StrEnum):
    """An approval's state; ``resolved`` is only ever used on conversation events."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    RESOLVED = "resolved"


NAMING_CONVENTION: Final = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(MappedAsDataclass, DeclarativeBase, kw_only=True, repr=False):
    """The declarative base: named constraints and hld's column types."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

    if not TYPE_CHECKING:  # at run time only: mypy keeps catching misspelt attributes

        def __getattr__(self, name: str) -> Any:
            # The store builds the values it returns without __init__ (that is most of what
            # reading 10,000 events costs); SQLAlchemy's per-instance bookkeeping is then
            # attached the first time anything asks for it, e.g. on setting an attribute.
            if name == "_sa_instance_state":
                sa.inspect(type(self)).class_manager.setup_instance(self)
                return self.__dict__[name]
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def to_dict(self, *, include_secrets: bool = False) -> dict[str, Any]:
        """Every column as a JSON-ready value: times as ISO 8601 UTC text, statuses as their
        text, JSON columns as their decoded value. Secrets (a session's ``proxy_api_key``,
        an MCP server's ``env`` values) are ``""`` unless ``include_secrets``."""
        out: dict[str, Any] = {}
        for column in type(self).__table__.columns:
            value = getattr(self, column.key)
            if isinstance(value, datetime):
                value = value.astimezone(UTC).isoformat()
            elif isinstance(value, enum.Enum):
                value = value.value
            out[column.key] = value
        if not include_secrets:
            self._redact(out)
        return out

    def _redact(self, values: dict[str, Any]) -> None:
        """Blank this model's secrets in ``values`` (a dict from :meth:`to_dict`)."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """The inverse of :meth:`to_dict`: a model from its column values.

        Times may be ISO 8601 text (with an offset) or aware datetimes; unknown keys and
        naive or malformed times raise :class:`~agentstore.errors.InvalidValueError`.
        Values are checked fully when the model is written.
        """
        from agentstore.errors import InvalidValueError

        if not isinstance(data, Mapping):
            raise InvalidValueError(f"{cls.__name__}.from_dict needs a mapping")
        columns = cls.__table__.columns
        unknown = sorted(str(key) for key in data if key not in columns)
        if unknown:
            raise InvalidValueError(f"{cls.__name__} has no field {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(columns[key].type, UTCDateTime) and isinstance(value, str | datetime):
                if isinstance(value, str):
                    try:
                        value = datetime.fromisoformat(value)
                    except ValueError:
                        raise InvalidValueError(
                            f"{cls.__name__}.{key}: not an ISO 8601 time"
                        ) from None
                if value.utcoffset() is None:
                    raise InvalidValueError(f"{cls.__name__}.{key}: a time needs its UTC offset")
            values[key] = value
        try:
            return cls(**values)
        except TypeError as exc:  # a required field missing
            raise InvalidValueError(f"{cls.__name__}.from_dict: {exc}") from None

    def __repr__(self) -> str:
        # Secrets (proxy_api_key) and large texts are left out of reprs and logs.
        fields = ", ".join(
            f"{f.name}={getattr(self, f.name, None)!r}"
            for f in dataclasses.fields(self)
            if f.repr and f.name not in _REPR_HIDDEN
        )
        return f"{type(self).__name__}({fields})"


# Secrets (proxy_api_key; MCP env and headers, which carry tokens) and large texts.
_REPR_HIDDEN: Final = frozenset(
    {
        "proxy_api_key",
        "env_json",
        "args_json",
        "content",
        "editor_state",
        "event_json",
        "tool_input",
        "tool_input_json",
    }
)


def _text() -> Any:
    """hld's plain string column: nullable in the schema, ``''`` in Python, never None."""
    return mapped_column(EmptyText(), nullable=True, default="")


def _false() -> Any:
    return mapped_column(Flag(), nullable=True, default=False, server_default=sa.false())


def _now(*, local: bool = False) -> Any:
    return mapped_column(
        UTCDateTime(local=local),
        nullable=False,
        default_factory=utcnow,
        server_default=sa.text("CURRENT_TIMESTAMP"),
    )


class Session(Base):
    """One agent run: launch configuration, status, results, token usage and settings."""

    __tablename__ = "sessions"
    __table_args__ = (
        sa.Index("idx_sessions_claude", "claude_session_id"),
        sa.Index("idx_sessions_status", "status"),
        sa.Index("idx_sessions_run_id", "run_id"),
        sa.Index("idx_sessions_parent", "parent_session_id"),
        sa.Index("idx_sessions_archived", "archived"),
        sa.Index("idx_sessions_title", "title"),
        sa.Index("idx_sessions_last_activity", sa.text("last_activity_at DESC")),
    )

    id: Mapped[str] = mapped_column(sa.Text(), primary_key=True)
    run_id: Mapped[str] = mapped_column(sa.Text(), unique=True)
    query: Mapped[str] = mapped_column(sa.Text(), default="")
    claude_session_id: Mapped[str] = _text()
    parent_session_id: Mapped[str] = _text()
    summary: Mapped[str] = _text()
    title: Mapped[str] = mapped_column(
        EmptyText(), nullable=True, default="", server_default=sa.text("''")
    )
    model: Mapped[str] = _text()
    model_id: Mapped[str] = _text()
    working_dir: Mapped[str] = _text()
    max_turns: Mapped[int] = mapped_column(Int64, nullable=True, default=0)
    system_prompt: Mapped[str] = _text()
    append_system_prompt: Mapped[str] = _text()
    custom_instructions: Mapped[str] = _text()
    permission_prompt_tool: Mapped[str] = _text()
    allowed_tools: Mapped[str] = _text()
    disallowed_tools: Mapped[str] = _text()
    additional_directories: Mapped[str] = _text()
    status: Mapped[str] = mapped_column(
        EnumText(SessionStatus),
        default=SessionStatus.STARTING,
        server_default=sa.text("'starting'"),
    )
    # hld writes a session's times from Go in local time (see UTCDateTime's ``local``).
    created_at: Mapped[datetime] = _now(local=True)
    last_activity_at: Mapped[datetime] = _now(local=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(local=True), default=None)
    cost_usd: Mapped[float | None] = mapped_column(
        sa.Float().with_variant(sa.REAL(), "sqlite"), default=None
    )
    input_tokens: Mapped[int | None] = mapped_column(Int64, default=None)
    output_tokens: Mapped[int | None] = mapped_column(Int64, default=None)
    cache_creation_input_tokens: Mapped[int | None] = mapped_column(Int64, default=None)
    cache_read_input_tokens: Mapped[int | None] = mapped_column(Int64, default=None)
    effective_context_tokens: Mapped[int | None] = mapped_column(Int64, default=None)
    duration_ms: Mapped[int | None] = mapped_column(Int64, default=None)
    num_turns: Mapped[int | None] = mapped_column(Int64, default=None)
    result_content: Mapped[str] = _text()
    error_message: Mapped[str] = _text()
    auto_accept_edits: Mapped[bool] = _false()
    dangerously_skip_permissions: Mapped[bool] = _false()
    dangerously_skip_permissions_expires_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(local=True), default=None
    )
    dangerously_skip_permissions_timeout_ms: Mapped[int | None] = mapped_column(Int64, default=None)
    archived: Mapped[bool] = _false()
    proxy_enabled: Mapped[bool] = _false()
    proxy_base_url: Mapped[str] = mapped_column(
        EmptyText(), nullable=True, default="", server_default=sa.text("''")
    )
    proxy_model_override: Mapped[str] = mapped_column(
        EmptyText(), nullable=True, default="", server_default=sa.text("''")
    )
    proxy_api_key: Mapped[str] = mapped_column(
        EmptyText(), nullable=True, default="", server_default=sa.text("''"), repr=False
    )
    editor_state: Mapped[str | None] = mapped_column(sa.Text(), default=None)

    def _redact(self, values: dict[str, Any]) -> None:
        if values.get("proxy_api_key"):
            values["proxy_api_key"] = ""

    @classmethod
    def from_config(cls, id: str, run_id: str, config: SessionConfig) -> Session:
        """hld's ``NewSessionFromConfig``: a ``starting`` session built from a launch config.

        Tool lists and additional directories are stored as JSON text exactly as Go's
        ``json.Marshal`` writes them (``null`` for an unset list, ``[]`` for an empty one).
        Like the seed, it leaves the title, the proxy settings and the flags at their zero
        values; the MCP servers are stored separately (:func:`mcp_servers_from_config`).
        """
        return cls(
            id=id,
            run_id=run_id,
            query=config.query,
            model=config.model,
            working_dir=config.working_dir,
            max_turns=config.max_turns,
            system_prompt=config.system_prompt,
            append_system_prompt=config.append_system_prompt,
            custom_instructions=config.custom_instructions,
            permission_prompt_tool=config.permission_prompt_tool,
            allowed_tools=_go_json(config.allowed_tools),
            disallowed_tools=_go_json(config.disallowed_tools),
            additional_directories=_go_json(config.additional_directories),
            status=SessionStatus.STARTING,
        )


class ConversationEvent(Base):
    """One message, tool call, tool result, thinking block or system event of a session."""

    __tablename__ = "conversation_events"
    __table_args__ = (
        sa.Index("idx_conversation_claude_session", "claude_session_id", "sequence"),
        sa.Index("idx_conversation_session", "session_id", "sequence"),
        sa.Index("idx_conversation_approval", "approval_id"),
        sa.Index(
            "idx_conversation_pending_approvals",
            "approval_status",
            sqlite_where=sa.text("approval_status = 'pending'"),
            postgresql_where=sa.text("approval_status = 'pending'"),
        ),
        sa.Index(
            "idx_conversation_parent_tool",
            "parent_tool_use_id",
            sqlite_where=sa.text("parent_tool_use_id IS NOT NULL"),
            postgresql_where=sa.text("parent_tool_use_id IS NOT NULL"),
        ),
        # agentstore's own: sequences are unique within a Claude session (hld allowed dups).
        sa.Index(
            "uq_conversation_claude_session_sequence",
            "claude_session_id",
            "sequence",
            unique=True,
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int | None] = mapped_column(
        Int64, primary_key=True, autoincrement=True, nullable=False, default=None
    )
    session_id: Mapped[str] = mapped_column(sa.Text(), sa.ForeignKey("sessions.id"), default="")
    claude_session_id: Mapped[str] = _text()
    sequence: Mapped[int] = mapped_column(Int64, default=0)
    event_type: Mapped[str] = mapped_column(EnumText(EventType), default=EventType.MESSAGE)
    created_at: Mapped[datetime] = _now()
    role: Mapped[str] = _text()
    content: Mapped[str] = _text()
    tool_id: Mapped[str] = _text()
    tool_name: Mapped[str] = _text()
    tool_input_json: Mapped[str] = _text()
    tool_result_for_id: Mapped[str] = _text()
    tool_result_content: Mapped[str] = _text()
    is_completed: Mapped[bool] = _false()
    approval_status: Mapped[str] = mapped_column(
        EnumText(ApprovalStatus, empty=True), nullable=True, default=""
    )
    approval_id: Mapped[str] = _text()
    parent_tool_use_id: Mapped[str] = _text()


class Approval(Base):
    """One human decision on a tool call: pending, then approved or denied exactly once."""

    __tablename__ = "approvals"
    __table_args__ = (
        sa.CheckConstraint("status IN ('pending', 'approved', 'denied')", name="status"),
        sa.Index(
            "idx_approvals_pending",
            "status",
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        ),
        sa.Index("idx_approvals_session", "session_id"),
        sa.Index("idx_approvals_run_id", "run_id"),
        sa.Index(
            "idx_approvals_tool_use_id",
            "tool_use_id",
            sqlite_where=sa.text("tool_use_id IS NOT NULL"),
            postgresql_where=sa.text("tool_use_id IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(sa.Text(), primary_key=True)
    run_id: Mapped[str] = mapped_column(sa.Text(), default="")
    session_id: Mapped[str] = mapped_column(sa.Text(), sa.ForeignKey("sessions.id"), default="")
    status: Mapped[str] = mapped_column(EnumText(ApprovalStatus), default=ApprovalStatus.PENDING)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime("DATETIME", local=True),
        default_factory=utcnow,
        server_default=sa.text("CURRENT_TIMESTAMP"),
    )
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime("DATETIME"), default=None)
    tool_name: Mapped[str] = mapped_column(sa.Text(), default="")
    tool_input: Mapped[Any] = mapped_column(JSONValue(), default=None)
    comment: Mapped[str] = _text()
    tool_use_id: Mapped[str | None] = mapped_column(sa.Text(), default=None)


class MCPServer(Base):
    """One MCP server configured for a session (stdio, or http with ``command='http'``)."""

    __tablename__ = "mcp_servers"
    __table_args__ = (
        sa.Index("idx_mcp_servers_session", "session_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int | None] = mapped_column(
        Int64, primary_key=True, autoincrement=True, nullable=False, default=None
    )
    session_id: Mapped[str] = mapped_column(sa.Text(), sa.ForeignKey("sessions.id"), default="")
    name: Mapped[str] = mapped_column(sa.Text(), default="")
    command: Mapped[str] = mapped_column(sa.Text(), default="")
    args_json: Mapped[str] = _text()
    env_json: Mapped[str] = _text()

    def _redact(self, values: dict[str, Any]) -> None:
        # env (stdio) and headers (http) carry tokens: keep the names, blank the values.
        text = values.get("env_json") or ""
        try:
            env = json.loads(text) if text else None
        except ValueError:
            env = None
        if isinstance(env, dict):
            values["env_json"] = _go_json({name: "" for name in env})
        elif text not in ("", "null"):
            values["env_json"] = ""


class RawEvent(Base):
    """One raw JSON event from the agent, kept for debugging; append-only."""

    __tablename__ = "raw_events"
    __table_args__ = (
        sa.Index("idx_raw_events_session", "session_id", "created_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int | None] = mapped_column(
        Int64, primary_key=True, autoincrement=True, nullable=False, default=None
    )
    session_id: Mapped[str] = mapped_column(sa.Text(), sa.ForeignKey("sessions.id"), default="")
    event_json: Mapped[str] = mapped_column(sa.Text(), default="")
    created_at: Mapped[datetime] = _now()


class FileSnapshot(Base):
    """A file's content as the agent read it (may be large)."""

    __tablename__ = "file_snapshots"
    __table_args__ = (
        sa.Index("idx_snapshots_session_path", "session_id", "file_path"),
        sa.Index("idx_snapshots_tool", "tool_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int | None] = mapped_column(
        Int64, primary_key=True, autoincrement=True, nullable=False, default=None
    )
    tool_id: Mapped[str] = mapped_column(sa.Text(), default="")
    session_id: Mapped[str] = mapped_column(sa.Text(), sa.ForeignKey("sessions.id"), default="")
    file_path: Mapped[str] = mapped_column(sa.Text(), default="")
    content: Mapped[str] = mapped_column(sa.Text(), default="", repr=False)
    created_at: Mapped[datetime] = _now()


class UserSettings(Base):
    """The single settings row (``id = 1``), created by the first migration."""

    __tablename__ = "user_settings"
    __table_args__ = (sa.CheckConstraint("id = 1", name="singleton"),)

    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=False, default=1)
    advanced_providers: Mapped[bool] = mapped_column(
        Flag(), default=False, server_default=sa.false()
    )
    opt_in_telemetry: Mapped[bool | None] = mapped_column(
        sa.Boolean(), default=None, server_default=sa.text("NULL")
    )
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class SchemaVersion(Base):
    """hld's own migration ledger, kept so that hld can still open the file."""

    __tablename__ = "schema_version"

    version: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=False)
    applied_at: Mapped[datetime] = _now()
    description: Mapped[str | None] = mapped_column(sa.Text(), default=None)


# --- values that are not rows -------------------------------------------------------------


class _Unset(enum.Enum):
    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset.UNSET
"""Marks a :class:`SessionUpdate` field that is not to be touched."""

_T = TypeVar("_T")
Maybe: TypeAlias = _T | _Unset


@dataclass(kw_only=True, slots=True)
class SessionUpdate:
    """The fields ``update_session`` may change; a field left ``UNSET`` is not touched.

    A nullable field set to ``None`` is set to NULL (hld's ``**time.Time`` case).
    """

    claude_session_id: Maybe[str] = UNSET
    query: Maybe[str] = UNSET
    summary: Maybe[str] = UNSET
    title: Maybe[str] = UNSET
    status: Maybe[str] = UNSET
    last_activity_at: Maybe[datetime] = UNSET
    completed_at: Maybe[datetime | None] = UNSET
    cost_usd: Maybe[float | None] = UNSET
    input_tokens: Maybe[int | None] = UNSET
    output_tokens: Maybe[int | None] = UNSET
    cache_creation_input_tokens: Maybe[int | None] = UNSET
    cache_read_input_tokens: Maybe[int | None] = UNSET
    effective_context_tokens: Maybe[int | None] = UNSET
    duration_ms: Maybe[int | None] = UNSET
    num_turns: Maybe[int | None] = UNSET
    result_content: Maybe[str] = UNSET
    error_message: Maybe[str] = UNSET
    model: Maybe[str] = UNSET
    model_id: Maybe[str] = UNSET
    auto_accept_edits: Maybe[bool] = UNSET
    dangerously_skip_permissions: Maybe[bool] = UNSET
    dangerously_skip_permissions_expires_at: Maybe[datetime | None] = UNSET
    dangerously_skip_permissions_timeout_ms: Maybe[int | None] = UNSET
    archived: Maybe[bool] = UNSET
    additional_directories: Maybe[str] = UNSET
    working_dir: Maybe[str] = UNSET
    editor_state: Maybe[str | None] = UNSET
    proxy_enabled: Maybe[bool] = UNSET
    proxy_base_url: Maybe[str] = UNSET
    proxy_model_override: Maybe[str] = UNSET
    proxy_api_key: Maybe[str] = dataclasses.field(default=UNSET, repr=False)

    def changes(self) -> dict[str, Any]:
        """The fields that are set, by column name."""
        return {
            f.name: value
            for f in dataclasses.fields(self)
            if (value := getattr(self, f.name)) is not UNSET
        }


@dataclass(frozen=True, slots=True)
class RecentPath:
    """A working directory with when it was last used and by how many sessions."""

    path: str
    last_used: datetime
    usage_count: int


@dataclass(kw_only=True, slots=True)
class MCPServerConfig:
    """One MCP server of a launch config: stdio (``command``/``args``/``env``) or http."""

    command: str = ""
    # Arguments, environment, URL and headers may carry tokens (--token=…, ?token=…):
    # none of them appears in a repr.
    args: list[str] | None = dataclasses.field(default=None, repr=False)
    env: dict[str, str] | None = dataclasses.field(default=None, repr=False)
    type: str = ""
    url: str = dataclasses.field(default="", repr=False)
    headers: dict[str, str] | None = dataclasses.field(default=None, repr=False)


@dataclass(kw_only=True, slots=True)
class SessionConfig:
    """The launch settings ``Session.from_config`` reads (hld's ``claudecode.SessionConfig``)."""

    query: str = ""
    model: str = ""
    working_dir: str = ""
    max_turns: int = 0
    system_prompt: str = ""
    append_system_prompt: str = ""
    custom_instructions: str = ""
    permission_prompt_tool: str = ""
    allowed_tools: list[str] | None = None
    disallowed_tools: list[str] | None = None
    additional_directories: list[str] | None = None
    mcp_servers: dict[str, MCPServerConfig] | None = None


def _go_json(value: Any) -> str:
    """Go's ``json.Marshal``: compact, ``null`` for nil, ``<``/``>``/``&`` and the line
    separators U+2028/U+2029 escaped, other non-ASCII text as is, map keys sorted."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    for char, escape in _GO_ESCAPES:
        text = text.replace(char, escape)
    return text


_GO_ESCAPES: Final = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def mcp_servers_from_config(
    session_id: str, config: SessionConfig | Mapping[str, MCPServerConfig]
) -> list[MCPServer]:
    """hld's ``MCPServersFromConfig``: one row per server, in byte-wise name order.

    ``config`` is a launch config or its ``mcp_servers`` mapping. A stdio server stores its
    command, ``args`` and ``env`` as Go-encoded JSON (``null`` when unset). An http server
    (``type == "http"`` exactly; any other type is stored like stdio) is stored with
    ``command='http'``, ``args_json='["<url>"]'`` (the URL as is, unescaped, as hld formats
    it) and its headers as ``env_json``.
    """
    configured = config.mcp_servers if isinstance(config, SessionConfig) else config
    configured = configured or {}
    servers: list[MCPServer] = []
    for name in sorted(configured, key=lambda n: n.encode()):
        server = configured[name]
        if server.type == "http":
            servers.append(
                MCPServer(
                    session_id=session_id,
                    name=name,
                    command="http",
                    args_json=f'["{server.url}"]',
                    env_json=_go_json(server.headers),
                )
            )
        else:
            servers.append(
                MCPServer(
                    session_id=session_id,
                    name=name,
                    command=server.command,
                    args_json=_go_json(server.args),
                    env_json=_go_json(server.env),
                )
            )
    return servers


# --- construction ---------------------------------------------------------------------------

_MISSING: Final = object()


def _install_fast_init(cls: type[Base]) -> None:
    """Replace the dataclass ``__init__`` with one that fills the instance dict directly.

    SQLAlchemy's instrumented ``__init__`` sets each attribute through its descriptors and
    creates the instance's ORM state up front: ~11 µs for an event, more than storing it.
    The values built here are plain and detached, exactly as before; SQLAlchemy's
    per-instance state is attached the first time anything asks for it
    (:meth:`Base.__getattr__`), e.g. when an attribute is set afterwards. The signature is
    the dataclass one (keyword-only, the same defaults), so ``dataclasses.replace`` works.
    """
    table = cls.__table__
    params: list[str] = []
    prologue: list[str] = []
    namespace: dict[str, Any] = {"_MISSING": _MISSING}
    for index, field in enumerate(dataclasses.fields(cls)):
        name = field.name
        column = table.columns[name]
        if field.default_factory is not dataclasses.MISSING:
            namespace[f"_factory{index}"] = field.default_factory
            params.append(f"{name}=_MISSING")
            prologue.append(f"    if {name} is _MISSING: {name} = _factory{index}()")
        elif field.default is dataclasses.MISSING:
            params.append(name)  # required, as in the dataclass
        else:
            namespace[f"_default{index}"] = (
                column.default.arg if column.default is not None else None
            )
            params.append(f"{name}=_default{index}")
        if isinstance(column.type, EnumText):
            # A status or kind given as text becomes its StrEnum member, as stored ones read.
            namespace[f"_members{index}"] = column.type.members
            prologue.append(
                f"    if {name}.__class__ is str: {name} = _members{index}.get({name}, {name})"
            )
    fields = ", ".join(f"{f.name!r}: {f.name}" for f in dataclasses.fields(cls))
    source = (
        f"def __init__(self, *, {', '.join(params)}):\n"
        + "".join(line + "\n" for line in prologue)
        + f"    self.__dict__.update({{{fields}}})\n"
    )
    exec(compile(source, f"<agentstore __init__ of {cls.__name__}>", "exec"), namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__name__}.__init__"
    init.__doc__ = cls.__doc__
    cls.__init__ = init  # type: ignore[method-assign]


# The store builds the values it returns without __init__ (agentstore.db.statements), which
# skips SQLAlchemy's lazy mapper configuration: configure once, here, at import.
sa.orm.configure_mappers()
for _cls in (Session, ConversationEvent, Approval, MCPServer, RawEvent, FileSnapshot, UserSettings):
    _install_fast_init(_cls)
