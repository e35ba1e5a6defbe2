"""The inbox and the outbox: an exactly-once effect over at-least-once delivery.

A handler's database effects, its inbox key and the messages it will emit are written
in one PostgreSQL transaction. A redelivered message finds its inbox key and is
skipped; the relay publishes outbox rows and marks them sent. A relay that dies after
publishing and before marking publishes those rows again, each with the same
``message-id`` header, which downstream inboxes deduplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    CorruptRecordException,
    InvalidMessageError,
    InvalidTimestampError,
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
)
from prometheus_client import Counter
from sqlalchemy import event, exc, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from medstream.events import AuditOutcome
from medstream.failures import ENVIRONMENT_ERRORS
from medstream.received import INBOUND_MESSAGE_ID_HEADER, MESSAGE_ID_HEADER, Received

log = logging.getLogger(__name__)


class InboxOutcome(StrEnum):
    """How an inbound message ended for one consumer group."""

    PROCESSED = "processed"
    DEAD_LETTERED = "dead_lettered"


class Seen(StrEnum):
    """What the inbox knows of a record's id in one consumer group."""

    NEW = "new"  # never handled
    SAME = "same"  # handled, with the same content: a redelivery or a resend
    CONFLICT = "conflict"  # handled, but the id belonged to other content


# Per record: the key, the value and each header's name and value, with framing.
_RECORD_OVERHEAD = 64


@dataclass(frozen=True)
class OutboundMessage:
    """A message to publish once the transaction that made it commits."""

    topic: str
    value: bytes
    message_id: str
    key: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def encoded_size(self) -> int:
        """About the bytes Kafka counts for this record (never less)."""
        headers = {**self.headers, MESSAGE_ID_HEADER: self.message_id}
        return (
            _RECORD_OVERHEAD
            + len(self.value)
            + len(self.key or b"")
            + sum(len(k.encode()) + len(v.encode()) + 8 for k, v in headers.items())
        )


async def seen(conn: AsyncConnection, group: str, received: Received) -> Seen:
    """Whether ``group`` has handled ``received``'s id, and with the same content."""
    row = (
        await conn.execute(
            text("SELECT content_sha256 FROM inbox WHERE consumer_group = :g AND message_id = :m"),
            {"g": group, "m": received.message_id},
        )
    ).first()
    if row is None:
        return Seen.NEW
    # Rows from before content hashes were kept cannot tell: they count as the same.
    return Seen.SAME if row[0] in (None, received.content_sha256) else Seen.CONFLICT


async def seen_many(
    conn: AsyncConnection, group: str, records: Sequence[Received]
) -> dict[str, Seen]:
    """``seen`` for many records (distinct ids) in one round trip, by message id."""
    if not records:
        return {}
    rows = await conn.execute(
        text(
            "SELECT message_id, content_sha256 FROM inbox WHERE consumer_group = :g"
            " AND message_id = ANY(CAST(:m AS text[]))"
        ),
        {"g": group, "m": [r.message_id for r in records]},
    )
    known = {row[0]: row[1] for row in rows}
    found = {}
    for record in records:
        if record.message_id not in known:
            found[record.message_id] = Seen.NEW
        elif known[record.message_id] in (None, record.content_sha256):
            found[record.message_id] = Seen.SAME
        else:
            found[record.message_id] = Seen.CONFLICT
    return found


async def claim_many(
    conn: AsyncConnection, group: str, records: Sequence[Received], outcome: InboxOutcome
) -> set[str]:
    """Record many records (distinct ids) as handled by ``group`` in one statement;
    return the ids this call recorded (the others were already there)."""
    if not records:
        return set()
    rows = await conn.execute(
        text(
            'INSERT INTO inbox (consumer_group, message_id, topic, partition, "offset",'
            " outcome, content_sha256)"
            " SELECT :g, m, t, p, o, :outcome, h FROM unnest(CAST(:m AS text[]),"
            " CAST(:t AS text[]), CAST(:p AS integer[]), CAST(:o AS bigint[]),"
            " CAST(:h AS text[])) AS u(m, t, p, o, h)"
            " ON CONFLICT (consumer_group, message_id) DO NOTHING RETURNING message_id"
        ),
        {
            "g": group,
            "outcome": outcome.value,
            "m": [r.message_id for r in records],
            "t": [r.topic for r in records],
            "p": [r.partition for r in records],
            "o": [r.offset for r in records],
            "h": [r.content_sha256 for r in records],
        },
    )
    return {row[0] for row in rows}


