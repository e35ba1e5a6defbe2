"""Micro-batches keep the exactly-once guarantees: one effect per valid record, one dead
letter per invalid one, duplicates skipped, and offsets committed to the end."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from aiokafka.structs import TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from medstream.consumer import ConsumerSet, ExactlyOnceProcessor, Outcome
from medstream.deadletter import InvalidMessage
from medstream.kafka import make_consumer, make_producer
from medstream.outbox import OutboundMessage
from medstream.received import Received
from medstream.settings import Settings

from .conftest import create_topics, running
from .test_crash_between_commits import effects, read_all, wait_for

RECORDS = 60
INVALID = {7, 23, 41}


async def test_micro_batches_are_exactly_once(
    settings: Settings,
    engine: AsyncEngine,
    proof_table: str,
    unique: Callable[[str], str],
) -> None:
    source, group = unique("proof.batch.in"), unique("proof-batch")
    await create_topics(settings, source, partitions=3)
    batch_sizes: list[int] = []
    outcomes: Counter[Outcome] = Counter()

    async def score(
        conn: AsyncConnection, records: Sequence[Received]
    ) -> list[Sequence[OutboundMessage] | InvalidMessage]:
        batch_sizes.append(len(records))
        results: list[Sequence[OutboundMessage] | InvalidMessage] = []
        for record in records:
            if record.value.startswith(b"BAD"):
                results.append(InvalidMessage("proof.bad", "Marked bad by the test."))
                continue
            await conn.execute(
                text("INSERT INTO proof_effect (consumer_group, message_id) VALUES (:g, :m)"),
                {"g": group, "m": record.message_id},
            )
            results.append([])
        return results

    producer = make_producer(settings)
    await producer.start()
    try:
        for i in range(RECORDS):
            value = b"BAD" if i in INVALID else f"ok-{i}".encode()
            await producer.send(
                source,
                value=value,
                key=f"p{i % 9}".encode(),
                headers=[("message-id", f"{group}-{i}".encode())],
            )
        # A redelivered duplicate of record 0, as an EHR retry would send it.
        await producer.send_and_wait(
            source, value=b"ok-0", key=b"p0", headers=[("message-id", f"{group}-0".encode())]
        )
        processor = ExactlyOnceProcessor.from_settings(
            settings,
            engine=engine,
            producer=producer,
            group=group,
            handler=None,  # type: ignore[arg-type]
            stage="proof",
        )
        consumers = ConsumerSet(settings)
        consumers.subscribe_batch(
            source,
            processor=processor,
            batch_handler=score,
            max_records=16,
            max_wait_ms=300,
            on_outcome=lambda _, outcome, __: outcomes.update([outcome]),
        )
        async with running(consumers):
            await wait_for(lambda: sum(outcomes.values()) == RECORDS + 1, 60, "every record")
    finally:
        await producer.stop()

    assert outcomes == {
        Outcome.PROCESSED: RECORDS - len(INVALID),
        Outcome.DEAD_LETTERED: len(INVALID),
        Outcome.DUPLICATE: 1,
    }
    assert max(batch_sizes) > 1, "records were never batched"
    assert max(batch_sizes) <= 16
    done = await effects(engine, group)
    assert set(done) == {f"{group}-{i}" for i in range(RECORDS) if i not in INVALID}
    assert max(done.values()) == 1
    dead = await read_all(settings, f"{source}.dlt", expect=len(INVALID))
    assert sorted(dict(r.headers)["message-id"].decode() for r in dead) == sorted(
        f"{group}-{i}" for i in INVALID
    )
    assert all(dict(r.headers)["error.code"] == b"proof.bad" for r in dead)
    consumer = make_consumer(settings, group_id=group)
    await consumer.start()
    try:
        committed = [await consumer.committed(TopicPartition(source, p)) for p in range(3)]
        ends = await consumer.end_offsets([TopicPartition(source, p) for p in range(3)])
    finally:
        await consumer.stop()
    assert committed == [ends[TopicPartition(source, p)] for p in range(3)]
