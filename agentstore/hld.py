"""hld's own schema and migration ledger, as hld/store writes them at schema version 22.

The SQLite DDL is the exact text hld's ``initSchema`` and migrations leave in
``sqlite_master`` (tabs, comments and the columns that ALTER TABLE appended included), so a
database agentstore creates is, table for table, the one hld creates: hld opens it, finds its
ledger at version 22, and uses it as its own.
"""

from __future__ import annotations

from typing import Final

HLD_SCHEMA_VERSION: Final = 22
"""The newest hld schema version agentstore's baseline revision corresponds to."""

# One statement per table or index, in the order hld creates them.
HLD_V22_SQLITE_DDL: Final[tuple[str, ...]] = (
    (
        "CREATE TABLE sessions (\n"
        "\t\tid TEXT PRIMARY KEY,\n"
        "\t\trun_id TEXT NOT NULL UNIQUE,\n"
        "\t\tclaude_session_id TEXT,\n"
        "\t\tparent_session_id TEXT,\n"
        "\n"
        "\t\t-- Launch configuration\n"
        "\t\tquery TEXT NOT NULL,\n"
        "\t\tsummary TEXT,\n"
        "\t\tmodel TEXT,\n"
        "\t\tworking_dir TEXT,\n"
        "\t\tmax_turns INTEGER,\n"
        "\t\tsystem_prompt TEXT,\n"
        "\t\tappend_system_prompt TEXT,\n"
        "\t\tcustom_instructions TEXT,\n"
        "\t\tpermission_prompt_tool TEXT,\n"
        "\t\tallowed_tools TEXT,\n"
        "\t\tdisallowed_tools TEXT,\n"
        "\n"
        "\t\t-- Runtime status\n"
        "\t\tstatus TEXT NOT NULL DEFAULT 'starting',\n"
        "\t\tcreated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n"
        "\t\tlast_activity_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n"
        "\t\tcompleted_at TIMESTAMP,\n"
        "\n"
        "\t\t-- Results\n"
        "\t\tcost_usd REAL,\n"
        "\t\tduration_ms INTEGER,\n"
        "\t\tnum_turns INTEGER,\n"
        "\t\tresult_content TEXT,\n"
        "\t\terror_message TEXT,\n"
        "\n"
        "\t\t-- Session settings\n"
        "\t\tauto_accept_edits BOOLEAN DEFAULT 0,\n"
        "\t\tdangerously_skip_permissions BOOLEAN DEFAULT 0,\n"
        "\t\tdangerously_skip_permissions_expires_at TIMESTAMP,\n"
        "\n"
        "\t\t-- Archival\n"
        "\t\tarchived BOOLEAN DEFAULT FALSE,\n"
        "\n"
        "\t\t-- Additional directories for --add-dir support\n"
        "\t\tadditional_directories TEXT\n"
        "\t, title TEXT DEFAULT '', model_id TEXT, input_tokens INTEGER, output_tokens INTEGER, cache_creation_input_tokens INTEGER, cache_read_input_tokens INTEGER, effective_context_tokens INTEGER, proxy_enabled BOOLEAN DEFAULT 0, proxy_base_url TEXT DEFAULT '', proxy_model_override TEXT DEFAULT '', proxy_api_key TEXT DEFAULT '', editor_state TEXT, dangerously_skip_permissions_timeout_ms INTEGER)"
    ),
    "CREATE INDEX idx_sessions_claude ON sessions(claude_session_id)",
    "CREATE INDEX idx_sessions_status ON sessions(status)",
    "CREATE INDEX idx_sessions_run_id ON sessions(run_id)",
    "CREATE INDEX idx_sessions_parent ON sessions(parent_session_id)",
    (
        "CREATE TABLE conversation_events (\n"
        "\t\tid INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "\t\tsession_id TEXT NOT NULL,\n"
        "\t\tclaude_session_id TEXT,\n"
        "\t\tsequence INTEGER NOT NULL,\n"
        "\t\tevent_type TEXT NOT NULL,\n"
        "\n"
        "\t\t-- Common fields\n"
        "\t\tcreated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n"
        "\n"
        "\t\t-- Message fields\n"
        "\t\trole TEXT,\n"
        "\t\tcontent TEXT,\n"
        "\n"
        "\t\t-- Tool call fields\n"
        "\t\ttool_id TEXT,\n"
        "\t\ttool_name TEXT,\n"
        "\t\ttool_input_json TEXT,\n"
        "\n"
        "\t\t-- Tool result fields\n"
        "\t\ttool_result_for_id TEXT,\n"
        "\t\ttool_result_content TEXT,\n"
        "\n"
        "\t\t-- Tool call completion and approval tracking\n"
        "\t\tis_completed BOOLEAN DEFAULT FALSE,  -- TRUE when tool result received\n"
        "\t\tapproval_status TEXT,        -- NULL, 'pending', 'approved', 'denied'\n"
        "\t\tapproval_id TEXT, parent_tool_use_id TEXT,           -- HumanLayer approval ID when correlated\n"
        "\n"
        "\t\tFOREIGN KEY (session_id) REFERENCES sessions(id)\n"
        "\t)"
    ),
    "CREATE INDEX idx_conversation_claude_session ON conversation_events(claude_session_id, sequence)",
    "CREATE INDEX idx_conversation_session ON conversation_events(session_id, sequence)",
    "CREATE INDEX idx_conversation_approval ON conversation_events(approval_id)",
    (
        "CREATE INDEX idx_conversation_pending_approvals\n"
        "\t\tON conversation_events(approval_status)\n"
        "\t\tWHERE approval_status = 'pending'"
    ),
    (
        "CREATE TABLE mcp_servers (\n"
        "\t\tid INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "\t\tsession_id TEXT NOT NULL,\n"
        "\t\tname TEXT NOT NULL,\n"
        "\t\tcommand TEXT NOT NULL,\n"
        "\t\targs_json TEXT,\n"
        "\t\tenv_json TEXT,\n"
        "\n"
        "\t\tFOREIGN KEY (session_id) REFERENCES sessions(id)\n"
        "\t)"
    ),
    "CREATE INDEX idx_mcp_servers_session ON mcp_servers(session_id)",
    (
        "CREATE TABLE raw_events (\n"
        "\t\tid INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "\t\tsession_id TEXT NOT NULL,\n"
        "\t\tevent_json TEXT NOT NULL,\n"
        "\t\tcreated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n"
        "\n"
        "\t\tFOREIGN KEY (session_id) REFERENCES sessions(id)\n"
        "\t)"
    ),
    "CREATE INDEX idx_raw_events_session ON raw_events(session_id, created_at)",
    (
        "CREATE TABLE schema_version (\n"
        "\t\tversion INTEGER PRIMARY KEY,\n"
        "\t\tapplied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n"
        "\t\tdescription TEXT\n"
        "\t)"
    ),
    (
        "CREATE TABLE approvals (\n"
        "\t\tid TEXT PRIMARY KEY,\n"
        "\t\trun_id TEXT NOT NULL,\n"
        "\t\tsession_id TEXT NOT NULL,\n"
        "\t\tstatus TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied')),\n"
        "\t\tcreated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,\n"
        "\t\tresponded_at DATETIME,\n"
        "\n"
        "\t\t-- Tool approval fields\n"
        "\t\ttool_name TEXT NOT NULL,\n"
        "\t\ttool_input TEXT NOT NULL, -- JSON\n"
        "\n"
        "\t\t-- Response fields\n"
        "\t\tcomment TEXT, tool_use_id TEXT, -- For denial reasons or approval notes\n"
        "\n"
        "\t\tFOREIGN KEY (session_id) REFERENCES sessions(id)\n"
        "\t)"
    ),
    "CREATE INDEX idx_approvals_pending ON approvals(status) WHERE status = 'pending'",
    "CREATE INDEX idx_approvals_session ON approvals(session_id)",
    "CREATE INDEX idx_approvals_run_id ON approvals(run_id)",
    (
        "CREATE INDEX idx_conversation_parent_tool\n"
        "\t\t\tON conversation_events(parent_tool_use_id)\n"
        "\t\t\tWHERE parent_tool_use_id IS NOT NULL\n"
        "\t\t"
    ),
    (
        "CREATE TABLE file_snapshots (\n"
        "\t\t\t\tid INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "\t\t\t\ttool_id TEXT NOT NULL,\n"
        "\t\t\t\tsession_id TEXT NOT NULL,\n"
        "\t\t\t\tfile_path TEXT NOT NULL, -- Relative path from tool call\n"
        "\t\t\t\tcontent TEXT NOT NULL,\n"
        "\t\t\t\tcreated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n"
        "\n"
        "\t\t\t\tFOREIGN KEY (session_id) REFERENCES sessions(id)\n"
        "\t\t\t)"
    ),
    ("CREATE INDEX idx_snapshots_session_path\n\t\t\t\tON file_snapshots(session_id, file_path)"),
    ("CREATE INDEX idx_snapshots_tool\n\t\t\t\tON file_snapshots(tool_id)"),
    ("CREATE INDEX idx_sessions_archived\n\t\t\tON sessions(archived)\n\t\t"),
    (
        "CREATE INDEX idx_approvals_tool_use_id\n"
        "\t\t\tON approvals(tool_use_id)\n"
        "\t\t\tWHERE tool_use_id IS NOT NULL\n"
        "\t\t"
    ),
    (
        "CREATE TABLE user_settings (\n"
        "\t\t\t\tid INTEGER PRIMARY KEY CHECK (id = 1), -- Singleton row\n"
        "\t\t\t\tadvanced_providers BOOLEAN NOT NULL DEFAULT FALSE,\n"
        "\t\t\t\tcreated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n"
        "\t\t\t\tupdated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP\n"
        "\t\t\t, opt_in_telemetry BOOLEAN DEFAULT NULL)"
    ),
    ("CREATE INDEX idx_sessions_title\n\t\t\tON sessions(title)\n\t\t"),
    ("CREATE INDEX idx_sessions_last_activity\n\t\t\tON sessions(last_activity_at DESC)\n\t\t"),
)