async def claim(
    conn: AsyncConnection, group: str, received: Received, outcome: InboxOutcome
) -> Seen:
    """Record ``received`` as handled by ``group``: NEW if this call recorded it, else
    what the inbox already held for its id.

    The primary key makes this safe under concurrency: of two transactions claiming
    the same key, the second waits for the first and then finds the conflict.
    """
    result = await conn.execute(
        text(
            'INSERT INTO inbox (consumer_group, message_id, topic, partition, "offset", outcome,'
            " content_sha256) VALUES (:g, :m, :t, :p, :o, :outcome, :h)"
            " ON CONFLICT (consumer_group, message_id) DO NOTHING RETURNING 1"
        ),
        {
            "g": group,
            "m": received.message_id,
            "t": received.topic,
            "p": received.partition,
            "o": received.offset,
            "outcome": outcome.value,
            "h": received.content_sha256,
        },
    )
    if result.first() is not None:
        return Seen.NEW
    return await seen(conn, group, received)


async def enqueue(conn: AsyncConnection, message: OutboundMessage) -> None:
    """Add ``message`` to the outbox in the caller's transaction (once per message id)."""
    await enqueue_many(conn, [message])


async def enqueue_many(conn: AsyncConnection, messages: Sequence[OutboundMessage]) -> None:
    """``enqueue`` for many messages in one statement (their columns as arrays,
    ``unnest``-ed in order): the outbox's ids keep the messages' order, and so each
    key's order, for the relay. One statement costs PostgreSQL far less than a row at a
    time (bench/e2e ``--platform``)."""
    if not messages:
        return
    await conn.execute(
        text(
            "INSERT INTO outbox (message_id, topic, key, value, headers)"
            " SELECT m, t, k, v, CAST(h AS jsonb) FROM unnest(CAST(:m AS text[]),"
            " CAST(:t AS text[]), CAST(:k AS bytea[]), CAST(:v AS bytea[]),"
            " CAST(:h AS text[])) WITH ORDINALITY AS u(m, t, k, v, h, n) ORDER BY n"
            " ON CONFLICT (message_id) DO NOTHING"
        ),
        {
            "m": [message.message_id for message in messages],
            "t": [message.topic for message in messages],
            "k": [message.key for message in messages],
            "v": [message.value for message in messages],
            "h": [
                json.dumps({**m.headers, MESSAGE_ID_HEADER: m.message_id}, sort_keys=True)
                for m in messages
            ],
        },
    )
    # The in-process relay wakes when this transaction has committed (wake_on_commit).
    conn.info[_WRITTEN] = True


_WRITTEN = "medstream.outbox.written"


