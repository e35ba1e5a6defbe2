"""Each service relays its own outbox rows, and only those: row level security on
``outbox.producer`` hides every other role's rows (identified payloads among them)
from a service's role, and refuses a row written in another role's name. Two relays
share rows and publish each once."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from medstream.kafka import make_producer
from medstream.outbox import MESSAGE_ID_HEADER, OutboundMessage, OutboxRelay, enqueue, enqueue_many
from medstream.platform.secrets import role_url
from medstream.settings import Settings

from .conftest import create_topics
from .test_crash_between_commits import read_all
from .test_postgres_roles import connect

ROWS = 300


@pytest.fixture
async def role_engines(settings: Settings) -> AsyncIterator[dict[str, AsyncEngine]]:
    engines = {
        principal: create_async_engine(role_url(settings, principal), hide_parameters=True)
        for principal in ("ingestion", "deid", "audit")
    }
    yield engines
    for engine in engines.values():
        await engine.dispose()


def _message(topic: str, i: int) -> OutboundMessage:
    return OutboundMessage(
        topic=topic,
        value=f"v{i}".encode(),
        key=f"k{i % 3}".encode(),
        message_id=f"{topic}-{i}",
        headers={"source-system": "test"},
    )


async def _unsent(engine: AsyncEngine, topic: str) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            text("SELECT count(*) FROM outbox WHERE topic = :t AND sent_at IS NULL"), {"t": topic}
        )
    return int(count or 0)


async def test_a_role_sees_and_relays_only_its_own_rows(
    settings: Settings,
    engine: AsyncEngine,
    role_engines: dict[str, AsyncEngine],
    unique: Callable[[str], str],
) -> None:
    """ingestion's rows are invisible to deid's role, so deid's relay never sends one.
    (The stack's own ingestion, if it runs, may take them: its Kafka principal may not
    write a test topic, so it quarantines them; either way none is ever sent by deid.)"""
    topic = unique("proof.owned")
    await create_topics(settings, topic)
    async with role_engines["ingestion"].begin() as conn:
        for i in range(10):
            await enqueue(conn, _message(topic, i))

    async def visible(principal: str) -> int:
        async with role_engines[principal].connect() as conn:
            count = await conn.scalar(
                text("SELECT count(*) FROM outbox WHERE topic = :t"), {"t": topic}
            )
        return int(count or 0)

    assert await visible("ingestion") == 10
    assert await visible("deid") == 0
    assert await visible("audit") == 0
    producer = make_producer(settings)  # the operator's: Kafka rights are not the point
    await producer.start()
    try:
        relay = OutboxRelay(role_engines["deid"], producer)
        for _ in range(20):  # deid's own backlog, if any, then nothing
            if not await relay.relay_once():
                break
    finally:
        await producer.stop()
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT producer, sent_at FROM outbox WHERE topic = :t"), {"t": topic}
            )
        ).all()
    assert len(rows) == 10  # the operator role sees every row
    assert {producer for producer, _ in rows} == {"medstream_ingestion"}
    assert all(sent_at is None for _, sent_at in rows), "deid's relay sent ingestion's rows"


async def test_a_row_in_another_roles_name_is_refused(settings: Settings) -> None:
    connection = await connect(settings, "deid")
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await connection.execute(
                "INSERT INTO outbox (message_id, topic, value, producer)"
                " VALUES ('spoof', 'medstream.identified.fhir', '\\x00', 'medstream_ingestion')"
            )
    finally:
        await connection.close()


async def test_the_audit_service_relays_the_operators_audit_rows_only(
    engine: AsyncEngine, role_engines: dict[str, AsyncEngine], unique: Callable[[str], str]
) -> None:
    """The CLI's commands are audited through the outbox as the operator; the audit
    service publishes those rows, and no other operator row."""
    audit_id, other_id = unique("op-audit"), unique("op-other")
    # Written as already sent, so that no running relay publishes them.
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO outbox (message_id, topic, value, sent_at) VALUES"
                " (:a, 'medstream.audit', '', now()), (:o, 'medstream.deid.vitals', '', now())"
            ),
            {"a": audit_id, "o": other_id},
        )
    async with role_engines["audit"].connect() as conn:
        seen = (
            (
                await conn.execute(
                    text("SELECT message_id FROM outbox WHERE message_id IN (:a, :o)"),
                    {"a": audit_id, "o": other_id},
                )
            )
            .scalars()
            .all()
        )
    assert seen == [audit_id]


async def test_two_relays_publish_every_row_once(
    settings: Settings, engine: AsyncEngine, unique: Callable[[str], str]
) -> None:
    """Two relays over the same rows (the operator's, which no service relays) share
    them with SKIP LOCKED and publish each once."""
    topic = unique("proof.relay")
    await create_topics(settings, topic)
    async with engine.begin() as conn:
        for i in range(ROWS):
            await enqueue(conn, _message(topic, i))
    producers = [make_producer(settings) for _ in range(2)]
    for producer in producers:
        await producer.start()
    try:
        relays = [OutboxRelay(engine, p, batch_size=40) for p in producers]

        async def drain(relay: OutboxRelay) -> None:
            while await _unsent(engine, topic):
                await relay.relay_once()

        await asyncio.wait_for(asyncio.gather(*(drain(r) for r in relays)), 120)
    finally:
        for producer in producers:
            await producer.stop()
    records = await read_all(settings, topic, ROWS)
    ids = Counter(dict(r.headers)["message-id"].decode() for r in records)
    assert len(ids) == ROWS
    assert max(ids.values()) == 1, "a row was published twice"


async def test_a_batch_of_rows_keeps_its_order_and_skips_duplicates(
    role_engines: dict[str, AsyncEngine],
) -> None:
    """``enqueue_many`` writes a batch in one statement: the ids follow the batch's
    order (the relay keeps each key's order by them), a message id already in the
    outbox or earlier in the batch adds nothing, and a row without a key keeps none."""
    topic = f"test.order.{uuid.uuid4().hex[:8]}"
    first = [_message(topic, i) for i in range(5)]
    keyless = OutboundMessage(topic=topic, value=b"", key=None, message_id=f"{topic}-nokey")
    async with role_engines["ingestion"].begin() as conn:
        await enqueue_many(conn, first[:2])
    async with role_engines["ingestion"].begin() as conn:
        await enqueue_many(conn, [first[1], *first[2:4], first[2], keyless, first[4]])
    async with role_engines["ingestion"].connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT message_id, key, value, headers FROM outbox"
                    " WHERE topic = :t ORDER BY id"
                ),
                {"t": topic},
            )
        ).all()
    assert [r.message_id for r in rows] == [
        *(m.message_id for m in first[:4]),
        keyless.message_id,
        first[4].message_id,
    ]
    assert rows[0].key == b"k0"
    assert rows[0].value == b"v0"
    assert rows[0].headers == {"source-system": "test", MESSAGE_ID_HEADER: f"{topic}-0"}
    assert rows[4].key is None
