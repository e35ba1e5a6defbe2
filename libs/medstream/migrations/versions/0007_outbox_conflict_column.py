"""Services read the outbox's message_id column, and only it: INSERT ... ON CONFLICT
(message_id) needs it. Re-applies ``POSTGRES_GRANTS`` (see 0006).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

from medstream.platform.identities import postgres_grant_statements

# The tables that exist at this revision (later ones are granted by their migrations).
TABLES_AT_THIS_REVISION = (
    "inbox",
    "outbox",
    "pseudonym_vault",
    "fhir_resource",
    "audit_event",
    "audit_chain_head",
)

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in postgres_grant_statements(TABLES_AT_THIS_REVISION):
        op.execute(statement)


def downgrade() -> None:
    """0006's grants differ only by the column the services read; keep it."""
