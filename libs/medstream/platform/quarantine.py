"""Quarantined outbox rows, for the operator: list them and release them.

The relay quarantines a row the broker refuses for good (a record larger than its
topic allows, say: docs/architecture.md) and goes on around it. The row keeps its
payload and waits. Once the cause is fixed (the topic's limit raised, a topic created),
releasing it clears ``quarantined_at``, and its service's relay sends it at its next
pass, in ``id`` order with any other unsent rows. Releasing a row whose cause is still
there only quarantines it again. A released row reaches its topic after the rows of the
same key that were sent while it waited: per-key order holds for what flows, not
across a quarantine, so a consumer that needs it orders by the event's own time
(the envelope's ``occurred_at``).

Listing never reads a payload: a row upstream of deid holds PHI. It shows what an
operator needs to decide: the row's id, message id, topic, reason, size and time.
Both run as the schema's owner (``medstream db quarantined|release``), which row level
security does not restrict to one service's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass(frozen=True)
class QuarantinedRow:
    """One quarantined outbox row, without its payload."""

    id: int
    message_id: str
    topic: str
    reason: str | None
    size: int
    created_at: datetime
    quarantined_at: datetime


# Static statements: a filter left out is a NULL parameter.
_LIST = text(
    "SELECT id, message_id, topic, quarantine_reason AS reason,"
    " octet_length(value) AS size, created_at, quarantined_at FROM outbox"
    " WHERE quarantined_at IS NOT NULL AND sent_at IS NULL"
    " AND (CAST(:topic AS varchar) IS NULL OR topic = CAST(:topic AS varchar))"
    " ORDER BY id LIMIT :limit"
)
_COUNT = text(
    "SELECT count(*) FROM outbox WHERE quarantined_at IS NOT NULL AND sent_at IS NULL"
    " AND (CAST(:topic AS varchar) IS NULL OR topic = CAST(:topic AS varchar))"
)
_RELEASE = text(
    "UPDATE outbox SET quarantined_at = NULL, quarantine_reason = NULL"
    " WHERE quarantined_at IS NOT NULL AND sent_at IS NULL"
    " AND (CAST(:topic AS varchar) IS NULL OR topic = CAST(:topic AS varchar))"
    " AND (CAST(:ids AS bigint[]) IS NULL OR id = ANY(CAST(:ids AS bigint[])))"
    " RETURNING id"
)


async def quarantined(
    engine: AsyncEngine, topic: str | None = None, limit: int = 100
) -> tuple[list[QuarantinedRow], int]:
    """The oldest ``limit`` quarantined rows (of ``topic``, when given), and how many
    there are in all."""
    params = {"topic": topic, "limit": limit}
    async with engine.connect() as conn:
        rows = await conn.execute(_LIST, params)
        found = [QuarantinedRow(**row._asdict()) for row in rows]
        total = (await conn.execute(_COUNT, params)).scalar_one()
    return found, int(total)


async def release(
    engine: AsyncEngine, ids: list[int] | None = None, topic: str | None = None
) -> list[int]:
    """Clear the quarantine of rows ``ids``, or of every quarantined row of ``topic``
    (both given: those of ``ids`` on ``topic``); return the ids released. A row already
    sent, or not quarantined, is left as it is."""
    if ids is None and topic is None:
        raise ValueError("name the rows to release: ids, a topic, or both")
    async with engine.begin() as conn:
        released = await conn.execute(_RELEASE, {"topic": topic, "ids": ids})
        return sorted(int(row.id) for row in released)
