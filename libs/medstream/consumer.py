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
from medstream.deadletter import (
    DeadLetterLimiter,
    DeadLetterPublisher,
    DeadLetterRateExceeded,
    InvalidMessage,
)
from medstream.failures import ENVIRONMENT_ERRORS
from medstream.kafka import CONSUMER_DEFAULTS
from medstream.outbox import InboxOutcome, OutboundMessage
from medstream.received import ContentIdDeriver, Received
from medstream.settings import Settings

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
    handler: Handler
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
        handler: Handler,
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

    async def process(self, received: Received) -> Outcome:
        """Handle ``received``; return if its offset may commit, raise RetryLater if not."""
        coordinates = (received.topic, received.partition, received.offset)
        try:
            outcome = await self._attempt(received, coordinates)
        except ENVIRONMENT_ERRORS as exc:
            # Not the message's fault: retry it for as long as the outage lasts.
            await self._pause(coordinates, exc, count=False)
            raise RetryLater(type(exc).__name__) from None
        self._attempts.pop(coordinates, None)
        return outcome

    async def _attempt(self, received: Received, coordinates: tuple[str, int, int]) -> Outcome:
        try:
            return await self._process_once(received)
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

    async def _process_once(self, received: Received) -> Outcome:
        try:
            async with self.engine.begin() as conn:
                if not await outbox.claim(conn, self.group, received, InboxOutcome.PROCESSED):
                    return Outcome.DUPLICATE
                result = await self.handler(conn, received)
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
            await outbox.claim(conn, self.group, received, InboxOutcome.DEAD_LETTERED)
        return Outcome.DEAD_LETTERED

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
