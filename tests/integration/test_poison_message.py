"""Proof: a poison message lands in the dead-letter topic with its headers, and the
partition goes on. A handler bug on one message does the same after bounded retries."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aiokafka.structs import TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from medstream.consumer import ConsumerSet, ExactlyOnceProcessor, Handler, Outcome
from medstream.deadletter import InvalidMessage
from medstream.kafka import make_consumer, make_producer
from medstream.outbox import OutboundMessage
from medstream.received import Received
from medstream.settings import Settings

from .conftest import create_topics, running
from .test_crash_between_commits import read_all, wait_for

MESSAGES = [b"good-1", b"POISON raw \xff bytes", b"good-2", b"BUG", b"good-3"]


async def consume(
    settings: Settings,
    engine: AsyncEngine,
    source: str,
    group: str,
    handler: Handler,
    messages: list[tuple[bytes, list[tuple[str, bytes]]]],
) -> dict[str, Outcome]:
    """Produce ``messages`` to ``source``, run a real subscriber until each has an
    outcome, and return the outcomes by message id."""
    producer = make_producer(settings)
    await producer.start()
    outcomes: dict[str, Outcome] = {}
    try:
        for value, headers in messages:
            await producer.send_and_wait(source, value=value, key=b"patient-1", headers=headers)
        processor = ExactlyOnceProcessor.from_settings(
            settings, engine=engine, producer=producer, group=group, handler=handler, stage="proof"
        )
        processor.backoff_s = 0.05
        consumers = ConsumerSet(settings)
        consumers.subscribe(
            source,
            processor=processor,
            on_outcome=lambda r, o, _: outcomes.__setitem__(r.message_id, o),
        )
        async with running(consumers):
            await wait_for(lambda: len(outcomes) == len(messages), 60, "every outcome")
    finally:
        await producer.stop()
    return outcomes


async def test_poison_goes_to_dead_letter_and_the_partition_goes_on(
    settings: Settings,
    engine: AsyncEngine,
    proof_table: str,
    unique: Callable[[str], str],
) -> None:
    source, group = unique("proof.poison.in"), unique("proof-poison")
    await create_topics(settings, source, partitions=1)

    async def handle(conn: AsyncConnection, received: Received) -> Sequence[OutboundMessage]:
        if received.value.startswith(b"POISON"):
            raise InvalidMessage("proof.poison", "The message is marked as poison.")
        if received.value == b"BUG":
            raise KeyError("a handler bug that this one message triggers")
        await conn.execute(
            text("INSERT INTO proof_effect (consumer_group, message_id) VALUES (:g, :m)"),
            {"g": group, "m": received.message_id},
        )
        return []

    outcomes = await consume(
        settings,
        engine,
        source,
        group,
        handle,
        [
            (value, [("message-id", f"{group}-{i}".encode()), ("source-system", b"epic")])
            for i, value in enumerate(MESSAGES)
        ],
    )

    assert [outcomes[f"{group}-{i}"] for i in range(5)] == [
        Outcome.PROCESSED,
        Outcome.DEAD_LETTERED,
        Outcome.PROCESSED,
        Outcome.DEAD_LETTERED,
        Outcome.PROCESSED,
    ]

    dead = await read_all(settings, f"{source}.dlt", expect=2)
    assert len(dead) == 2
    poison, bug = sorted(dead, key=lambda r: int(dict(r.headers)["original.offset"]))
    assert poison.value == MESSAGES[1], "the original bytes are kept unchanged"
    assert poison.key == b"patient-1"
    headers = {k: v.decode() for k, v in poison.headers}
    assert headers["error.code"] == "proof.poison"
    assert headers["error.stage"] == "proof"
    assert headers["error.class"] == "InvalidMessage"
    assert headers["error.message"] == "The message is marked as poison."
    assert headers["original.topic"] == source
    assert headers["original.partition"] == "0"
    assert headers["original.offset"] == "1"
    assert int(headers["original.timestamp"]) > 0
    assert headers["source-system"] == "epic"
    bug_headers = {k: v.decode() for k, v in bug.headers}
    assert bug_headers["error.code"] == "internal.unhandled_error"
    assert "KeyError" in bug_headers["error.message"]
    assert "handler bug" not in bug_headers["error.message"], "exception text never leaves"

    # The partition went on: the group committed past every message.
    consumer = make_consumer(settings, group_id=group)
    await consumer.start()
    try:
        committed = await consumer.committed(TopicPartition(source, 0))
    finally:
        await consumer.stop()
    assert committed == len(MESSAGES)

    async with engine.connect() as conn:
        rows = dict(
            (
                await conn.execute(
                    text("SELECT message_id, outcome FROM inbox WHERE consumer_group = :g"),
                    {"g": group},
                )
            ).all()
        )
    assert rows[f"{group}-1"] == "dead_lettered"
    assert rows[f"{group}-3"] == "dead_lettered"
    assert rows[f"{group}-0"] == "processed"


async def test_a_redelivered_dead_letter_is_not_dead_lettered_twice(
    settings: Settings,
    engine: AsyncEngine,
    unique: Callable[[str], str],
) -> None:
    source, group = unique("proof.poison.again"), unique("proof-poison-again")
    await create_topics(settings, source, partitions=1)

    async def reject(conn: AsyncConnection, received: Received) -> Sequence[OutboundMessage]:
        raise InvalidMessage("proof.poison", "Always invalid.")

    producer = make_producer(settings)
    await producer.start()
    try:
        processor = ExactlyOnceProcessor.from_settings(
            settings, engine=engine, producer=producer, group=group, handler=reject, stage="proof"
        )
        received = Received(
            topic=source,
            partition=0,
            offset=0,
            timestamp=1,
            key=None,
            value=b"x",
            headers=(),
            message_id=f"{group}-once",
        )
        assert await processor.process_batch([received]) == [Outcome.DEAD_LETTERED]
        assert await processor.process_batch([received]) == [Outcome.DUPLICATE]
    finally:
        await producer.stop()
    assert len(await read_all(settings, f"{source}.dlt", expect=1)) == 1


async def test_a_20_mb_radiograph_sized_message_is_accepted_and_can_be_dead_lettered(
    settings: Settings,
    engine: AsyncEngine,
    unique: Callable[[str], str],
) -> None:
    """Kafka's 1 MB defaults would refuse a DICOM chest film; the registry raises them."""
    source, group = unique("proof.large"), unique("proof-large")
    await create_topics(settings, source, partitions=1)
    big = bytes(range(256)) * (20 * 1024 * 1024 // 256)

    async def reject(conn: AsyncConnection, received: Received) -> Sequence[OutboundMessage]:
        raise InvalidMessage("proof.too_large", "Larger than this test allows.")

    outcomes = await consume(
        settings, engine, source, group, reject, [(big, [("message-id", b"big-1")])]
    )
    assert outcomes["big-1"] is Outcome.DEAD_LETTERED
    (dead,) = await read_all(settings, f"{source}.dlt", expect=1)
    assert dead.value == big