def wake_on_commit(engine: AsyncEngine, wake: Callable[[], None]) -> Callable[[], None]:
    """Call ``wake`` each time a transaction on ``engine`` that wrote outbox rows has
    committed, so the relay in this process publishes them at once instead of at its
    next poll.

    The flag lives on the pooled connection: a rollback clears it, and the pool's
    check-in (which comes after the commit has completed, never before) fires the
    wake-up. A wake-up for rows a savepoint rolled back only costs one empty query.
    Rows written by other processes (the operator's CLI) are still found by polling.
    Returns the function that removes the listeners.
    """

    def rolled_back(conn: Any) -> None:
        # A connection lost mid-transaction is invalidated, and reading its ``info``
        # would raise over the original error (which must reach the caller as the
        # environment error it is); its pooled record is discarded with the flag.
        if conn.invalidated:
            return
        with contextlib.suppress(exc.SQLAlchemyError):
            conn.info.pop(_WRITTEN, None)

    def checked_in(dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop(_WRITTEN, False):
            wake()

    event.listen(engine.sync_engine, "rollback", rolled_back)
    event.listen(engine.sync_engine, "checkin", checked_in)

    def remove() -> None:
        event.remove(engine.sync_engine, "rollback", rolled_back)
        event.remove(engine.sync_engine, "checkin", checked_in)

    return remove


# Broker refusals that no retry can cure: the row is quarantined, the relay goes on.
PERMANENT_REFUSALS: dict[type[BaseException], str] = {
    MessageSizeTooLargeError: "kafka.record_too_large",
    RecordTooLargeError: "kafka.record_too_large",
    RecordListTooLargeError: "kafka.record_too_large",
    CorruptRecordException: "kafka.invalid_record",
    InvalidMessageError: "kafka.invalid_record",
    InvalidTimestampError: "kafka.invalid_record",
    InvalidTopicError: "kafka.invalid_topic",
    TopicAuthorizationFailedError: "kafka.not_authorised",
    ClusterAuthorizationFailedError: "kafka.not_authorised",
}
QUARANTINED = Counter(
    "medstream_outbox_quarantined_total",
    "Outbox rows the broker refused for good, set aside",
    ["topic", "reason"],
)


def refusal_code(error: BaseException) -> str | None:
    """The quarantine reason for a permanent broker refusal; None for anything else."""
    for kind, code in PERMANENT_REFUSALS.items():
        if isinstance(error, kind):
            return code
    return None


class OutboxRelay:
    """Publishes unsent outbox rows in id order, then marks them sent.

    Rows are locked ``FOR UPDATE SKIP LOCKED``, so several relays share the work
    without publishing a row twice while it is locked. Per-key order is kept when one
    relay runs, which is the default deployment.

    A row the broker refuses for good (too large, invalid, not authorised) is
    quarantined with its reason, counted and audited, and the relay goes on: one row
    can never stop every service's outbox.
    """

    def __init__(
        self, engine: AsyncEngine, producer: AIOKafkaProducer, batch_size: int = 200
    ) -> None:
        self._engine = engine
        self._producer = producer
        self._batch_size = batch_size
        # Rows Kafka acknowledged whose "sent" mark has not committed yet (PostgreSQL
        # went away in between): marked, never sent again, by this relay.
        self._acknowledged: set[int] = set()

    async def _send(self, row: Any) -> asyncio.Future[Any]:
        """Hand ``row`` to the producer; a record it refuses before sending comes back
        as an already failed future, like one the broker refuses."""
        try:
            sent: asyncio.Future[Any] = await self._producer.send(
                row.topic,
                value=row.value,
                key=row.key,
                headers=[(k, v.encode()) for k, v in row.headers.items()],
            )
        except ENVIRONMENT_ERRORS as exc:
            if refusal_code(exc) is None:
                raise
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed
        return sent

    async def relay_once(self) -> int:
        """Publish one batch and mark it sent; return how many rows were handled."""
        async with self._engine.begin() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT id, message_id, topic, key, value, headers FROM outbox"
                        " WHERE sent_at IS NULL AND quarantined_at IS NULL ORDER BY id"
                        " LIMIT :n FOR UPDATE SKIP LOCKED"
                    ),
                    {"n": self._batch_size},
                )
            ).all()
            if not rows:
                return 0
            # Send the whole batch, then await every acknowledgement: the idempotent
            # producer keeps per-partition order while requests are in flight. Rows
            # this relay already had acknowledged are only marked.
            to_send = [row for row in rows if row.id not in self._acknowledged]
            pending = [await self._send(row) for row in to_send]
            errors = await asyncio.gather(*pending, return_exceptions=True)
            self._remember(
                row.id
                for row, error in zip(to_send, errors, strict=True)
                if not isinstance(error, BaseException)
            )
            refused = [
                row
                for row, error in zip(to_send, errors, strict=True)
                if isinstance(error, BaseException) and refusal_code(error) is not None
            ]
            for error in errors:
                if isinstance(error, BaseException) and refusal_code(error) is None:
                    # Kafka is unavailable: nothing is marked, the batch is sent again.
                    raise error
            # A refusal fails the neighbours that shared the record batch too: each
            # refused row is tried alone, and only a row refused alone is quarantined.
            quarantined: list[tuple[Any, str]] = []
            for row in refused:
                try:
                    await (await self._send(row))
                except ENVIRONMENT_ERRORS as exc:
                    code = refusal_code(exc)
                    if code is None:
                        raise
                    quarantined.append((row, code))
            # Kafka now holds the acknowledged copy. The row stays as a ledger entry (id,
            # topic, times); its payload goes, so no table keeps a second copy of data
            # that may be PHI (ingestion's identified records pass through here).
            held = {row.id for row, _ in quarantined}
            await conn.execute(
                text(
                    "UPDATE outbox SET sent_at = now(), value = ''::bytea, key = NULL,"
                    " headers = '{}'::jsonb WHERE id = ANY(:ids)"
                ),
                {"ids": [row.id for row in rows if row.id not in held]},
            )
            for row, code in quarantined:
                await self._quarantine(conn, row, code)
        self._acknowledged.difference_update(row.id for row in rows)
        log.debug("outbox batch relayed", extra={"count": len(rows)})
        return len(rows)

    def _remember(self, ids: Iterable[int]) -> None:
        """Note rows Kafka acknowledged, until their mark commits. Bounded: an id whose
        mark committed while its commit raised (rare) is never selected again, and the
        set is dropped past a limit, at the worst costing one duplicate on the wire."""
        if len(self._acknowledged) > 100_000:
            self._acknowledged.clear()
        self._acknowledged.update(ids)

    async def _quarantine(self, conn: AsyncConnection, row: Any, code: str) -> None:
        """Set ``row`` aside with its reason, count it and audit it (by ids, never the
        payload, which stays in the row for an operator to inspect)."""
        await conn.execute(
            text("UPDATE outbox SET quarantined_at = now(), quarantine_reason = :r WHERE id = :i"),
            {"r": code, "i": row.id},
        )
        QUARANTINED.labels(row.topic, code).inc()
        log.error(
            "outbox row quarantined: the broker refused it for good",
            extra={"topic": row.topic, "error_code": code, "message_id": row.message_id},
        )
        # The audit package builds on this module, so it is imported where it is used.
        from medstream.audit import audit_message  # noqa: PLC0415

        inbound = row.headers.get(INBOUND_MESSAGE_ID_HEADER)
        await enqueue(
            conn,
            audit_message(
                actor="relay",
                action="outbox.quarantined",
                entity=row.message_id,
                message_id=inbound or row.message_id,
                correlation_id=inbound or row.message_id,
                outcome=AuditOutcome.SERIOUS_FAILURE,
                details={
                    "topic": row.topic,
                    "code": code,
                    "outbox_id": row.id,
                    "bytes": len(row.value),
                },
                dedupe_key=f"relay:{row.id}:quarantined",
            ),
        )

    async def run(
        self,
        stop: asyncio.Event,
        poll_interval_s: float = 0.2,
        wake: asyncio.Event | None = None,
    ) -> None:
        """Relay until ``stop`` is set: at once when this process commits outbox rows
        (``wake_on_commit``) or someone sets ``wake``, else every ``poll_interval_s``
        when idle (rows of other processes, and what a crash left)."""
        wake = wake or asyncio.Event()
        unlisten = wake_on_commit(self._engine, wake.set)
        stopping = asyncio.create_task(_set_when(stop, wake))
        failures = 0
        try:
            while not stop.is_set():
                wake.clear()
                try:
                    sent = await self.relay_once()
                    failures = 0
                except Exception as exc:  # noqa: BLE001
                    # Postgres or Kafka is restarting (asyncpg reports a server shutting
                    # down as a bare DBAPIError), or a row is locked: nothing was marked
                    # sent, so retry with backoff. A record the broker refuses for good
                    # never gets here (it is quarantined), so no single row can keep the
                    # relay retrying; the relay runs inside each service and must
                    # outlive any one failure.
                    failures += 1
                    log.warning(
                        "outbox relay failed; will retry",
                        extra={"attempt": failures, "error_class": type(exc).__name__},
                    )
                    await _wait(stop, min(10.0, poll_interval_s * 2 ** min(failures, 6)))
                    continue
                if sent == 0:
                    await _wait(wake, poll_interval_s)
        finally:
            stopping.cancel()
            unlisten()


async def _set_when(done: asyncio.Event, then: asyncio.Event) -> None:
    await done.wait()
    then.set()


async def _wait(flag: asyncio.Event, timeout_s: float) -> None:
    """Until ``flag`` is set or ``timeout_s`` has passed."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(flag.wait(), timeout=timeout_s)
