"""The inbox and the outbox can be pruned cheaply, and are vacuumed sooner.

``medstream db prune`` deletes the rows past the dedup window
(medstream.platform.retention). BRIN indexes on the inbox's ``processed_at`` and the
outbox's ``created_at`` let it find them without reading either table: both columns
grow with the physical order of the rows, and a BRIN index costs an insert almost
nothing (a B-tree on them would cost every message). Each relayed outbox row leaves a
dead tuple behind, and autovacuum's default (a fifth of the table) let the stack's
outbox carry 200,000 of them; both tables are now vacuumed after 2% changes.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_VACUUM_SOONER = "autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.05"


def upgrade() -> None:
    op.execute("CREATE INDEX ix_inbox_processed_at ON inbox USING brin (processed_at)")
    op.execute("CREATE INDEX ix_outbox_created_at ON outbox USING brin (created_at)")
    for table in ("inbox", "outbox"):
        op.execute(f"ALTER TABLE {table} SET ({_VACUUM_SOONER})")


def downgrade() -> None:
    for table in ("inbox", "outbox"):
        op.execute(
            f"ALTER TABLE {table} RESET (autovacuum_vacuum_scale_factor,"
            " autovacuum_analyze_scale_factor)"
        )
    op.execute("DROP INDEX ix_outbox_created_at")
    op.execute("DROP INDEX ix_inbox_processed_at")
