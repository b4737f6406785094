"""hld schema version 22: the baseline every agentstore database starts from.

On SQLite the tables and indexes are created with the exact DDL hld leaves in
``sqlite_master`` (see :mod:`agentstore.hld`), so the file is one hld itself would have made.
On PostgreSQL the same tables are built from natural types (timestamptz, boolean, json).
Both get hld's ``schema_version`` ledger (1, 3-16, 18-22) and the default ``user_settings`` row.

Revision ID: 0001_hld_v22
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from agentstore.hld import HLD_LEDGER, HLD_V22_SQLITE_DDL
from agentstore.types import JSONValue, UTCDateTime
from alembic import op

revision: str = "0001_hld_v22"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "user_settings",
    "file_snapshots",
    "approvals",
    "schema_version",
    "raw_events",
    "mcp_servers",
    "conversation_events",
    "sessions",
)


def _now() -> sa.TextClause:
    return sa.text("CURRENT_TIMESTAMP")


def _create_postgresql() -> None:
    # Go's int and int64 are 64-bit: bigint here (SQLite's INTEGER is 64-bit already).
    text, ts, boolean, integer = sa.Text, UTCDateTime, sa.Boolean, sa.BigInteger
    op.create_table(
        "sessions",
        sa.Column("id", text, primary_key=True),
        sa.Column("run_id", text, nullable=False),
        sa.Column("claude_session_id", text),
        sa.Column("parent_session_id", text),
        sa.Column("query", text, nullable=False),
        sa.Column("summary", text),
        sa.Column("model", text),
        sa.Column("working_dir", text),
        sa.Column("max_turns", integer),
        sa.Column("system_prompt", text),
        sa.Column("append_system_prompt", text),
        sa.Column("custom_instructions", text),
        sa.Column("permission_prompt_tool", text),
        sa.Column("allowed_tools", text),
        sa.Column("disallowed_tools", text),
        sa.Column("status", text, nullable=False, server_default=sa.text("'starting'")),
        sa.Column("created_at", ts(), nullable=False, server_default=_now()),
        sa.Column("last_activity_at", ts(), nullable=False, server_default=_now()),
        sa.Column("completed_at", ts()),
        sa.Column("cost_usd", sa.Float),
        sa.Column("duration_ms", integer),
        sa.Column("num_turns", integer),
        sa.Column("result_content", text),
        sa.Column("error_message", text),
        sa.Column("auto_accept_edits", boolean, server_default=sa.false()),
        sa.Column("dangerously_skip_permissions", boolean, server_default=sa.false()),
        sa.Column("dangerously_skip_permissions_expires_at", ts()),
        sa.Column("archived", boolean, server_default=sa.false()),
        sa.Column("additional_directories", text),
        sa.Column("title", text, server_default=sa.text("''")),
        sa.Column("model_id", text),
        sa.Column("input_tokens", integer),
        sa.Column("output_tokens", integer),
        sa.Column("cache_creation_input_tokens", integer),
        sa.Column("cache_read_input_tokens", integer),
        sa.Column("effective_context_tokens", integer),
        sa.Column("proxy_enabled", boolean, server_default=sa.false()),
        sa.Column("proxy_base_url", text, server_default=sa.text("''")),
        sa.Column("proxy_model_override", text, server_default=sa.text("''")),
        sa.Column("proxy_api_key", text, server_default=sa.text("''")),
        sa.Column("editor_state", text),
        sa.Column("dangerously_skip_permissions_timeout_ms", integer),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.UniqueConstraint("run_id", name="uq_sessions_run_id"),
    )
    for name, columns in (
        ("idx_sessions_claude", ["claude_session_id"]),
        ("idx_sessions_status", ["status"]),
        ("idx_sessions_run_id", ["run_id"]),
        ("idx_sessions_parent", ["parent_session_id"]),
        ("idx_sessions_archived", ["archived"]),
        ("idx_sessions_title", ["title"]),
    ):
        op.create_index(name, "sessions", columns)
    op.create_index("idx_sessions_last_activity", "sessions", [sa.text("last_activity_at DESC")])

    def session_fk(table: str) -> sa.ForeignKeyConstraint:
        return sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name=f"fk_{table}_session_id_sessions"
        )

    op.create_table(
        "conversation_events",
        sa.Column("id", integer, primary_key=True, autoincrement=True),
        sa.Column("session_id", text, nullable=False),
        sa.Column("claude_session_id", text),
        sa.Column("sequence", integer, nullable=False),
        sa.Column("event_type", text, nullable=False),
        sa.Column("created_at", ts(), nullable=False, server_default=_now()),
        sa.Column("role", text),
        sa.Column("content", text),
        sa.Column("tool_id", text),
        sa.Column("tool_name", text),
        sa.Column("tool_input_json", text),
        sa.Column("tool_result_for_id", text),
        sa.Column("tool_result_content", text),
        sa.Column("is_completed", boolean, server_default=sa.false()),
        sa.Column("approval_status", text),
        sa.Column("approval_id", text),
        sa.Column("parent_tool_use_id", text),
        sa.PrimaryKeyConstraint("id", name="pk_conversation_events"),
        session_fk("conversation_events"),
    )
    op.create_index(
        "idx_conversation_claude_session", "conversation_events", ["claude_session_id", "sequence"]
    )
    op.create_index("idx_conversation_session", "conversation_events", ["session_id", "sequence"])
    op.create_index("idx_conversation_approval", "conversation_events", ["approval_id"])
    op.create_index(
        "idx_conversation_pending_approvals",
        "conversation_events",
        ["approval_status"],
        postgresql_where=sa.text("approval_status = 'pending'"),
    )
    op.create_index(
        "idx_conversation_parent_tool",
        "conversation_events",
        ["parent_tool_use_id"],
        postgresql_where=sa.text("parent_tool_use_id IS NOT NULL"),
    )
    op.create_table(
        "mcp_servers",
        sa.Column("id", integer, primary_key=True, autoincrement=True),
        sa.Column("session_id", text, nullable=False),
        sa.Column("name", text, nullable=False),
        sa.Column("command", text, nullable=False),
        sa.Column("args_json", text),
        sa.Column("env_json", text),
        sa.PrimaryKeyConstraint("id", name="pk_mcp_servers"),
        session_fk("mcp_servers"),
    )
    op.create_index("idx_mcp_servers_session", "mcp_servers", ["session_id"])
    op.create_table(
        "raw_events",
        sa.Column("id", integer, primary_key=True, autoincrement=True),
        sa.Column("session_id", text, nullable=False),
        sa.Column("event_json", text, nullable=False),
        sa.Column("created_at", ts(), nullable=False, server_default=_now()),
        sa.PrimaryKeyConstraint("id", name="pk_raw_events"),
        session_fk("raw_events"),
    )
    op.create_index("idx_raw_events_session", "raw_events", ["session_id", "created_at"])
    op.create_table(
        "schema_version",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("applied_at", ts(), nullable=False, server_default=_now()),
        sa.Column("description", text),
        sa.PrimaryKeyConstraint("version", name="pk_schema_version"),
    )
    op.create_table(
        "approvals",
        sa.Column("id", text, primary_key=True),
        sa.Column("run_id", text, nullable=False),
        sa.Column("session_id", text, nullable=False),
        sa.Column("status", text, nullable=False),
        sa.Column("created_at", ts("DATETIME"), nullable=False, server_default=_now()),
        sa.Column("responded_at", ts("DATETIME")),
        sa.Column("tool_name", text, nullable=False),
        sa.Column("tool_input", JSONValue(), nullable=False),
        sa.Column("comment", text),
        sa.Column("tool_use_id", text),
        sa.PrimaryKeyConstraint("id", name="pk_approvals"),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'denied')", name="ck_approvals_status"
        ),
        session_fk("approvals"),
    )
    op.create_index(
        "idx_approvals_pending",
        "approvals",
        ["status"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("idx_approvals_session", "approvals", ["session_id"])
    op.create_index("idx_approvals_run_id", "approvals", ["run_id"])
    op.create_index(
        "idx_approvals_tool_use_id",
        "approvals",
        ["tool_use_id"],
        postgresql_where=sa.text("tool_use_id IS NOT NULL"),
    )
    op.create_table(
        "file_snapshots",
        sa.Column("id", integer, primary_key=True, autoincrement=True),
        sa.Column("tool_id", text, nullable=False),
        sa.Column("session_id", text, nullable=False),
        sa.Column("file_path", text, nullable=False),
        sa.Column("content", text, nullable=False),
        sa.Column("created_at", ts(), nullable=False, server_default=_now()),
        sa.PrimaryKeyConstraint("id", name="pk_file_snapshots"),
        session_fk("file_snapshots"),
    )
    op.create_index("idx_snapshots_session_path", "file_snapshots", ["session_id", "file_path"])
    op.create_index("idx_snapshots_tool", "file_snapshots", ["tool_id"])
    op.create_table(
        "user_settings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("advanced_providers", boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", ts(), nullable=False, server_default=_now()),
        sa.Column("updated_at", ts(), nullable=False, server_default=_now()),
        sa.Column("opt_in_telemetry", boolean, server_default=sa.text("NULL")),
        sa.PrimaryKeyConstraint("id", name="pk_user_settings"),
        sa.CheckConstraint("id = 1", name="ck_user_settings_singleton"),
    )


def upgrade() -> None:
    # The context's dialect, not a connection's: ``alembic upgrade --sql`` has none.
    if op.get_context().dialect.name == "sqlite":
        for statement in HLD_V22_SQLITE_DDL:
            op.execute(statement)
    else:
        _create_postgresql()
    ledger = sa.table(
        "schema_version", sa.column("version", sa.Integer), sa.column("description", sa.Text)
    )
    op.bulk_insert(ledger, [{"version": v, "description": d} for v, d in HLD_LEDGER])
    op.execute("INSERT INTO user_settings (id, advanced_providers) VALUES (1, FALSE)")


def downgrade() -> None:
    for table in TABLES:
        op.drop_table(table)
