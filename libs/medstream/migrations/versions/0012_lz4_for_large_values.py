"""Large values are TOAST-compressed with lz4, not pglz.

A film's records are large: its envelope carries the DICOM file, its result and its
DiagnosticReport carry the Grad-CAM PNG, each in base64 (about 45 KB and 115 KB for the
demo's phantom). pglz reads all of such a value before it finds that it cannot save a
quarter of it, and stores it uncompressed: about half of PostgreSQL's CPU per film went
there. lz4 gives up or compresses several times faster. Measured side by side
(imaging bursts of 240 films, pglz and lz4 alternated, three rounds each): PostgreSQL's
CPU per film 15.3-17.9 ms with pglz against 8.8-10.4 ms with lz4, and 21.8-24.6 against
26.5-30.2 films a second (docs/architecture.md).

The setting applies to values written from now on; nothing is rewritten. A server built
without lz4 keeps pglz, with a notice: the change is for speed only.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

LARGE_VALUES = (
    ("outbox", "value"),
    ("fhir_resource", "resource"),
    ("audit_event", "resource"),
)


def _set_compression(method: str) -> None:
    statements = " ".join(
        f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method};"
        for table, column in LARGE_VALUES
    )
    op.execute(
        "DO $$ BEGIN " + statements + " EXCEPTION WHEN feature_not_supported THEN"
        " RAISE NOTICE 'this PostgreSQL has no lz4: large values stay with pglz';"
        " END $$"
    )


def upgrade() -> None:
    _set_compression("lz4")


def downgrade() -> None:
    _set_compression("default")
