"""Consuming with an exactly-once effect: inbox, handler, outbox, dead letters, commit.

``ExactlyOnceProcessor.process`` runs one message through a handler inside one
PostgreSQL transaction with its inbox key and outbox rows. It returns normally when
the offset may be committed (processed, duplicate or dead-lettered) and raises
``RetryLater`` when it may not, so the consumer rewinds and redelivers the message.
``subscribe`` wires a processor to a faststream broker with exactly that policy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from aiokafka import AIOKafkaProducer
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from medstream import outbox
from medstream.audit import audit_message
from medstream.deadletter import (
    DeadLetterLimiter,
    DeadLetterPublisher,
    DeadLetterRateExceeded,
    InvalidMessage,
)
from medstream.events import AuditOutcome
from medstream.failures import ENVIRONMENT_ERRORS
from medstream.kafka import CONSUMER_DEFAULTS
from medstream.outbox import InboxOutcome, OutboundMessage
from medstream.received import ContentIdDeriver, Received
from medstream.settings import Settings
from medstream.topics import dead_letter_topic

log = logging.getLogger(__name__)

AfterCommit = Callable[[], Awaitable[None]]


@dataclass
class Effects:
    """What a handler asks for besides its database writes: messages to emit through the
    outbox, and work to run once the transaction has committed (cache updates)."""

    messages: list[OutboundMessage] = field(default_factory=list)
    after_commit: list[AfterCommit] = field(default_factory=list)


# A handler makes its database effects on ``conn`` and returns the messages to emit
# (or Effects). It raises InvalidMessage for input that can never be processed.
Handler = Callable[[AsyncConnection, Received], Awaitable[Sequence[OutboundMessage] | Effects]]

# A batch handler gets the records not yet processed and returns, for each in order,
# its messages or the InvalidMessage that rejects it: one model call for many patients.
BatchHandler = Callable[
    [AsyncConnection, Sequence[Received]],
    Awaitable[Sequence[Sequence[OutboundMessage] | InvalidMessage]],
]


class RetryLater(Exception):
    """The offset must not be committed; the message is redelivered after a pause."""


class Outcome(StrEnum):
    """What happened to one message."""

    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead_lettered"


@dataclass
class ExactlyOnceProcessor:
    """Runs one consumer group's handler with an exactly-once effect."""

    engine: AsyncEngine
    group: str
    handler: Handler | None  # None for a batch-only consumer (see process_batch)
    dead_letters: DeadLetterPublisher
    limiter: DeadLetterLimiter
    max_attempts: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 10.0
    _attempts: dict[tuple[str, int, int], int] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        group: str,
        handler: Handler | None,
        stage: str,
    ) -> ExactlyOnceProcessor:
        """A processor whose dead letters name ``stage``, configured by ``MEDSTREAM_*``."""
        return cls(
            engine=engine,
            group=group,
            handler=handler,
            dead_letters=DeadLetterPublisher(producer, stage),
            limiter=DeadLetterLimiter.from_settings(settings),
            max_attempts=settings.max_processing_attempts,
        )

    async def process(self, received: Received, handler: Handler | None = None) -> Outcome:
        """Handle ``received`` (with ``handler``, else the processor's own); return if its
        offset may commit, raise RetryLater if not."""
        coordinates = (received.topic, received.partition, received.offset)
        chosen = handler or self.handler
        if chosen is None:
            raise TypeError("this processor has no single-record handler; use process_batch")
        try:
            outcome = await self._attempt(received, coordinates, chosen)
        except ENVIRONMENT_ERRORS as exc:
            # Not the message's fault: retry it for as long as the outage lasts.
            await self._pause(coordinates, exc, count=False)
            raise RetryLater(type(exc).__name__) from None
        self._attempts.pop(coordinates, None)
        return outcome

    async def _attempt(
        self, received: Received, coordinates: tuple[str, int, int], handler: Handler
    ) -> Outcome:
        try:
            return await self._process_once(received, handler)
        except RetryLater:
            raise
        except ENVIRONMENT_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001  (a bug must not wedge the partition)
            attempt = self._attempts.get(coordinates, 0) + 1
            if attempt < self.max_attempts:
                await self._pause(coordinates, exc, count=True)
                raise RetryLater(type(exc).__name__) from None
            return await self._dead_letter(
                received,
                InvalidMessage(
                    "internal.unhandled_error",
                    f"Processing failed {attempt} times with {type(exc).__name__}; "
                    "the message was set aside so the partition can go on.",
                ),
            )

    async def _process_once(self, received: Received, handler: Handler) -> Outcome:
        try:
            async with self.engine.begin() as conn:
                if not await outbox.claim(conn, self.group, received, InboxOutcome.PROCESSED):
                    return Outcome.DUPLICATE
                result = await handler(conn, received)
                effects = result if isinstance(result, Effects) else Effects(list(result))
                for message in effects.messages:
                    await outbox.enqueue(conn, message)
        except InvalidMessage as error:
            return await self._dead_letter(received, error)
        for task in effects.after_commit:
            try:
                await task()
            except Exception as exc:  # noqa: BLE001  (caches must never undo a commit)
                log.warning("after-commit task failed", extra={"error_class": type(exc).__name__})
        self.limiter.record_valid()
        return Outcome.PROCESSED

    async def process_batch(
        self, records: Sequence[Received], batch_handler: BatchHandler
    ) -> list[Outcome]:
        """Handle a micro-batch in one transaction; return once every offset may commit.

        Duplicates are skipped by the inbox; the batch handler runs once over the rest;
        rejected records are dead-lettered one by one after the commit and before the
        offsets commit. If the batch handler raises, the batch falls back to one record
        at a time, so a record that breaks the model cannot hold back its neighbours.
        """
        try:
            return await self._batch_once(records, batch_handler)
        except ENVIRONMENT_ERRORS as exc:
            await self._pause(
                (records[0].topic, records[0].partition, records[0].offset), exc, count=False
            )
            raise RetryLater(type(exc).__name__) from None
        except RetryLater:
            raise
        except Exception:  # noqa: BLE001  (isolate the record that broke the batch)
            log.warning(
                "batch failed; processing its records one by one",
                extra={"count": len(records), "topic": records[0].topic},
            )
            one = _one_at_a_time(batch_handler)
            return [await self.process(record, one) for record in records]

    async def _batch_once(
        self, records: Sequence[Received], batch_handler: BatchHandler
    ) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        rejected: list[tuple[int, Received, InvalidMessage]] = []
        async with self.engine.begin() as conn:
            fresh = []
            for index, record in enumerate(records):
                if await outbox.already_seen(conn, self.group, record.message_id):
                    outcomes[index] = Outcome.DUPLICATE
                else:
                    fresh.append((index, record))
            results = await batch_handler(conn, [record for _, record in fresh]) if fresh else []
            if len(results) != len(fresh):
                raise RuntimeError("the batch handler must return one result per record")
            for (index, record), result in zip(fresh, results, strict=True):
                if isinstance(result, InvalidMessage):
                    rejected.append((index, record, result))
                elif await outbox.claim(conn, self.group, record, InboxOutcome.PROCESSED):
                    for message in result:
                        await outbox.enqueue(conn, message)
                    outcomes[index] = Outcome.PROCESSED
                    self.limiter.record_valid()
                else:  # another consumer claimed it meanwhile (a rebalance)
                    outcomes[index] = Outcome.DUPLICATE
        # After the commit and before the offsets commit: each rejected record's dead
        # letter is acknowledged, then its inbox key is recorded.
        for index, record, error in rejected:
            outcomes[index] = await self._dead_letter(record, error)
        return [outcomes[i] for i in range(len(records))]

    async def _dead_letter(self, received: Received, error: InvalidMessage) -> Outcome:
        async with self.engine.begin() as conn:
            if await outbox.already_seen(conn, self.group, received.message_id):
                return Outcome.DUPLICATE
        try:
            self.limiter.admit_invalid()
        except DeadLetterRateExceeded as exc:
            log.error(str(exc), extra={"error_code": error.code, "topic": received.topic})  # noqa: TRY400
            await asyncio.sleep(self.max_backoff_s)
            raise RetryLater("dead-letter rate exceeded") from None
        # The dead letter is acknowledged before the inbox records it and the offset
        # commits; a crash in between dead-letters the message again, with the same
        # original.* headers, never loses it.
        await self.dead_letters.publish(received, error)
        async with self.engine.begin() as conn:
            if await outbox.claim(conn, self.group, received, InboxOutcome.DEAD_LETTERED):
                await outbox.enqueue(conn, self._rejection_audit(received, error))
        return Outcome.DEAD_LETTERED

    def _rejection_audit(self, received: Received, error: InvalidMessage) -> OutboundMessage:
        return audit_message(
            actor=self.dead_letters.stage,
            action="message.rejected",
            entity=received.message_id,
            # Downstream of ingestion, the inbound EHR message it came from.
            message_id=received.header("inbound-message-id") or received.message_id,
            correlation_id=received.header("correlation-id") or received.message_id,
            outcome=AuditOutcome.MINOR_FAILURE,
            details={
                "topic": received.topic,
                "partition": received.partition,
                "offset": received.offset,
                "code": error.code,
                "dead_letter_topic": dead_letter_topic(received.topic),
            },
            dedupe_key=f"{self.group}:{received.message_id}:rejected",
        )

    async def _pause(
        self, coordinates: tuple[str, int, int], exc: BaseException, *, count: bool
    ) -> None:
        attempt = self._attempts.get(coordinates, 0) + 1
        if count:
            self._attempts[coordinates] = attempt
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** min(attempt - 1, 10))
        log.warning(
            "processing failed; will retry",
            extra={
                "topic": coordinates[0],
                "partition": coordinates[1],
                "offset": coordinates[2],
                "attempt": attempt,
                "error_class": type(exc).__name__,
            },
        )
        await asyncio.sleep(delay)