# hld's schema_version ledger at version 22: there never was a version 2 or 17 in hld's code.
HLD_LEDGER: Final[tuple[tuple[int, str], ...]] = (
    (1, "Initial schema with conversation events"),
    (3, "Add permission_prompt_tool, append_system_prompt, allowed_tools, disallowed_tools fields"),
    (4, "Add approvals table for local approvals"),
    (5, "Add index on parent_session_id for efficient tree queries"),
    (6, "Add parent_tool_use_id for sub-task tracking"),
    (7, "Add file_snapshots table for Read operation tracking"),
    (8, "Add auto_accept_edits for session-level edit auto-approval"),
    (9, "Add archived field to sessions table for hiding old sessions"),
    (10, "Add title column to sessions table"),
    (11, "Add dangerously skip permissions with timeout support"),
    (12, "Add model_id column for full model identifier"),
    (13, "Add detailed token tracking fields (input, output, cache, effective context)"),
    (14, "Add tool_use_id column to approvals table for direct correlation"),
    (15, "Add proxy configuration columns for model customization"),
    (16, "Add user settings table for advanced providers preference"),
    (18, "Healing migration to fix schema inconsistencies from migration reordering"),
    (19, "Add opt_in_telemetry column for error reporting consent"),
    (20, "Add editor_state column for draft session editor persistence"),
    (
        21,
        "Add dangerously_skip_permissions_timeout_ms column to store bypass permissions timeout duration",
    ),
    (22, "Add indexes for session search performance"),
)
