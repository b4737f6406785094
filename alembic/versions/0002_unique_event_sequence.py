"""Sequences are unique within a Claude session.

hld computed ``MAX(sequence) + 1`` outside any lock and could hand two events the same number;
agentstore assigns sequences atomically, and this unique index makes a duplicate impossible
whoever writes the file (hld included: its insert then fails instead of corrupting the order).

Revision ID: 0002_unique_sequence
Revises: 0001_hld_v22
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002_unique_sequence"
down_revision: str | Sequence[str] | None = "0001_hld_v22"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "uq_conversation_claude_session_sequence",
        "conversation_events",
        ["claude_session_id", "sequence"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_conversation_claude_session_sequence", table_name="conversation_events")
