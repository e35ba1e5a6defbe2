"""Consuming with an exactly-once effect: raw records in, one outcome each, then commit.

``ExactlyOnceProcessor.process_batch`` is the one path: the records one fetch brought
for a partition run through a handler inside one PostgreSQL transaction, with their
inbox keys claimed in one statement and their outbox rows written in one round trip,
and one offset commit follows. It returns when the offsets may be committed (each
record processed, duplicate or dead-lettered) and raises ``RetryLater`` when they may
not, so the consumer rewinds and redelivers. A batch that fails is split in halves
until the one record at fault is retried or dead-lettered alone. Single-record
handlers (ingestion, results) run over the batch with a savepoint per record
(``per_record``); the model workers, deid and audit have batch handlers of their own.

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
from medstream.failures import ENVIRONMENT_ERRORS, is_data_error, is_lost_connection
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


class _Deferred:
    """A batch handler's answer for a record it leaves for the next fetch."""

    def __repr__(self) -> str:
        return "DEFERRED"


DEFERRED = _Deferred()

# A batch handler gets the records not yet processed and returns, for each in order,
# its messages (or Effects), the InvalidMessage that rejects it, or DEFERRED for a
# record it leaves for the next fetch (then every later record too): one model call
# for many patients.
BatchResult = Sequence[OutboundMessage] | Effects | InvalidMessage | _Deferred
BatchHandler = Callable[
    [AsyncConnection, Sequence[Received]],
    Awaitable[Sequence[BatchResult]],
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

    async def process_batch(
        self, records: Sequence[Received], batch_handler: BatchHandler | None = None
    ) -> list[Outcome]:
        """Handle one partition's fetched records, in order, in one transaction; return
        an outcome for each record that may commit (a prefix of ``records``: a batch
        handler may defer the rest to the next fetch), or raise RetryLater.

        ``batch_handler`` defaults to the processor's single-record handler run over the
        batch (each record in a savepoint). Duplicates are skipped by the inbox, claimed
        in one statement; outbox rows are written in one round trip; rejected records
        are dead-lettered after the commit and before the offsets commit. If the batch
        fails, it is split in two and each half retried, down to the one record at
        fault, which is retried or dead-lettered alone: its neighbours never wait
        behind it. An environment error (a server down) is retried forever.
        """
        chosen = batch_handler or self.record_handler()
        try:
            outcomes = await self._batch_once(records, chosen)
        except ENVIRONMENT_ERRORS as exc:
            await self._pause(_coordinates(records[0]), exc, count=False)
            raise RetryLater(type(exc).__name__) from None
        except RetryLater:
            raise
        except Exception as exc:  # noqa: BLE001  (a bug must not wedge the partition)
            if is_lost_connection(exc):
                await self._pause(_coordinates(records[0]), exc, count=False)
                raise RetryLater(type(exc).__name__) from None
            if len(records) == 1:
                return [await self._failed_alone(records[0], exc)]
            middle = len(records) // 2
            log.warning(
                "batch failed; splitting it",
                extra={"count": len(records), "topic": records[0].topic},
            )
            left = await self.process_batch(records[:middle], chosen)
            if len(left) < middle:  # the left half stopped early: keep the order
                return left
            try:
                right = await self.process_batch(records[middle:], chosen)
            except RetryLater:
                # What the left half did commits; the record that must be retried and
                # those after it are fetched again.
                return left
            return [*left, *right]
        for record in records[: len(outcomes)]:
            self._attempts.pop(_coordinates(record), None)
        return outcomes

    def record_handler(self, *, savepoints: bool = True) -> BatchHandler:
        """The processor's single-record handler as a batch handler (``per_record``)."""
        if self.handler is None:
            raise TypeError("this processor has no single-record handler; pass a batch handler")
        return per_record(self.handler, savepoints=savepoints)

    async def _failed_alone(self, record: Received, exc: Exception) -> Outcome:
        """The one record that broke its batch: retried, then dead-lettered."""
        coordinates = _coordinates(record)
        try:
            if is_data_error(exc):
                # PostgreSQL refused a value the message carried (NUL, bad encoding, too
                # long): retrying cannot help, so it is the message's fault.
                return await self._dead_letter(
                    record,
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
            outcome = await self._dead_letter(
                record,
                InvalidMessage(
                    "internal.unhandled_error",
                    f"Processing failed {attempt} times with {type(exc).__name__}; "
                    "the message was set aside so the partition can go on.",
                ),
            )
        except ENVIRONMENT_ERRORS as outage:
            await self._pause(coordinates, outage, count=False)
            raise RetryLater(type(outage).__name__) from None
        self._attempts.pop(coordinates, None)
        return outcome

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

    def _conflict(self) -> InvalidMessage:
        return InvalidMessage(
            f"{self.stage}.id_conflict",
            "The message id was already used by a message with different content; the "
            "first is kept, this one is set aside. Send a correction with a new message id.",
        )

    def _sort_batch(
        self, records: Sequence[Received]
    ) -> tuple[
        dict[int, Outcome], list[tuple[int, Received, InvalidMessage]], list[tuple[int, Received]]
    ]:
        """Before the database: records with unusable headers are rejected, and of the
        records sharing an id in this batch the first is the candidate, a later one
        its duplicate (or a conflict, if its content differs)."""
        outcomes: dict[int, Outcome] = {}
        rejected: list[tuple[int, Received, InvalidMessage]] = []
        first: dict[str, Received] = {}
        candidates: list[tuple[int, Received]] = []
        for index, record in enumerate(records):
            if record.header_problem is not None:
                error = InvalidMessage("envelope.bad_header", record.header_problem)
                rejected.append((index, record, error))
            elif record.message_id in first:
                if first[record.message_id].content_sha256 == record.content_sha256:
                    outcomes[index] = Outcome.DUPLICATE
                else:
                    rejected.append((index, record, self._conflict()))
            else:
                first[record.message_id] = record
                candidates.append((index, record))
        return outcomes, rejected, candidates

    async def _batch_once(
        self, records: Sequence[Received], batch_handler: BatchHandler
    ) -> list[Outcome]:
        outcomes, rejected, candidates = self._sort_batch(records)
        after_commit: list[AfterCommit] = []
        deferred_from: int | None = None
        async with self.engine.begin() as conn:
            seen = await outbox.seen_many(conn, self.group, [r for _, r in candidates])
            fresh = []
            for index, record in candidates:
                if seen[record.message_id] is Seen.SAME:
                    outcomes[index] = Outcome.DUPLICATE
                elif seen[record.message_id] is Seen.CONFLICT:
                    rejected.append((index, record, self._conflict()))
                else:
                    fresh.append((index, record))
            results = await batch_handler(conn, [record for _, record in fresh]) if fresh else []
            if len(results) != len(fresh):
                raise RuntimeError("the batch handler must return one result per record")
            accepted: list[tuple[int, Received, Effects]] = []
            for (index, record), result in zip(fresh, results, strict=True):
                if isinstance(result, _Deferred):
                    deferred_from = index if deferred_from is None else min(deferred_from, index)
                    continue
                if isinstance(result, InvalidMessage):
                    rejected.append((index, record, result))
                    continue
                effects = result if isinstance(result, Effects) else Effects(list(result))
                refusal = self._oversize(effects.messages)
                if refusal is not None:
                    rejected.append((index, record, refusal))
                    continue
                accepted.append((index, record, effects))
            claimed = await outbox.claim_many(
                conn, self.group, [r for _, r, _ in accepted], InboxOutcome.PROCESSED
            )
            messages: list[OutboundMessage] = []
            for index, record, effects in accepted:
                if record.message_id in claimed:
                    messages += effects.messages
                    after_commit += effects.after_commit
                    outcomes[index] = Outcome.PROCESSED
                    self.limiter.record_valid()
                # Claimed meanwhile by another consumer of the group (a rebalance).
                elif await outbox.seen(conn, self.group, record) is Seen.SAME:
                    outcomes[index] = Outcome.DUPLICATE
                else:
                    rejected.append((index, record, self._conflict()))
            await outbox.enqueue_many(conn, messages)
        await _run_after_commit(after_commit)
        # After the commit and before the offsets commit: each rejected record's dead
        # letter is acknowledged, then its inbox key is recorded. Records from the first
        # deferred one on are left for the next fetch, in order.
        end = len(records) if deferred_from is None else deferred_from
        for index, record, error in sorted(rejected, key=lambda r: r[0]):
            if index < end:
                outcomes[index] = await self._dead_letter(record, error)
        return [outcomes[i] for i in range(end)]

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


def _coordinates(record: Received) -> tuple[str, int, int]:
    return (record.topic, record.partition, record.offset)


# How long the single-record handlers may work on one batch before they leave its
# remaining records for the next fetch: the group's poll interval must never lapse
# while one batch holds the consumer.
BATCH_TIME_BUDGET_S = 60.0
# The largest batch a single-record handler gets (ingestion, results).
SINGLE_HANDLER_BATCH = 100


def per_record(
    handler: Handler, time_budget_s: float = BATCH_TIME_BUDGET_S, *, savepoints: bool = True
) -> BatchHandler:
    """A batch handler that runs a single-record handler over each record, each in a
    savepoint: a record the handler rejects (InvalidMessage) leaves no write behind,
    and its neighbours' writes commit. A handler that writes nothing itself (it only
    returns messages) may go without (``savepoints=False``: two round trips a record
    saved). Once ``time_budget_s`` has passed, the records left are deferred (the
    first record is always handled)."""

    async def handle(conn: AsyncConnection, records: Sequence[Received]) -> list[BatchResult]:
        started = time.monotonic()
        results: list[BatchResult] = []
        for record in records:
            if results and time.monotonic() - started > time_budget_s:
                results.append(DEFERRED)
                continue
            try:
                if savepoints:
                    async with conn.begin_nested():
                        results.append(await handler(conn, record))
                else:
                    results.append(await handler(conn, record))
            except InvalidMessage as error:
                results.append(error)
        return results

    return handle


OnOutcome = Callable[[Received, Outcome, float], None]

# Values at least this large have their content id derived off the event loop.
_DERIVE_INLINE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Subscription:
    """Topics one processor consumes, and how: always in batches of at most
    ``max_records`` fetched records, waiting at most ``max_wait_ms`` for the first.

    ``trusted`` is False for topics a producer outside MedStream writes (the inbound
    contract topics): their internal headers are ignored.
    """

    topics: tuple[str, ...]
    processor: ExactlyOnceProcessor
    batch_handler: BatchHandler
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
        max_records: int = SINGLE_HANDLER_BATCH,
        max_wait_ms: int = 200,
        savepoints: bool = True,
    ) -> None:
        """Consume ``topics`` with the processor's single-record handler, run over each
        fetched batch in one transaction (a savepoint per record); commit after the
        effects, else rewind. ``getmany`` returns as soon as records are there, so a
        batch costs no latency at low load."""
        self._check_dead_letters(topics)
        self.subscriptions.append(
            Subscription(
                tuple(topics),
                processor,
                batch_handler=processor.record_handler(savepoints=savepoints),
                derive_id=derive_id or {},
                trusted=trusted,
                on_outcome=on_outcome,
                max_records=max_records,
                max_wait_ms=max_wait_ms,
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
    if stop.is_set():  # shutting down: leave the batch to the next owner
        outcomes = None
    else:
        try:
            outcomes = await sub.processor.process_batch(received, sub.batch_handler)
        except RetryLater:
            outcomes = None
    if outcomes is None:
        retry_from = received[0].offset
    else:
        elapsed = time.perf_counter() - started
        for record, outcome in zip(received, outcomes, strict=False):
            _observe(sub, record, outcome, elapsed)
        if outcomes:
            done_until = received[len(outcomes) - 1].offset + 1
        if len(outcomes) < len(received):  # deferred: fetched again, in order
            retry_from = received[len(outcomes)].offset
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
