"""Hostile input: content hashes beside inbox keys, and quarantined outbox rows.

An inbox row keeps the SHA-256 of the message it records, so a reused message id with
other content is told from a redelivery. An outbox row the broker refuses for good is
set aside with its reason instead of being retried forever.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inbox", sa.Column("content_sha256", sa.String(64), nullable=True))
    op.add_column("outbox", sa.Column("quarantined_at", sa.DateTime(timezone=True)))
    op.add_column("outbox", sa.Column("quarantine_reason", sa.String(100)))
    op.drop_index("ix_outbox_unsent", table_name="outbox")
    op.create_index(
        "ix_outbox_unsent",
        "outbox",
        ["id"],
        postgresql_where=sa.text("sent_at IS NULL AND quarantined_at IS NULL"),
    )
    op.create_index(
        "ix_outbox_quarantined",
        "outbox",
        ["quarantined_at"],
        postgresql_where=sa.text("quarantined_at IS NOT NULL"),
    )
    op.execute("GRANT UPDATE (quarantined_at, quarantine_reason) ON outbox TO medstream")


def downgrade() -> None:
    op.execute("REVOKE UPDATE (quarantined_at, quarantine_reason) ON outbox FROM medstream")
    op.drop_index("ix_outbox_quarantined", table_name="outbox")
    op.drop_index("ix_outbox_unsent", table_name="outbox")
    op.create_index(
        "ix_outbox_unsent", "outbox", ["id"], postgresql_where=sa.text("sent_at IS NULL")
    )
    op.drop_column("outbox", "quarantine_reason")
    op.drop_column("outbox", "quarantined_at")
    op.drop_column("inbox", "content_sha256")
