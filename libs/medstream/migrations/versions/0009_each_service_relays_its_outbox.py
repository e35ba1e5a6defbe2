"""Each service relays its own outbox rows; row level security keeps it to them.

The shared relay service wrote every topic to Kafka and read every service's outbox
rows, identified payloads included: one principal with the union of everyone's
rights. Now each service runs the relay in its own process, as its own role (and its
own Kafka principal, which may write only that service's topics):

- ``outbox.producer`` is the role that wrote the row (``DEFAULT current_user``).
  Unsent rows from before are given to the service that writes their topic.
- Row level security: a service role sees, updates and inserts only rows whose
  producer is itself. The audit service also relays the operator's audit rows (the
  CLI's commands, ``medstream audit anchor``); the operator role sees every row; the
  owner, which owns the table, is not subject to the policies.
- The services get SELECT, INSERT and UPDATE (the relayed columns) on their rows; the
  retired ``medstream_relay`` role loses everything.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

from medstream.platform.identities import POSTGRES_GRANTS, postgres_grant_statements

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Which role relays an unsent row of a topic, as it was at this revision (frozen).
RELAYED_BY_AT_THIS_REVISION = {
    "medstream.identified.fhir": "ingestion",
    "medstream.identified.hl7v2": "ingestion",
    "medstream.identified.dicom": "ingestion",
    "medstream.deid.patient": "deid",
    "medstream.deid.vitals": "deid",
    "medstream.deid.document": "deid",
    "medstream.deid.imaging": "deid",
    "medstream.results.monitoring": "monitoring",
    "medstream.results.imaging": "imaging",
    "medstream.results.notes": "notes",
    "ehr.outbound.fhir": "results",
    "medstream.audit": "audit",
    "medstream.audit.anchors": "audit",
}
SERVICE_ROLES_AT_THIS_REVISION = (
    "medstream_ingestion",
    "medstream_deid",
    "medstream_monitoring",
    "medstream_imaging",
    "medstream_notes",
    "medstream_results",
    "medstream_audit",
)
# The operator's rows the audit service relays.
OPERATOR_AUDIT_TOPICS = ("medstream.audit", "medstream.audit.anchors")


def upgrade() -> None:
    op.execute("ALTER TABLE outbox ADD COLUMN producer text NOT NULL DEFAULT current_user")
    for topic, principal in RELAYED_BY_AT_THIS_REVISION.items():
        op.execute(
            f"UPDATE outbox SET producer = 'medstream_{principal}'"  # noqa: S608 (constants)
            f" WHERE sent_at IS NULL AND topic = '{topic}'"
        )
    op.execute(
        "CREATE INDEX ix_outbox_unsent_by_producer ON outbox (producer, id)"
        " WHERE sent_at IS NULL AND quarantined_at IS NULL"
    )
    op.execute("ALTER TABLE outbox ENABLE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY outbox_operator ON outbox TO medstream USING (true) WITH CHECK (true)"
    )
    roles = ", ".join(SERVICE_ROLES_AT_THIS_REVISION)
    op.execute(
        f"CREATE POLICY outbox_own_rows ON outbox TO {roles}"
        " USING (producer = current_user) WITH CHECK (producer = current_user)"
    )
    topics = ", ".join(f"'{t}'" for t in OPERATOR_AUDIT_TOPICS)
    operator_rows = f"producer = 'medstream' AND topic IN ({topics})"
    op.execute(
        f"CREATE POLICY outbox_operator_audit_read ON outbox FOR SELECT TO medstream_audit"
        f" USING ({operator_rows})"
    )
    op.execute(
        f"CREATE POLICY outbox_operator_audit_relay ON outbox FOR UPDATE TO medstream_audit"
        f" USING ({operator_rows}) WITH CHECK ({operator_rows})"
    )
    # A database made before the relay was retired still has its role (init-roles.sql
    # no longer creates it): it loses everything.
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'medstream_relay')"
        " THEN EXECUTE 'REVOKE ALL ON outbox FROM medstream_relay'; END IF; END $$"
    )
    # The principals of this revision only (the gateway's role came with 0010).
    at_this_revision = {
        principal: grants
        for principal, grants in POSTGRES_GRANTS.items()
        if f"medstream_{principal}" in (*SERVICE_ROLES_AT_THIS_REVISION, "medstream_auditor")
    }
    for statement in postgres_grant_statements(at_this_revision):
        op.execute(statement)


def downgrade() -> None:
    for policy in (
        "outbox_operator",
        "outbox_own_rows",
        "outbox_operator_audit_read",
        "outbox_operator_audit_relay",
    ):
        op.execute(f"DROP POLICY IF EXISTS {policy} ON outbox")
    op.execute("ALTER TABLE outbox DISABLE ROW LEVEL SECURITY")
    op.execute("DROP INDEX IF EXISTS ix_outbox_unsent_by_producer")
    op.execute("ALTER TABLE outbox DROP COLUMN producer")
