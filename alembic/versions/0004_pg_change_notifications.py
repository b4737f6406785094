"""PostgreSQL: the writing transaction tells listeners what changed (NOTIFY).

Statement-level triggers send, on commit, ``e:<claude session id>`` on the
``agentstore_changes`` channel for every Claude session that got events, and ``a`` when
approvals were inserted or updated — whoever wrote them: this agentstore, another process,
another version. A store's watches listen on that channel (``agentstore.watch``).
PostgreSQL folds identical notifications of one transaction into one. Nothing changes on
SQLite, where watches check ``PRAGMA data_version`` instead.

Revision ID: 0004_pg_change_notifications
Revises: 0003_pg_append_function
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004_pg_change_notifications"
down_revision: str | Sequence[str] | None = "0003_pg_append_function"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(
        """
CREATE FUNCTION agentstore_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('agentstore_changes', 'e:' || keys.claude_session_id)
    FROM (SELECT DISTINCT claude_session_id FROM new_rows
          WHERE claude_session_id IS NOT NULL) AS keys;
    RETURN NULL;
END
$$"""
    )
    op.execute(
        "CREATE TRIGGER agentstore_events_notify AFTER INSERT ON conversation_events "
        "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION agentstore_notify_events()"
    )
    op.execute(
        """
CREATE FUNCTION agentstore_notify_approvals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('agentstore_changes', 'a');
    RETURN NULL;
END
$$"""
    )
    op.execute(
        "CREATE TRIGGER agentstore_approvals_notify AFTER INSERT OR UPDATE ON approvals "
        "FOR EACH STATEMENT EXECUTE FUNCTION agentstore_notify_approvals()"
    )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER agentstore_approvals_notify ON approvals")
    op.execute("DROP FUNCTION agentstore_notify_approvals()")
    op.execute("DROP TRIGGER agentstore_events_notify ON conversation_events")
    op.execute("DROP FUNCTION agentstore_notify_events()")
