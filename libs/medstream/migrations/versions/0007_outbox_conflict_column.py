"""Services read the outbox's message_id column, and only it: INSERT ... ON CONFLICT
(message_id) needs it. Re-applies ``POSTGRES_GRANTS`` (see 0006).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

from medstream.platform.identities import TableGrant, postgres_grant_statements

# The tables that exist at this revision (later ones are granted by their migrations).
TABLES_AT_THIS_REVISION = (
    "inbox",
    "outbox",
    "pseudonym_vault",
    "fhir_resource",
    "audit_event",
    "audit_chain_head",
)

# POSTGRES_GRANTS as it was at this revision (frozen: later tables and columns are
# granted by later migrations, so a fresh database replays this one as it was).
_SERVICE = (
    TableGrant("inbox", ("SELECT", "INSERT")),
    TableGrant("outbox", ("SELECT", "INSERT"), select_columns=("message_id",)),
)
GRANTS_AT_THIS_REVISION = {
    "relay": (
        TableGrant(
            "outbox",
            ("SELECT", "UPDATE"),
            ("sent_at", "value", "key", "headers", "quarantined_at", "quarantine_reason"),
        ),
    ),
    "ingestion": _SERVICE,
    "deid": (*_SERVICE, TableGrant("pseudonym_vault", ("SELECT", "INSERT", "UPDATE"))),
    "monitoring": _SERVICE,
    "imaging": _SERVICE,
    "notes": _SERVICE,
    "results": (
        *_SERVICE,
        TableGrant("pseudonym_vault", ("SELECT",)),
        TableGrant("fhir_resource", ("SELECT", "INSERT")),
    ),
    "audit": (
        *_SERVICE,
        TableGrant("audit_event", ("SELECT", "INSERT")),
        TableGrant("audit_chain_head", ("SELECT",)),
    ),
    "auditor": (
        TableGrant("audit_event", ("SELECT",)),
        TableGrant("audit_chain_head", ("SELECT",)),
    ),
}

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in postgres_grant_statements(GRANTS_AT_THIS_REVISION, TABLES_AT_THIS_REVISION):
        op.execute(statement)


def downgrade() -> None:
    """0006's grants differ only by the column the services read; keep it."""
