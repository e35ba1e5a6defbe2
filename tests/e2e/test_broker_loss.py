"""Broker loss with the whole pipeline: every service runs against the 3-node cluster
(replication factor 3, min ISR 2), one broker is SIGKILLed while the stream flows and
brought back, and the ledger still adds up."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream import stack as local_stack
from medstream.kafka import ensure_acls, ensure_topics
from medstream.settings import Settings

from .conftest import FAULT_ENV, flowing, ledger_check, start_services
from .test_faults import feed, settled_assignments

pytestmark = pytest.mark.cluster
VICTIM = 2
CONSUMERS = ["ingestion", "deid", "results", "audit", "imaging", "monitoring", "notes"]


def _report(message: str) -> None:
    print(f"[cluster] {message}")


async def _outbox_drained(engine: AsyncEngine, timeout_s: float = 60) -> None:
    for _ in range(int(timeout_s * 2)):
        async with engine.connect() as conn:
            if not await conn.scalar(
                text("SELECT count(*) FROM outbox WHERE sent_at IS NULL AND quarantined_at IS NULL")
            ):
                return
        await asyncio.sleep(0.5)


@pytest.fixture(scope="module")
def on_cluster(settings: Settings) -> Iterator[tuple[local_stack.Stack, Settings]]:
    """The 3-node cluster, with every service pointed at it under the supervisor.

    The single-node services stop first (after their outbox drains): one outbox feeds
    one Kafka, through whichever relay is running."""
    from medstream.db import make_engine  # noqa: PLC0415

    engine = make_engine(settings)
    asyncio.run(_outbox_drained(engine))
    asyncio.run(engine.dispose())
    single = local_stack.Stack(settings.state_dir)
    local_stack.down_services(single, _report)
    cluster = local_stack.Stack(settings.state_dir, cluster=True)
    started = not local_stack.kafka_healthy(cluster)
    if started:
        local_stack.up_kafka(cluster, _report)
    on = local_stack.cluster_settings(settings)
    asyncio.run(ensure_topics(on))
    asyncio.run(ensure_acls(on))
    start_services(single, {**FAULT_ENV, "MEDSTREAM_KAFKA_BOOTSTRAP": on.kafka_bootstrap})
    yield cluster, on
    local_stack.down_services(single, _report)
    if local_stack.kafka_node_pid(cluster, VICTIM) is None:
        local_stack.start_kafka_node(cluster, VICTIM)
    if started:
        local_stack.down_kafka(cluster, _report)


async def test_a_broker_killed_mid_stream_loses_and_duplicates_nothing(
    on_cluster: tuple[local_stack.Stack, Settings], engine: AsyncEngine
) -> None:
    cluster, settings = on_cluster
    # The broker dies mid-stream, not mid-start-up: every consumer has joined its group
    # first (a fresh-clone CI run, under load, saw deid still starting when the broker
    # died, and its first commit came more than STALL_LIMIT_S after its first record).
    await settled_assignments(cluster.state_dir / "services", CONSUMERS)
    run, sending = flowing(settings, feed(patients=3, hours=4, malformed=10), seconds=30)
    await asyncio.sleep(6)
    local_stack.kill_kafka_node(cluster, VICTIM)
    await asyncio.sleep(12)
    assert local_stack.kafka_node_pid(cluster, VICTIM) is None, "the broker stayed down"
    local_stack.start_kafka_node(cluster, VICTIM)
    await sending
    await ledger_check(settings, engine, run, timeout_s=420, resends=True)
