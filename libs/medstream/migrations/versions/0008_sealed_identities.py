"""Only the EHR boundary can re-link: identities move out of the row deid reads.

``pseudonym_vault`` keeps the date offset (``offset_nonce``, ``offset_ciphertext``,
under the vault key), and the new ``vault_identity`` holds each identity fragment
sealed to the results service's re-link key (medstream.deid.vault.RelinkSeal). Rows
written before are converted here: the migration opens them with the vault key
(``MEDSTREAM_VAULT_KEY``, and ``MEDSTREAM_VAULT_PREVIOUS_KEYS`` for older keys) and
seals each identity to ``MEDSTREAM_RELINK_PUBLIC_KEY``, then clears the old columns.
deid's role may then read only the offset columns.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op
from cryptography.exceptions import InvalidTag

from medstream.deid.engine import PatientIdentity
from medstream.deid.vault import RelinkSeal, VaultCipher
from medstream.platform.identities import TableGrant, postgres_grant_statements
from medstream.settings import get_settings

# POSTGRES_GRANTS as it was at this revision (frozen: later changes come with later
# migrations, so a fresh database replays this one as it was).
GRANTS_AT_THIS_REVISION = {
    "relay": (
        TableGrant(
            "outbox",
            ("SELECT", "UPDATE"),
            ("sent_at", "value", "key", "headers", "quarantined_at", "quarantine_reason"),
        ),
    ),
    "ingestion": (
        TableGrant("inbox", ("SELECT", "INSERT")),
        TableGrant("outbox", ("SELECT", "INSERT"), select_columns=("message_id",)),
    ),
    "deid": (
        TableGrant("inbox", ("SELECT", "INSERT")),
        TableGrant("outbox", ("SELECT", "INSERT"), select_columns=("message_id",)),
        TableGrant(
            "pseudonym_vault",
            ("SELECT", "INSERT"),
            select_columns=("pseudonym", "key_id", "offset_nonce", "offset_ciphertext"),
        ),
        TableGrant(
            "vault_identity", ("SELECT", "INSERT"), select_columns=("pseudonym", "fingerprint")
        ),
    ),
    "monitoring": (
        TableGrant("inbox", ("SELECT", "INSERT")),
        TableGrant("outbox", ("SELECT", "INSERT"), select_columns=("message_id",)),
    ),
    "imaging": (
        TableGrant("inbox", ("SELECT", "INSERT")),
        TableGrant("outbox", ("SELECT", "INSERT"), select_columns=("message_id",)),
    ),
    "notes": (
        TableGrant("inbox", ("SELECT", "INSERT")),
        TableGrant("outbox", ("SELECT", "INSERT"), select_columns=("message_id",)),
    ),
    "results": (
        TableGrant("inbox", ("SELECT", "INSERT")),
        TableGrant("outbox", ("SELECT", "INSERT"), select_columns=("message_id",)),
        TableGrant("pseudonym_vault", ("SELECT",)),
        TableGrant("vault_identity", ("SELECT",)),
        TableGrant("fhir_resource", ("SELECT", "INSERT")),
    ),
    "audit": (
        TableGrant("inbox", ("SELECT", "INSERT")),
        TableGrant("outbox", ("SELECT", "INSERT"), select_columns=("message_id",)),
        TableGrant("audit_event", ("SELECT", "INSERT")),
        TableGrant("audit_chain_head", ("SELECT",)),
    ),
    "auditor": (
        TableGrant("audit_event", ("SELECT",)),
        TableGrant("audit_chain_head", ("SELECT",)),
    ),
}

# The tables that exist at this revision, and the retired relay role (see 0006).
TABLES_AT_THIS_REVISION = (
    "inbox",
    "outbox",
    "pseudonym_vault",
    "vault_identity",
    "fhir_resource",
    "audit_event",
    "audit_chain_head",
)

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pseudonym_vault", sa.Column("offset_nonce", sa.LargeBinary()))
    op.add_column("pseudonym_vault", sa.Column("offset_ciphertext", sa.LargeBinary()))
    op.alter_column("pseudonym_vault", "nonce", nullable=True)
    op.alter_column("pseudonym_vault", "ciphertext", nullable=True)
    op.create_table(
        "vault_identity",
        sa.Column("pseudonym", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("pseudonym", "fingerprint", name="pk_vault_identity"),
    )
    _convert_rows()
    op.alter_column("pseudonym_vault", "offset_nonce", nullable=False)
    op.alter_column("pseudonym_vault", "offset_ciphertext", nullable=False)
    # The operator role keeps every service's rights (the CLI and the tests).
    op.execute("GRANT SELECT, INSERT ON vault_identity TO medstream")
    for statement in postgres_grant_statements(
        GRANTS_AT_THIS_REVISION, TABLES_AT_THIS_REVISION, retired=("relay",)
    ):
        op.execute(statement)


def _convert_rows() -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT pseudonym, key_id, nonce, ciphertext FROM pseudonym_vault"
            " WHERE offset_ciphertext IS NULL"
        )
    ).all()
    if not rows:
        return
    settings = get_settings()
    cipher = VaultCipher.from_settings(settings)
    seal = RelinkSeal.for_service(settings, "deid")  # sealing needs only the public key
    for row in rows:
        try:
            data = json.loads(cipher.open(row.nonce, row.ciphertext, row.pseudonym, row.key_id))
        except InvalidTag:
            raise RuntimeError(
                f"a vault row is sealed under key {row.key_id!r}, which this migration was "
                "not given: set MEDSTREAM_VAULT_KEY (and MEDSTREAM_VAULT_PREVIOUS_KEYS for "
                "older keys) as the deid service has them, and run the migration again"
            ) from None
        identity = PatientIdentity(data["ehr_patient_id"], data["identifiers"])
        nonce, ciphertext = cipher.seal(str(data["offset_days"]).encode(), row.pseudonym)
        connection.execute(
            sa.text(
                "UPDATE pseudonym_vault SET key_id = :k, offset_nonce = :n,"
                " offset_ciphertext = :c, nonce = NULL, ciphertext = NULL WHERE pseudonym = :p"
            ),
            {"k": cipher.key_id, "n": nonce, "c": ciphertext, "p": row.pseudonym},
        )
        plaintext = json.dumps(
            {"ehr_patient_id": identity.ehr_patient_id, "identifiers": identity.identifiers},
            sort_keys=True,
        ).encode()
        connection.execute(
            sa.text(
                "INSERT INTO vault_identity (pseudonym, fingerprint, sealed) VALUES (:p, :f, :s)"
                " ON CONFLICT DO NOTHING"
            ),
            {
                "p": row.pseudonym,
                "f": cipher.fingerprint(identity),
                "s": seal.seal(plaintext, row.pseudonym),
            },
        )


def downgrade() -> None:
    raise NotImplementedError("sealed identities cannot be moved back into the offset row")
