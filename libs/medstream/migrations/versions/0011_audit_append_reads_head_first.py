"""The audit chain's append trigger reads its chain's head first, and inserts the
genesis head only for a chain that has none.

Before, every appended row first tried ``INSERT ... ON CONFLICT DO NOTHING`` of the
genesis head (a speculative insertion and a conflict check on every row) and then
read the head. Now it locks and reads the head, and only a chain's very first row
inserts the genesis head (still ``ON CONFLICT DO NOTHING``, for two first writers).
The checks and the head's update are unchanged.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_SIGNATURE = (
    "CREATE OR REPLACE FUNCTION audit_event_append() RETURNS trigger"
    " LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$"
)
_CHECK_AND_ADVANCE = """
    IF NEW.seq <> head_seq + 1 OR NEW.prev_hash <> head_hash THEN
        RAISE EXCEPTION 'audit row % of chain % is not the next link (head is %)',
            NEW.seq, NEW.chain, head_seq USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    UPDATE audit_chain_head SET seq = NEW.seq, hash = NEW.hash, updated_at = now()
    WHERE chain = NEW.chain;
    RETURN NEW;
END $$
"""
_GENESIS = """
    INSERT INTO audit_chain_head (chain, seq, hash)
    VALUES (NEW.chain, 0, encode(sha256(convert_to(
        'medstream-audit-genesis:' || NEW.chain, 'UTF8')), 'hex'))
    ON CONFLICT (chain) DO NOTHING;
"""
_READ_HEAD = """
    SELECT seq, hash INTO head_seq, head_hash
    FROM audit_chain_head WHERE chain = NEW.chain FOR UPDATE;
"""
_DECLARE = """
DECLARE
    head_seq bigint;
    head_hash text;
BEGIN
"""


def upgrade() -> None:
    op.execute(
        _SIGNATURE
        + _DECLARE
        + _READ_HEAD
        + "    IF NOT FOUND THEN\n"
        + _GENESIS
        + _READ_HEAD
        + "    END IF;\n"
        + _CHECK_AND_ADVANCE
    )


def downgrade() -> None:
    op.execute(_SIGNATURE + _DECLARE + _GENESIS + _READ_HEAD + _CHECK_AND_ADVANCE)
