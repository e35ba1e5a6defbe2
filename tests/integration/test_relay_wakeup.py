"""The in-process relay publishes a committed outbox row at once, not at its next poll,
and a rolled-back transaction does not wake it (real PostgreSQL and Kafka)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream import outbox
from medstream.failures import is_lost_connection
from medstream.kafka import ensure_topics, make_producer
from medstream.outbox import OutboundMessage, OutboxRelay
from medstream.settings import Settings
from medstream.topics import Topic

POLL_S = 60.0  # far longer than the test waits: only a wake-up can publish in time


async def sent(engine: AsyncEngine, message_id: str) -> bool:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT sent_at FROM outbox WHERE message_id = :m"), {"m": message_id}
            )
        ).first()
    return row is not None and row.sent_at is not None


async def test_a_commit_wakes_the_relay_and_a_rollback_does_not(
    settings: Settings, engine: AsyncEngine, unique: Callable[[str], str]
) -> None:
    topic = unique("proof.wake")
    await ensure_topics(settings, [Topic(topic, "test", "application/octet-stream", 1, 3_600_000)])
    producer = make_producer(settings)
    await producer.start()
    relay = OutboxRelay(engine, producer, batch_size=50)
    calls = 0
    relay_once = relay.relay_once

    async def counted() -> int:
        nonlocal calls
        calls += 1
        return await relay_once()

    relay.relay_once = counted  # type: ignore[method-assign]
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop, poll_interval_s=POLL_S))
    try:
        await asyncio.sleep(1.0)  # the first pass finds nothing and the relay waits
        idle_calls = calls
        assert idle_calls >= 1

        # Rolled back: nothing to publish, and no wake-up.
        async with engine.connect() as conn:
            transaction = await conn.begin()
            await outbox.enqueue(conn, OutboundMessage(topic, b"never", f"{topic}-rolled-back"))
            await transaction.rollback()
        await asyncio.sleep(1.0)
        assert calls == idle_calls

        # Committed: published long before the next poll.
        began = time.monotonic()
        async with engine.begin() as conn:
            await outbox.enqueue(conn, OutboundMessage(topic, b"now", f"{topic}-committed"))
        while not await sent(engine, f"{topic}-committed"):
            assert time.monotonic() - began < 10, "the relay was not woken by the commit"
            await asyncio.sleep(0.05)
        assert calls > idle_calls
        assert not await sent(engine, f"{topic}-rolled-back")
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=30)
        await producer.stop()


async def lose_the_connection_mid_transaction(engine: AsyncEngine, topic: str) -> None:
    """Enqueue a row, then have the server end the session before the commit."""
    async with engine.begin() as conn:
        await outbox.enqueue(conn, OutboundMessage(topic, b"x", f"{topic}-1"))
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with engine.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        await conn.execute(text("SELECT 1"))


async def test_a_connection_lost_mid_transaction_still_raises_the_environment_error(
    settings: Settings, engine: AsyncEngine, unique: Callable[[str], str]
) -> None:
    """With the relay listening, a transaction whose server connection dies reports
    the disconnect (an environment error the processor retries), not an error of the
    listener's own (which the processor would count against the record)."""
    topic = unique("proof.lost")
    stop = asyncio.Event()
    producer = make_producer(settings)
    await producer.start()
    running = asyncio.create_task(OutboxRelay(engine, producer, 50).run(stop, POLL_S))
    try:
        await asyncio.sleep(0.5)
        with pytest.raises(DBAPIError) as raised:
            await lose_the_connection_mid_transaction(engine, topic)
        # The disconnect itself, not the listener's PendingRollbackError; the processor
        # treats it as the environment's fault and retries.
        assert raised.value.connection_invalidated
        assert is_lost_connection(raised.value)
        assert not await sent(engine, f"{topic}-1")
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=30)
        await producer.stop()
