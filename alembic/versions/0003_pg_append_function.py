"""PostgreSQL: appending one event is one round trip.

``agentstore_append_event(lock, …)`` takes the Claude session's advisory lock, then inserts
the event with the next sequence. Each statement of a PL/pgSQL function runs with a fresh
snapshot, so the ``MAX(sequence)`` after the lock sees every append committed before it:
called alone (autocommit) it is a whole append in one round trip, where ``BEGIN`` + lock,
``INSERT``, ``COMMIT`` took three; inside a transaction the lock lasts to its end as
before. Nothing changes on SQLite.

Revision ID: 0003_pg_append_function
Revises: 0002_unique_sequence
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003_pg_append_function"
down_revision: str | Sequence[str] | None = "0002_unique_sequence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    "session_id",
    "claude_session_id",
    "event_type",
    "created_at",
    "role",
    "content",
    "tool_id",
    "tool_name",
    "tool_input_json",
    "tool_result_for_id",
    "tool_result_content",
    "is_completed",
    "approval_status",
    "approval_id",
    "parent_tool_use_id",
)
_TYPES = {"created_at": "timestamptz", "is_completed": "boolean"}


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    parameters = ", ".join(f"p_{name} {_TYPES.get(name, 'text')}" for name in _COLUMNS)
    values = ", ".join(f"p_{name}" for name in _COLUMNS)
    # Column names only (constants above): no caller text goes into this DDL.
    op.execute(
        f"""
CREATE FUNCTION agentstore_append_event(p_lock bigint, {parameters},
                                        OUT new_id bigint, OUT new_sequence bigint)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock);
    INSERT INTO conversation_events (sequence, {", ".join(_COLUMNS)})
    SELECT COALESCE(MAX(e.sequence), 0) + 1, {values}
    FROM conversation_events e WHERE e.claude_session_id = p_claude_session_id
    RETURNING conversation_events.id, conversation_events.sequence INTO new_id, new_sequence;
END
$$"""
    )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    parameters = ", ".join(_TYPES.get(name, "text") for name in _COLUMNS)
    op.execute(f"DROP FUNCTION agentstore_append_event(bigint, {parameters})")
