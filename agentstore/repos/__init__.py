"""One repository per aggregate; each builds statements and never commits."""

from agentstore.repos.approvals import ApprovalRepo
from agentstore.repos.conversation import ConversationRepo
from agentstore.repos.mcp_servers import MCPServerRepo
from agentstore.repos.raw_events import RawEventRepo
from agentstore.repos.sessions import SessionRepo
from agentstore.repos.settings import SettingsRepo
from agentstore.repos.snapshots import SnapshotRepo

__all__ = [
    "ApprovalRepo",
    "ConversationRepo",
    "MCPServerRepo",
    "RawEventRepo",
    "SessionRepo",
    "SettingsRepo",
    "SnapshotRepo",
]
