"""Services read the outbox's message_id column, and only it: INSERT ... ON CONFLICT
(message_id) needs it (other services' outbox rows may hold identified payloads until
the relay clears them).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

# The roles that enqueue to the outbox at this revision (all but relay and auditor).
WRITERS = ("ingestion", "deid", "monitoring", "imaging", "notes", "results", "audit")

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for principal in WRITERS:
        op.execute(f"GRANT SELECT (message_id) ON outbox TO medstream_{principal}")


def downgrade() -> None:
    for principal in WRITERS:
        op.execute(f"REVOKE SELECT (message_id) ON outbox FROM medstream_{principal}")  # noqa: S608
