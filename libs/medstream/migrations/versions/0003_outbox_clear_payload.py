"""The relay clears an outbox row's payload when it marks the row sent.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("GRANT UPDATE (sent_at, value, key, headers) ON outbox TO medstream")
    # Rows sent before this revision still hold their payloads: clear them.
    op.execute(
        "UPDATE outbox SET value = ''::bytea, key = NULL, headers = '{}'::jsonb"
        " WHERE sent_at IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("REVOKE UPDATE (value, key, headers) ON outbox FROM medstream")
