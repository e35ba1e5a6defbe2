"""Large values (a film's envelope, a DiagnosticReport with its heatmap) are
TOAST-compressed with lz4, not pglz (migration 0012): pglz spent about half of
PostgreSQL's CPU per film failing to compress base64 (docs/architecture.md)."""

from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream.outbox import OutboundMessage, enqueue

# Every column migration 0012 moves to lz4.
LARGE = {("outbox", "value"), ("fhir_resource", "resource"), ("audit_event", "resource")}


async def test_large_value_columns_use_lz4(admin_engine: AsyncEngine) -> None:
    async with admin_engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT attrelid::regclass::text, attname, attcompression::text FROM pg_attribute"
                " WHERE attrelid IN ('outbox'::regclass, 'fhir_resource'::regclass,"
                " 'audit_event'::regclass) AND attnum > 0 AND NOT attisdropped"
            )
        )
        found = {(table, column): method for table, column, method in rows}
    assert {key: found.get(key) for key in LARGE} == dict.fromkeys(LARGE, "l")


async def test_a_large_outbox_value_is_stored_with_lz4(engine: AsyncEngine) -> None:
    """A row the services write (through their own role) is compressed with lz4; the
    transaction is rolled back, so no relay ever sees it."""
    observations = [
        {"resourceType": "Observation", "status": "final", "valueQuantity": {"value": n}}
        for n in range(4000)
    ]
    value = json.dumps(observations).encode()
    assert len(value) > 100_000
    message_id = "test-lz4-large-value"
    async with engine.connect() as conn, conn.begin() as tx:
        await enqueue(conn, OutboundMessage("medstream.test.lz4", value, message_id))
        method, stored = (
            await conn.execute(
                text(
                    "SELECT pg_column_compression(value), pg_column_size(value)"
                    " FROM outbox WHERE message_id = :m"
                ),
                {"m": message_id},
            )
        ).one()
        await tx.rollback()
    assert method == "lz4"
    assert stored < len(value) / 4
