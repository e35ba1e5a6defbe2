"""Least privilege: each service's own role, and the auditor's.

The roles are created by infra/postgres/init-roles.sql (cluster objects, made by the
superuser); this migration, run by the owner, gives each exactly the grants of
``medstream.platform.identities.POSTGRES_GRANTS``. A later change to that table comes
with a migration that runs the same statements again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

from medstream.platform.identities import (
    TableGrant,
    postgres_grant_statements,
    postgres_role,
)

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
_SERVICE = (TableGrant("inbox", ("SELECT", "INSERT")), TableGrant("outbox", ("INSERT",)))
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

# The relay's role is no longer created (migration 0009 retired the shared relay): a
# fresh database skips its grants, one made before still gets them here.
RETIRED = ("relay",)

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in postgres_grant_statements(
        GRANTS_AT_THIS_REVISION, TABLES_AT_THIS_REVISION, retired=RETIRED
    ):
        op.execute(statement)


def downgrade() -> None:
    for principal in GRANTS_AT_THIS_REVISION:
        if principal in RETIRED:
            continue  # 0009's downgrade does not bring the role back either
        role = postgres_role(principal)
        for table in TABLES_AT_THIS_REVISION:
            op.execute(f"REVOKE ALL ON {table} FROM {role}")
        op.execute(f"REVOKE USAGE ON SCHEMA public FROM {role}")
