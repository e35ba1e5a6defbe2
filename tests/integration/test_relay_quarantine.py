"""Proof: a record the broker refuses for good is quarantined with its reason, audited
and counted, and the outbox keeps flowing around it, on the same producer."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream import outbox
from medstream.kafka import ensure_topics, make_producer
from medstream.outbox import OutboundMessage, OutboxRelay
from medstream.settings import Settings
from medstream.topics import Topic

from .test_crash_between_commits import read_all


async def rows(engine: AsyncEngine, ids: list[str]) -> dict[str, dict[str, object]]:
    async with engine.connect() as conn:
        found = await conn.execute(
            text(
                "SELECT message_id, sent_at, quarantined_at, quarantine_reason FROM outbox"
                " WHERE message_id = ANY(:ids)"
            ),
            {"ids": ids},
        )
        return {row.message_id: row._asdict() for row in found}


async def test_a_refused_record_is_quarantined_and_the_relay_goes_on(
    settings: Settings, engine: AsyncEngine, unique: Callable[[str], str]
) -> None:
    small, flowing = unique("proof.small"), unique("proof.flow")
    await ensure_topics(
        settings,
        [
            Topic(small, "test", "application/octet-stream", 1, 3_600_000,
                  config={"max.message.bytes": "4096"}),
            Topic(flowing, "test", "application/octet-stream", 1, 3_600_000),
        ],
    )  # fmt: skip
    messages = [
        OutboundMessage(flowing, b"before", f"{flowing}-a"),
        # Random bytes: compression cannot shrink them under the topic's limit.
        OutboundMessage(
            small, os.urandom(8192), f"{small}-big", headers={"inbound-message-id": "in-1"}
        ),
        OutboundMessage(flowing, b"after", f"{flowing}-c"),
    ]
    async with engine.begin() as conn:
        for message in messages:
            await outbox.enqueue(conn, message)
    ids = [m.message_id for m in messages]

    producer = make_producer(settings)
    await producer.start()
    try:
        relay = OutboxRelay(engine, producer, batch_size=50)
        for _ in range(60):  # the stack's own relay may take some rows: both share the work
            await relay.relay_once()
            state = await rows(engine, ids)
            if all(r["sent_at"] or r["quarantined_at"] for r in state.values()):
                break
            await asyncio.sleep(0.5)
        big = state[f"{small}-big"]
        assert big["quarantined_at"] is not None
        assert big["sent_at"] is None
        assert big["quarantine_reason"] == "kafka.record_too_large"
        assert state[f"{flowing}-a"]["sent_at"] is not None
        assert state[f"{flowing}-c"]["sent_at"] is not None

        # The same producer still sends: the refusal left no gap in its sequence numbers.
        async with engine.begin() as conn:
            await outbox.enqueue(conn, OutboundMessage(flowing, b"later", f"{flowing}-d"))
        for _ in range(60):
            await relay.relay_once()
            if (await rows(engine, [f"{flowing}-d"]))[f"{flowing}-d"]["sent_at"]:
                break
            await asyncio.sleep(0.5)
        assert (await rows(engine, [f"{flowing}-d"]))[f"{flowing}-d"]["sent_at"] is not None
    finally:
        await producer.stop()

    delivered = await read_all(settings, flowing, expect=3)
    assert sorted(r.value for r in delivered) == [b"after", b"before", b"later"]
    # Audited under the inbound message id, by the running audit service.
    audit = None
    for _ in range(60):
        async with engine.connect() as conn:
            audit = (
                await conn.execute(
                    text(
                        "SELECT message_id, resource FROM audit_event"
                        " WHERE action = 'outbox.quarantined' AND entity = :e"
                    ),
                    {"e": f"{small}-big"},
                )
            ).first()
        if audit is not None:
            break
        await asyncio.sleep(0.5)
    assert audit is not None, "the quarantine was not audited"
    assert audit.message_id == "in-1"
    assert "kafka.record_too_large" in json.dumps(audit.resource)


async def test_rows_kafka_acknowledged_are_not_sent_again_when_their_mark_fails(
    settings: Settings, engine: AsyncEngine, unique: Callable[[str], str]
) -> None:
    """PostgreSQL goes away between Kafka's acknowledgement and the "sent" mark: the
    relay marks those rows at its next pass and does not publish them a second time
    (the restart test saw results published twice on ehr.outbound.fhir)."""
    topic = unique("proof.mark")
    await ensure_topics(settings, [Topic(topic, "test", "application/octet-stream", 1, 3_600_000)])
    messages = [OutboundMessage(topic, f"m{i}".encode(), f"{topic}-{i}") for i in range(5)]
    async with engine.begin() as conn:
        await outbox.enqueue_many(conn, messages)
    ids = [m.message_id for m in messages]

    def fail_the_mark(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.startswith("UPDATE outbox SET sent_at"):
            raise OperationalError(statement, {}, ConnectionError("simulated outage"))

    producer = make_producer(settings)
    await producer.start()
    try:
        relay = OutboxRelay(engine, producer, batch_size=50)
        event.listen(engine.sync_engine, "before_cursor_execute", fail_the_mark)
        try:
            with pytest.raises(OperationalError):
                await relay.relay_once()
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", fail_the_mark)
        assert not any(r["sent_at"] for r in (await rows(engine, ids)).values())
        assert await relay.relay_once() >= len(messages)  # other unsent rows may come too
        assert all(r["sent_at"] for r in (await rows(engine, ids)).values())
    finally:
        await producer.stop()
    delivered = await read_all(settings, topic, expect=len(messages))
    assert sorted(r.value for r in delivered) == sorted(m.value for m in messages)


async def test_an_operator_lists_a_quarantined_row_and_releases_it_once_fixed(
    settings: Settings,
    engine: AsyncEngine,
    admin_engine: AsyncEngine,
    unique: Callable[[str], str],
) -> None:
    """`medstream db quarantined` shows the row without its payload; after the topic's
    limit is raised, `medstream db release` sends it, once."""
    from medstream.platform.quarantine import quarantined, release  # noqa: PLC0415

    small = unique("proof.release")
    limited = Topic(small, "test", "application/octet-stream", 1, 3_600_000,
                    config={"max.message.bytes": "4096"})  # fmt: skip
    await ensure_topics(settings, [limited])
    payload = os.urandom(8192)
    async with engine.begin() as conn:
        await outbox.enqueue(conn, OutboundMessage(small, payload, f"{small}-big"))
    producer = make_producer(settings)
    await producer.start()
    try:
        relay = OutboxRelay(engine, producer, batch_size=50)
        for _ in range(60):
            await relay.relay_once()
            if (await rows(engine, [f"{small}-big"]))[f"{small}-big"]["quarantined_at"]:
                break
            await asyncio.sleep(0.5)
        listed, total = await quarantined(admin_engine, topic=small)
        assert total == 1
        [row] = listed
        assert (row.message_id, row.topic, row.reason) == (
            f"{small}-big",
            small,
            "kafka.record_too_large",
        )
        assert row.size == len(payload)
        assert not hasattr(row, "value")  # the listing never carries a payload

        with pytest.raises(ValueError, match="name the rows"):
            await release(admin_engine)
        assert await release(admin_engine, [row.id + 10**12]) == []  # no such row
        # The cause fixed: the topic now takes a record of that size.
        await ensure_topics(
            settings, [Topic(small, "test", "application/octet-stream", 1, 3_600_000,
                             config={"max.message.bytes": "65536"})]
        )  # fmt: skip
        assert await release(admin_engine, [row.id], topic=small) == [row.id]
        assert await release(admin_engine, [row.id]) == []  # released once
        for _ in range(60):
            await relay.relay_once()
            if (await rows(engine, [f"{small}-big"]))[f"{small}-big"]["sent_at"]:
                break
            await asyncio.sleep(0.5)
        state = (await rows(engine, [f"{small}-big"]))[f"{small}-big"]
        assert state["sent_at"] is not None
        assert state["quarantined_at"] is None
        assert (await quarantined(admin_engine, topic=small))[1] == 0
    finally:
        await producer.stop()
    delivered = await read_all(settings, small, expect=1)
    assert [r.value for r in delivered] == [payload]
