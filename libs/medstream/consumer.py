"""Consuming with an exactly-once effect: raw records in, one outcome out, then commit.

``ExactlyOnceProcessor.process`` runs one record through a handler inside one
PostgreSQL transaction with its inbox key and outbox rows. It returns normally when
the offset may be committed (processed, duplicate or dead-lettered) and raises
``RetryLater`` when it may not, so the consumer rewinds and redelivers the record.

``ConsumerSet`` is the only way MedStream consumes. It reads raw records with aiokafka
and hands their bytes, unparsed, to the processor: no body or header is decoded by a
library on the way, so nothing a producer sends can fail before MedStream's own checks
run, and every failure becomes a dead letter with a code (docs/architecture.md lists
the outcome rules).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from prometheus_client import Counter
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
from medstream.failures import ENVIRONMENT_ERRORS, is_data_error
from medstream.kafka import make_consumer
from medstream.outbox import InboxOutcome, OutboundMessage, Seen
from medstream.received import (
    CORRELATION_ID_HEADER,
    INBOUND_MESSAGE_ID_HEADER,
    ContentIdDeriver,
    Received,
)
from medstream.settings import Settings
from medstream.topics import BY_NAME, dead_letter_topic, record_limit

log = logging.getLogger(__name__)

OUTCOMES = Counter("medstream_consumer_records_total", "Records by outcome", ["group", "outcome"])
ASSIGNMENTS = Counter(
    "medstream_consumer_assignments_total",
    "Partition assignments (the first at start, then one per rebalance)",
    ["group"],
)

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
# its messages (or Effects) or the InvalidMessage that rejects it: one model call for
# many patients.
BatchHandler = Callable[
    [AsyncConnection, Sequence[Received]],
    Awaitable[Sequence[Sequence[OutboundMessage] | Effects | InvalidMessage]],
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

    @property
    def stage(self) -> str:
        """The stage this processor's dead letters and audit events name."""
        return self.dead_letters.stage

    async def process(self, received: Received, handler: Handler | None = None) -> Outcome:
        """Handle ``received`` (with ``handler``, else the processor's own); return if its
        offset may commit, raise RetryLater if not."""
        coordinates = (received.topic, received.partition, received.offset)
        chosen = handler or self.handler
        if chosen is None:
            raise TypeError("this processor has no single-record handler; use process_batch")
        try:
            if received.header_problem is not None:
                outcome = await self._dead_letter(
                    received, InvalidMessage("envelope.bad_header", received.header_problem)
                )
            else:
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
            if is_data_error(exc):
                # PostgreSQL refused a value the message carried (NUL, bad encoding, too
                # long): retrying cannot help, so it is the message's fault.
                return await self._dead_letter(
                    received,
                    InvalidMessage(
                        "database.rejected_value",
                        f"PostgreSQL refused a value from this message ({type(exc).__name__}); "
                        "it holds a NUL byte, an invalid character or an overlong value.",
                    ),
                )
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

    def _oversize(self, messages: Sequence[OutboundMessage]) -> InvalidMessage | None:
        """Why one of ``messages`` would be refused by Kafka for its size, if one would:
        checked before the outbox, so the relay is never handed a record it cannot send."""
        for message in messages:
            size, limit = message.encoded_size(), record_limit(message.topic)
            if size > limit:
                return InvalidMessage(
                    f"{self.stage}.too_large_encoded",
                    f"Encoded for {message.topic}, the record is {size} bytes, over the "
                    f"topic's {limit}-byte limit; nothing was published.",
                )
        return None

    async def _enqueue(self, conn: AsyncConnection, messages: Sequence[OutboundMessage]) -> None:
        oversize = self._oversize(messages)
        if oversize is not None:
            raise oversize
        for message in messages:
            await outbox.enqueue(conn, message)

    async def _process_once(self, received: Received, handler: Handler) -> Outcome:
        effects = Effects()
        try:
            async with self.engine.begin() as conn:
                seen = await outbox.claim(conn, self.group, received, InboxOutcome.PROCESSED)
                if seen is Seen.NEW:
                    result = await handler(conn, received)
                    effects = result if isinstance(result, Effects) else Effects(list(result))
                    await self._enqueue(conn, effects.messages)
        except InvalidMessage as error:
            return await self._dead_letter(received, error)
        if seen is Seen.SAME:
            return Outcome.DUPLICATE
        if seen is Seen.CONFLICT:
            return await self._dead_letter(received, self._conflict())
        await _run_after_commit(effects.after_commit)
        self.limiter.record_valid()
        return Outcome.PROCESSED

    def _conflict(self) -> InvalidMessage:
        return InvalidMessage(
            f"{self.stage}.id_conflict",
            "The message id was already used by a message with different content; the "
            "first is kept, this one is set aside. Send a correction with a new message id.",
        )

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
        after_commit: list[AfterCommit] = []
        async with self.engine.begin() as conn:
            fresh = []
            for index, record in enumerate(records):
                if record.header_problem is not None:
                    error = InvalidMessage("envelope.bad_header", record.header_problem)
                    rejected.append((index, record, error))
                    continue
                seen = await outbox.seen(conn, self.group, record)
                if seen is Seen.SAME:
                    outcomes[index] = Outcome.DUPLICATE
                elif seen is Seen.CONFLICT:
                    rejected.append((index, record, self._conflict()))
                else:
                    fresh.append((index, record))
            results = await batch_handler(conn, [record for _, record in fresh]) if fresh else []
            if len(results) != len(fresh):
                raise RuntimeError("the batch handler must return one result per record")
            for (index, record), result in zip(fresh, results, strict=True):
                if isinstance(result, InvalidMessage):
                    rejected.append((index, record, result))
                    continue
                effects = result if isinstance(result, Effects) else Effects(list(result))
                refusal = self._oversize(effects.messages)
                if refusal is not None:
                    rejected.append((index, record, refusal))
                    continue
                seen = await outbox.claim(conn, self.group, record, InboxOutcome.PROCESSED)
                if seen is Seen.NEW:
                    await self._enqueue(conn, effects.messages)
                    after_commit += effects.after_commit
                    outcomes[index] = Outcome.PROCESSED
                    self.limiter.record_valid()
                elif seen is Seen.SAME:  # another consumer claimed it meanwhile (a rebalance)
                    outcomes[index] = Outcome.DUPLICATE
                else:
                    rejected.append((index, record, self._conflict()))
        await _run_after_commit(after_commit)
        # After the commit and before the offsets commit: each rejected record's dead
        # letter is acknowledged, then its inbox key is recorded.
        for index, record, error in rejected:
            outcomes[index] = await self._dead_letter(record, error)
        return [outcomes[i] for i in range(len(records))]

    async def _dead_letter(self, received: Received, error: InvalidMessage) -> Outcome:
        async with self.engine.begin() as conn:
            seen = await outbox.seen(conn, self.group, received)
            if seen is Seen.CONFLICT:
                # The id belongs to another message: this one is recorded under its own
                # key (the id and its content hash), so both have an outcome.
                received = received.as_conflict()
                seen = await outbox.seen(conn, self.group, received)
            if seen is Seen.SAME:
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
            if await outbox.claim(conn, self.group, received, InboxOutcome.DEAD_LETTERED) is (
                Seen.NEW
            ):
                await outbox.enqueue(conn, self._rejection_audit(received, error))
        return Outcome.DEAD_LETTERED

    def _rejection_audit(self, received: Received, error: InvalidMessage) -> OutboundMessage:
        details: dict[str, object] = {
            "topic": received.topic,
            "partition": received.partition,
            "offset": received.offset,
            "code": error.code,
            "dead_letter_topic": dead_letter_topic(received.topic),
        }
        if received.ignored_headers:
            details["ignored_headers"] = received.ignored_headers
        return audit_message(
            actor=self.stage,
            action="message.rejected",
            entity=received.message_id,
            # Downstream of ingestion, the inbound EHR message it came from.
            message_id=received.header(INBOUND_MESSAGE_ID_HEADER) or received.message_id,
            correlation_id=received.header(CORRELATION_ID_HEADER) or received.message_id,
            outcome=AuditOutcome.MINOR_FAILURE,
            details=details,
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


async def _run_after_commit(tasks: Sequence[AfterCommit]) -> None:
    for task in tasks:
        try:
            await task()
        except Exception as exc:  # noqa: BLE001  (caches must never undo a commit)
            log.warning("after-commit task failed", extra={"error_class": type(exc).__name__})


def _one_at_a_time(batch_handler: BatchHandler) -> Handler:
    """A single-record handler made from a batch handler (the fallback path)."""

    async def handle(
        conn: AsyncConnection, received: Received
    ) -> Sequence[OutboundMessage] | Effects:
        (result,) = await batch_handler(conn, [received])
        if isinstance(result, InvalidMessage):
            raise result
        return result

    return handle


OnOutcome = Callable[[Received, Outcome, float], None]

# Values at least this large have their content id derived off the event loop.
_DERIVE_INLINE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Subscription:
    """Topics one processor consumes, and how.

    ``trusted`` is False for topics a producer outside MedStream writes (the inbound
    contract topics): their internal headers are ignored. ``batch_handler`` makes it a
    micro-batch subscription; otherwise records are processed one by one, in order.
    """

    topics: tuple[str, ...]
    processor: ExactlyOnceProcessor
    batch_handler: BatchHandler | None = None
    derive_id: Mapping[str, ContentIdDeriver] = field(default_factory=dict)
    trusted: bool = True
    max_records: int = 50
    max_wait_ms: int = 200
    on_outcome: OnOutcome | None = None


class ConsumerSet:
    """The subscriptions of one process, each run by its own aiokafka consumer."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.subscriptions: list[Subscription] = []

    @staticmethod
    def _check_dead_letters(topics: Sequence[str]) -> None:
        """A registered topic must have its dead-letter topic registered too: a stage
        whose dead letters had nowhere to go would retry them forever."""
        for topic in topics:
            if topic in BY_NAME and dead_letter_topic(topic) not in BY_NAME:
                raise ValueError(f"topic {topic} has no dead-letter topic in the registry")

    def subscribe(
        self,
        *topics: str,
        processor: ExactlyOnceProcessor,
        derive_id: Mapping[str, ContentIdDeriver] | None = None,
        trusted: bool = True,
        on_outcome: OnOutcome | None = None,
    ) -> None:
        """Consume ``topics`` in the processor's group, one record at a time in order;
        commit after the effect, else rewind."""
        self._check_dead_letters(topics)
        self.subscriptions.append(
            Subscription(
                tuple(topics),
                processor,
                derive_id=derive_id or {},
                trusted=trusted,
                on_outcome=on_outcome,
            )
        )

    def subscribe_batch(
        self,
        *topics: str,
        processor: ExactlyOnceProcessor,
        batch_handler: BatchHandler,
        max_records: int,
        max_wait_ms: int,
        on_outcome: OnOutcome | None = None,
    ) -> None:
        """Consume in micro-batches of at most ``max_records``, waiting at most
        ``max_wait_ms`` to fill one: the dynamic-batching bounds. One batch is in flight
        at a time, so consumption pauses while a batch is being scored (backpressure),
        and the offsets commit only after the batch's results are durable."""
        self._check_dead_letters(topics)
        self.subscriptions.append(
            Subscription(
                tuple(topics),
                processor,
                batch_handler=batch_handler,
                max_records=max_records,
                max_wait_ms=max_wait_ms,
                on_outcome=on_outcome,
            )
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume every subscription until ``stop`` is set. A consumer that fails for
        a reason of its own raises here, so the process exits and is restarted."""
        tasks = [
            asyncio.create_task(_consume(self._settings, s, stop), name=s.processor.group)
            for s in self.subscriptions
        ]
        if not tasks:
            await stop.wait()
            return
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)


class _Assignments(ConsumerRebalanceListener):  # type: ignore[misc]
    """Counts and logs each assignment: one at start, and one more per rebalance, which
    a stage that blocks its event loop would cause (its group session expires)."""

    def __init__(self, group: str) -> None:
        self._group = group

    async def on_partitions_revoked(self, revoked: object) -> None:
        """Nothing to hand over: offsets are committed as soon as records are done."""

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        ASSIGNMENTS.labels(self._group).inc()
        log.info(
            "partitions assigned", extra={"consumer_group": self._group, "count": len(assigned)}
        )


async def _consume(settings: Settings, sub: Subscription, stop: asyncio.Event) -> None:
    group = sub.processor.group
    consumer = make_consumer(settings, group_id=group, max_poll_records=sub.max_records)
    consumer.subscribe(topics=list(sub.topics), listener=_Assignments(group))
    await consumer.start()
    try:
        while not stop.is_set():
            try:
                fetched = await consumer.getmany(
                    timeout_ms=sub.max_wait_ms, max_records=sub.max_records
                )
            except KafkaError as exc:
                log.warning(
                    "fetch failed; will retry",
                    extra={
                        "consumer_group": sub.processor.group,
                        "error_class": type(exc).__name__,
                    },
                )
                await asyncio.sleep(1.0)
                continue
            for tp, records in fetched.items():
                if records:
                    await _partition(consumer, sub, tp, records, stop)
    finally:
        await consumer.stop()


async def _received(sub: Subscription, record: object) -> Received:
    derive = sub.derive_id.get(getattr(record, "topic", ""))
    if derive is not None and len(getattr(record, "value", b"") or b"") >= _DERIVE_INLINE_BYTES:
        return await asyncio.to_thread(Received.from_record, record, derive, trusted=sub.trusted)
    return Received.from_record(record, derive, trusted=sub.trusted)


async def _partition(
    consumer: AIOKafkaConsumer,
    sub: Subscription,
    tp: TopicPartition,
    records: Sequence[object],
    stop: asyncio.Event,
) -> None:
    """Process one partition's fetched records in order, then commit past them. On
    RetryLater, commit what is done and rewind to the record that must be retried."""
    received = [await _received(sub, record) for record in records]
    done_until: int | None = None
    retry_from: int | None = None
    started = time.perf_counter()
    if sub.batch_handler is not None:
        try:
            outcomes = await sub.processor.process_batch(received, sub.batch_handler)
        except RetryLater:
            retry_from = received[0].offset
        else:
            elapsed = time.perf_counter() - started
            for record, outcome in zip(received, outcomes, strict=True):
                _observe(sub, record, outcome, elapsed)
            done_until = received[-1].offset + 1
    else:
        for record in received:
            if stop.is_set():
                retry_from = record.offset
                break
            started = time.perf_counter()
            try:
                outcome = await sub.processor.process(record)
            except RetryLater:
                retry_from = record.offset
                break
            _observe(sub, record, outcome, time.perf_counter() - started)
            done_until = record.offset + 1
    try:
        if done_until is not None:
            await consumer.commit({tp: OffsetAndMetadata(done_until, "")})
        if retry_from is not None:
            consumer.seek(tp, retry_from)
    except KafkaError as exc:
        # A rebalance took the partition: its new owner redelivers from the last commit,
        # and the inbox turns what was already done into duplicates.
        log.warning(
            "offset commit failed",
            extra={"topic": tp.topic, "partition": tp.partition, "error_class": type(exc).__name__},
        )


def _observe(sub: Subscription, record: Received, outcome: Outcome, seconds: float) -> None:
    OUTCOMES.labels(sub.processor.group, outcome.value).inc()
    if sub.on_outcome is not None:
        sub.on_outcome(record, outcome, seconds)
