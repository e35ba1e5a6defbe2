"""The gateway's role: it reads stored results for the FHIR REST API, nothing else.

The gateway (docs/gateways.md) puts what hospitals send over MLLP, DICOM and HTTP on
the inbound topics, and serves ``GET /fhir/...`` from ``fhir_resource``. It keeps no
inbox and no outbox, so its role may only read that one table.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

from medstream.platform.identities import postgres_grant_statements

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in postgres_grant_statements():
        op.execute(statement)


def downgrade() -> None:
    op.execute("REVOKE ALL ON fhir_resource FROM medstream_gateway")
