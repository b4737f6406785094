"""Sequences are unique within a Claude session.

hld computed ``MAX(sequence) + 1`` outside any lock and could hand two events the same number;
agentstore assigns sequences atomically, and this unique index makes a duplicate impossible
whoever writes the file (hld included: its insert then fails instead of corrupting the order).

An adopted hld database may already hold duplicates. In each Claude session that has any,
the events are renumbered 1, 2, 3… in their ``(sequence, id)`` order — the order hld itself
showed them in — so no event is lost and the conversation reads the same. Claude sessions
without duplicates are not touched.

Revision ID: 0002_unique_sequence
Revises: 0001_hld_v22
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import context, op

revision: str = "0002_unique_sequence"
down_revision: str | Sequence[str] | None = "0001_hld_v22"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DUPLICATED = (
    "SELECT claude_session_id FROM conversation_events WHERE claude_session_id IS NOT NULL "
    "GROUP BY claude_session_id, sequence HAVING COUNT(*) > 1"
)
# The new number of every event that moves, computed on a snapshot before any is changed.
_MOVES = (
    "SELECT id, rn FROM ("
    " SELECT id, sequence, ROW_NUMBER() OVER (PARTITION BY claude_session_id"
    " ORDER BY sequence, id) AS rn"
    f" FROM conversation_events WHERE claude_session_id IN ({_DUPLICATED})"
    ") AS numbered WHERE sequence <> rn"
)


def upgrade() -> None:
    # Plain SQL, so that ``alembic upgrade --sql`` can print it too: the moves are computed
    # into a temporary table first (an UPDATE that read the table it changes would see its
    # own changes on SQLite), then applied in one statement.
    op.execute(f"CREATE TEMPORARY TABLE agentstore_moves AS {_MOVES}")
    if not context.is_offline_mode():
        renumbered = (
            op.get_bind().execute(sa.text("SELECT COUNT(*) FROM agentstore_moves")).scalar()
        )
        report = context.config.attributes.get("agentstore_report")
        if report is not None and renumbered:
            report.renumbered_events = int(renumbered)
    op.execute(
        "UPDATE conversation_events SET sequence = (SELECT m.rn FROM agentstore_moves m "
        "WHERE m.id = conversation_events.id) WHERE id IN (SELECT id FROM agentstore_moves)"
    )
    op.execute("DROP TABLE agentstore_moves")
    op.create_index(
        "uq_conversation_claude_session_sequence",
        "conversation_events",
        ["claude_session_id", "sequence"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_conversation_claude_session_sequence", table_name="conversation_events")
