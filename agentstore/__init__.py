"""agentstore: async persistence for AI coding-agent daemons (a port of hld/store)."""

from agentstore.errors import (
    AlreadyDecidedError,
    DuplicateError,
    InvalidStatusError,
    InvalidValueError,
    NotFoundError,
    StoreError,
)
from agentstore.models import (
    UNSET,
    Approval,
    ApprovalStatus,
    ConversationEvent,
    EventType,
    FileSnapshot,
    MCPServer,
    MCPServerConfig,
    RawEvent,
    RecentPath,
    Session,
    SessionConfig,
    SessionStatus,
    SessionUpdate,
    UserSettings,
    mcp_servers_from_config,
)
from agentstore.repos.search import SearchHit
from agentstore.store import Snapshot, Store, Transaction, adopt_file
from agentstore.transfer import copy_database

__all__ = [
    "UNSET",
    "AlreadyDecidedError",
    "Approval",
    "ApprovalStatus",
    "ConversationEvent",
    "DuplicateError",
    "EventType",
    "FileSnapshot",
    "InvalidStatusError",
    "InvalidValueError",
    "MCPServer",
    "MCPServerConfig",
    "NotFoundError",
    "RawEvent",
    "RecentPath",
    "SearchHit",
    "Session",
    "SessionConfig",
    "SessionStatus",
    "SessionUpdate",
    "Snapshot",
    "Store",
    "StoreError",
    "Transaction",
    "UserSettings",
    "adopt_file",
    "copy_database",
    "mcp_servers_from_config",
]

__version__ = "0.1.0"
