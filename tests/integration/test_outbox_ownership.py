"""Each service relays its own outbox rows, and only those: row level security on
``outbox.producer`` hides every other role's rows (identified payloads among them)
from a service's role, and refuses a row written in another role's name. Two relays of
one role share its rows and publish each once."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from medstream import stack as local_stack
from medstream.deployment import SERVICES
from medstream.kafka import make_producer
from medstream.outbox import OutboundMessage, OutboxRelay, enqueue
from medstream.platform.secrets import role_url
from medstream.settings import Settings

from .conftest import create_topics
from .test_crash_between_commits import read_all
from .test_postgres_roles import connect

ROWS = 300


@pytest.fixture(scope="module", autouse=True)
def quiet(settings: Settings) -> Iterator[None]:
    """The stack's services stopped meanwhile: each runs the relay for its own role, and
    would take (and, on a test topic its Kafka principal may not write, quarantine)
    the rows these tests write as that role."""
    stack = local_stack.Stack(settings.state_dir)
    were_running = [name for name, alive in local_stack.services_running(stack).items() if alive]
    local_stack.down_services(stack, print)
    yield
    if were_running:
        bin_dir = Path(sys.executable).parent
        local_stack.up_services(
            stack, {spec.name: bin_dir / spec.entry_point for spec in SERVICES}, print
        )


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
    topic = unique("proof.owned")
    await create_topics(settings, topic)
    async with role_engines["ingestion"].begin() as conn:
        for i in range(10):
            await enqueue(conn, _message(topic, i))
    # deid's role does not see ingestion's rows, so its relay sends none of them.
    async with role_engines["deid"].connect() as conn:
        assert (
            await conn.scalar(text("SELECT count(*) FROM outbox WHERE topic = :t"), {"t": topic})
            == 0
        )
    producer = make_producer(settings)  # the operator's: Kafka rights are not the point
    await producer.start()
    try:
        assert await OutboxRelay(role_engines["deid"], producer).relay_once() == 0
        assert await _unsent(engine, topic) == 10  # the operator role sees every row
        assert await OutboxRelay(role_engines["ingestion"], producer).relay_once() == 10
    finally:
        await producer.stop()
    assert await _unsent(engine, topic) == 0
    async with engine.connect() as conn:
        producers = (
            (
                await conn.execute(
                    text("SELECT DISTINCT producer FROM outbox WHERE topic = :t"), {"t": topic}
                )
            )
            .scalars()
            .all()
        )
    assert producers == ["medstream_ingestion"]


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
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO outbox (message_id, topic, value) VALUES"
                " (:a, 'medstream.audit', 'probe'), (:o, 'medstream.deid.vitals', 'probe')"
            ),
            {"a": audit_id, "o": other_id},
        )
    try:
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
    finally:
        # The rows are not meant to be published: mark them sent as the operator.
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE outbox SET sent_at = now() WHERE message_id IN (:a, :o)"),
                {"a": audit_id, "o": other_id},
            )


async def test_two_relays_of_one_role_publish_every_row_once(
    settings: Settings,
    role_engines: dict[str, AsyncEngine],
    unique: Callable[[str], str],
) -> None:
    topic = unique("proof.relay")
    await create_topics(settings, topic)
    async with role_engines["ingestion"].begin() as conn:
        for i in range(ROWS):
            await enqueue(conn, _message(topic, i))
    producers = [make_producer(settings) for _ in range(2)]
    for producer in producers:
        await producer.start()
    try:
        relays = [OutboxRelay(role_engines["ingestion"], p, batch_size=40) for p in producers]

        async def drain(relay: OutboxRelay) -> None:
            while await _unsent(role_engines["ingestion"], topic):
                await relay.relay_once()

        await asyncio.wait_for(asyncio.gather(*(drain(r) for r in relays)), 60)
    finally:
        for producer in producers:
            await producer.stop()
    records = await read_all(settings, topic, ROWS)
    ids = Counter(dict(r.headers)["message-id"].decode() for r in records)
    assert len(ids) == ROWS
    assert max(ids.values()) == 1, "a row was published twice"
