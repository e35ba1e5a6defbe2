"""The EHR write-back table and the hash-chained audit trail.

``fhir_resource`` holds every resource published to ``ehr.outbound.fhir``, once per
(inbound message, model, resource kind). ``audit_event`` is append-only: the service
role may only insert, a trigger rejects UPDATE, DELETE and TRUNCATE from anyone, and a
second trigger accepts a row only as the next link of its chain, advancing
``audit_chain_head`` (which no service role can write).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _created_at() -> sa.Column[object]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "fhir_resource",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_kind", sa.String(128), nullable=False),
        sa.Column("inbound_message_id", sa.String(300), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("ehr_patient_reference", sa.String(300), nullable=False),
        sa.Column("correlation_id", sa.String(300), nullable=False),
        sa.Column("result_event_id", sa.String(64), nullable=False),
        sa.Column("resource", postgresql.JSONB(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_fhir_resource"),
        sa.UniqueConstraint(
            "inbound_message_id", "model", "resource_kind", name="uq_fhir_resource_result"
        ),
    )
    op.create_index(
        "ix_fhir_resource_patient",
        "fhir_resource",
        ["ehr_patient_reference", "resource_type", "created_at"],
    )
    op.create_index("ix_fhir_resource_type_time", "fhir_resource", ["resource_type", "created_at"])
    op.create_index("ix_fhir_resource_result", "fhir_resource", ["result_event_id"])
    op.execute("GRANT SELECT, INSERT ON fhir_resource TO medstream")

    op.create_table(
        "audit_chain_head",
        sa.Column("chain", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("chain", name="pk_audit_chain_head"),
    )
    op.create_table(
        "audit_event",
        sa.Column("chain", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("outcome", sa.String(4), nullable=False),
        sa.Column("entity", sa.String(300)),
        sa.Column("patient_pseudonym", sa.String(64)),
        sa.Column("message_id", sa.String(300)),
        sa.Column("correlation_id", sa.String(300), nullable=False),
        sa.Column("causation_id", sa.String(300)),
        sa.Column("resource", postgresql.JSONB(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("chain", "seq", name="pk_audit_event"),
        sa.UniqueConstraint("event_id", name="uq_audit_event_event_id"),
    )
    for column in ("patient_pseudonym", "actor", "action", "correlation_id", "message_id"):
        op.create_index(f"ix_audit_event_{column}", "audit_event", [column, "recorded_at"])
    op.create_index("ix_audit_event_recorded_at", "audit_event", ["recorded_at"])

    # The chain's first link points at a genesis hash per chain; medstream.audit.chain
    # computes the same value.
    op.execute(
        """
        CREATE FUNCTION audit_event_append() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        DECLARE
            head_seq bigint;
            head_hash text;
        BEGIN
            INSERT INTO audit_chain_head (chain, seq, hash)
            VALUES (NEW.chain, 0, encode(sha256(convert_to(
                'medstream-audit-genesis:' || NEW.chain, 'UTF8')), 'hex'))
            ON CONFLICT (chain) DO NOTHING;
            SELECT seq, hash INTO head_seq, head_hash
            FROM audit_chain_head WHERE chain = NEW.chain FOR UPDATE;
            IF NEW.seq <> head_seq + 1 OR NEW.prev_hash <> head_hash THEN
                RAISE EXCEPTION 'audit row % of chain % is not the next link (head is %)',
                    NEW.seq, NEW.chain, head_seq USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            UPDATE audit_chain_head SET seq = NEW.seq, hash = NEW.hash, updated_at = now()
            WHERE chain = NEW.chain;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_event_append BEFORE INSERT ON audit_event"
        " FOR EACH ROW EXECUTE FUNCTION audit_event_append()"
    )
    op.execute(
        """
        CREATE FUNCTION audit_event_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit rows are append-only: % is not allowed', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_event_immutable BEFORE UPDATE OR DELETE ON audit_event"
        " FOR EACH ROW EXECUTE FUNCTION audit_event_immutable()"
    )
    op.execute(
        "CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event"
        " FOR EACH STATEMENT EXECUTE FUNCTION audit_event_immutable()"
    )
    op.execute("GRANT SELECT, INSERT ON audit_event TO medstream")
    op.execute("GRANT SELECT ON audit_chain_head TO medstream")


def downgrade() -> None:
    op.drop_table("audit_event")
    op.execute("DROP FUNCTION audit_event_append()")
    op.execute("DROP FUNCTION audit_event_immutable()")
    op.drop_table("audit_chain_head")
    op.drop_table("fhir_resource")
