"""The PseudonymVault: pseudonym -> encrypted EHR identifiers and date offset.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pseudonym_vault",
        sa.Column("pseudonym", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("pseudonym", name="pk_pseudonym_vault"),
    )
    # Services may add and update entries; none may delete one.
    op.execute("GRANT SELECT, INSERT, UPDATE ON pseudonym_vault TO medstream")


def downgrade() -> None:
    op.drop_table("pseudonym_vault")
