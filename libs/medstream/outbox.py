"""The inbox and the outbox: an exactly-once effect over at-least-once delivery.

A handler's database effects, its inbox key and the messages it will emit are written
in one PostgreSQL transaction. A redelivered message finds its inbox key and is
skipped; the relay publishes outbox rows and marks them sent. A relay that dies after
publishing and before marking publishes those rows again, each with the same
``message-id`` header, which downstream inboxes deduplicate.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from enum import StrEnum

from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from medstream.failures import ENVIRONMENT_ERRORS
from medstream.received import MESSAGE_ID_HEADER, Received

log = logging.getLogger(__name__)


class InboxOutcome(StrEnum):
    """How an inbound message ended for one consumer group."""

    PROCESSED = "processed"
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True)
class OutboundMessage:
    """A message to publish once the transaction that made it commits."""

    topic: str
    value: bytes
    message_id: str
    key: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


async def already_seen(conn: AsyncConnection, group: str, message_id: str) -> bool:
    """Whether ``group`` has already processed or dead-lettered ``message_id``."""
    row = await conn.execute(
        text("SELECT 1 FROM inbox WHERE consumer_group = :g AND message_id = :m"),
        {"g": group, "m": message_id},
    )
    return row.first() is not None


async def claim(
    conn: AsyncConnection, group: str, received: Received, outcome: InboxOutcome
) -> bool:
    """Record ``received`` as handled by ``group``; False if it already was.

    The primary key makes this safe under concurrency: of two transactions claiming
    the same key, the second waits for the first and then finds the conflict.
    """
    result = await conn.execute(
        text(
            'INSERT INTO inbox (consumer_group, message_id, topic, partition, "offset", outcome)'
            " VALUES (:g, :m, :t, :p, :o, :outcome)"
            " ON CONFLICT (consumer_group, message_id) DO NOTHING RETURNING 1"
        ),
        {
            "g": group,
            "m": received.message_id,
            "t": received.topic,
            "p": received.partition,
            "o": received.offset,
            "outcome": outcome.value,
        },
    )
    return result.first() is not None


async def enqueue(conn: AsyncConnection, message: OutboundMessage) -> None:
    """Add ``message`` to the outbox in the caller's transaction (once per message id)."""
    headers = {**message.headers, MESSAGE_ID_HEADER: message.message_id}
    await conn.execute(
        text(
            "INSERT INTO outbox (message_id, topic, key, value, headers)"
            " VALUES (:m, :t, :k, :v, CAST(:h AS jsonb))"
            " ON CONFLICT (message_id) DO NOTHING"
        ),
        {
            "m": message.message_id,
            "t": message.topic,
            "k": message.key,
            "v": message.value,
            "h": json.dumps(headers, sort_keys=True),
        },
    )


class OutboxRelay:
    """Publishes unsent outbox rows in id order, then marks them sent.

    Rows are locked ``FOR UPDATE SKIP LOCKED``, so several relays share the work
    without publishing a row twice while it is locked. Per-key order is kept when one
    relay runs, which is the default deployment.
    """

    def __init__(
        self, engine: AsyncEngine, producer: AIOKafkaProducer, batch_size: int = 200
    ) -> None:
        self._engine = engine
        self._producer = producer
        self._batch_size = batch_size

    async def relay_once(self) -> int:
        """Publish one batch and mark it sent; return how many rows were published."""
        async with self._engine.begin() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT id, topic, key, value, headers FROM outbox"
                        " WHERE sent_at IS NULL ORDER BY id"
                        " LIMIT :n FOR UPDATE SKIP LOCKED"
                    ),
                    {"n": self._batch_size},
                )
            ).all()
            if not rows:
                return 0
            # Send the whole batch, then await every acknowledgement: the idempotent
            # producer keeps per-partition order while requests are in flight.
            pending = [
                await self._producer.send(
                    row.topic,
                    value=row.value,
                    key=row.key,
                    headers=[(k, v.encode()) for k, v in row.headers.items()],
                )
                for row in rows
            ]
            await asyncio.gather(*pending)
            # Kafka now holds the acknowledged copy. The row stays as a ledger entry (id,
            # topic, times); its payload goes, so no table keeps a second copy of data
            # that may be PHI (ingestion's identified records pass through here).
            await conn.execute(
                text(
                    "UPDATE outbox SET sent_at = now(), value = ''::bytea, key = NULL,"
                    " headers = '{}'::jsonb WHERE id = ANY(:ids)"
                ),
                {"ids": [row.id for row in rows]},
            )
        log.debug("outbox batch relayed", extra={"count": len(rows)})
        return len(rows)

    async def run(self, stop: asyncio.Event, poll_interval_s: float = 0.2) -> None:
        """Relay until ``stop`` is set, sleeping ``poll_interval_s`` when idle."""
        failures = 0
        while not stop.is_set():
            try:
                sent = await self.relay_once()
                failures = 0
            except ENVIRONMENT_ERRORS as exc:
                # Postgres or Kafka is restarting: nothing was marked sent, so retry.
                failures += 1
                log.warning(
                    "outbox relay failed; will retry",
                    extra={"attempt": failures, "error_class": type(exc).__name__},
                )
                sent = 0
                poll = min(10.0, poll_interval_s * 2 ** min(failures, 6))
            else:
                poll = poll_interval_s
            if sent == 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=poll)
                except TimeoutError:
                    continue