def _one_at_a_time(batch_handler: BatchHandler) -> Handler:
    """A single-record handler made from a batch handler (the fallback path)."""

    async def handle(conn: AsyncConnection, received: Received) -> Sequence[OutboundMessage]:
        (result,) = await batch_handler(conn, [received])
        if isinstance(result, InvalidMessage):
            raise result
        return result

    return handle


def subscribe(
    broker: KafkaBroker,
    *topics: str,
    processor: ExactlyOnceProcessor,
    derive_id: ContentIdDeriver | None = None,
    on_outcome: Callable[[Received, Outcome, float], None] | None = None,
) -> None:
    """Consume ``topics`` in the processor's group: commit after the effect, else rewind.

    ``NACK_ON_ERROR`` seeks back to the message when ``process`` raises RetryLater, so
    no later offset can be committed past it. faststream's Kafka subscriber fetches one
    record at a time, so a commit covers exactly the messages already processed.
    """
    options = {k: v for k, v in CONSUMER_DEFAULTS.items() if k != "enable_auto_commit"}

    async def handle(message: KafkaMessage) -> None:
        started = time.perf_counter()
        received = Received.from_record(message.raw_message, derive_id)
        outcome = await processor.process(received)
        if on_outcome is not None:
            on_outcome(received, outcome, time.perf_counter() - started)

    subscriber = broker.subscriber(
        *topics,
        group_id=processor.group,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        **options,
    )
    subscriber(handle)


def subscribe_batch(
    broker: KafkaBroker,
    *topics: str,
    processor: ExactlyOnceProcessor,
    batch_handler: BatchHandler,
    max_records: int,
    max_wait_ms: int,
    on_batch: Callable[[list[Outcome], float], None] | None = None,
) -> None:
    """Consume in micro-batches of at most ``max_records``, waiting at most
    ``max_wait_ms`` to fill one: the dynamic-batching bounds. One batch is in flight at
    a time, so consumption pauses while a batch is being scored (backpressure), and the
    offsets commit only after the batch's results are durable."""
    options = {k: v for k, v in CONSUMER_DEFAULTS.items() if k != "enable_auto_commit"}

    async def handle(message: KafkaMessage) -> None:
        started = time.perf_counter()
        records = [Received.from_record(record) for record in message.raw_message]
        outcomes = await processor.process_batch(records, batch_handler)
        if on_batch is not None:
            on_batch(outcomes, time.perf_counter() - started)

    subscriber = broker.subscriber(
        *topics,
        group_id=processor.group,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch=True,
        max_records=max_records,
        batch_timeout_ms=max_wait_ms,
        **options,
    )
    subscriber(handle)
