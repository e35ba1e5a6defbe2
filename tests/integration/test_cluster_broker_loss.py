"""Proof on the 3-node cluster: acks=all writes to an RF=3, min ISR 2 topic keep
succeeding while one broker is down, and nothing acknowledged is lost after it returns."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from medstream import stack as local_stack
from medstream.kafka import describe_topic_config, ensure_topics, make_admin, make_producer
from medstream.settings import Settings
from medstream.topics import Topic

from .test_crash_between_commits import read_all

pytestmark = pytest.mark.cluster

BEFORE, DURING = 300, 300


@pytest.fixture(scope="module")
def cluster(settings: Settings) -> Iterator[local_stack.Stack]:
    """The 3-node cluster, started for this module unless it was already running."""
    stack = local_stack.Stack(settings.state_dir, cluster=True)
    started = not local_stack.kafka_healthy(stack)
    if started:
        local_stack.up_kafka(stack, lambda m: print(f"[cluster] {m}"))
    yield stack
    if started:
        local_stack.down_kafka(stack, lambda m: print(f"[cluster] {m}"))


async def leader_of(settings: Settings, topic: str) -> int:
    admin = make_admin(settings)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return int(described[0]["partitions"][0]["leader"])


async def send_all(producer, topic: str, values: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    pending = [await producer.send(topic, value=v, key=b"k") for v in values]
    await asyncio.wait_for(asyncio.gather(*pending), timeout=120)


async def test_acks_all_survives_one_broker_down(
    settings: Settings,
    cluster: local_stack.Stack,
    unique: Callable[[str], str],
) -> None:
    cluster_settings = local_stack.cluster_settings(settings)
    topic = unique("proof.rf3")
    await ensure_topics(
        cluster_settings,
        [Topic(name=topic, description="test", content_type="text/plain", partitions=1)],
    )
    config = await describe_topic_config(cluster_settings, topic)
    assert config["min.insync.replicas"] == "2"
    assert config["unclean.leader.election.enable"] == "false"

    producer = make_producer(cluster_settings)
    await producer.start()
    victim = await leader_of(cluster_settings, topic)
    try:
        await send_all(producer, topic, [f"before-{i}".encode() for i in range(BEFORE)])

        local_stack.kill_kafka_node(cluster, victim)

        # The partition leader is gone; two in-sync replicas remain, so acks=all holds.
        await send_all(producer, topic, [f"during-{i}".encode() for i in range(DURING)])
        assert local_stack.kafka_node_pid(cluster, victim) is None, "the broker stayed down"
        assert await leader_of(cluster_settings, topic) != victim
    finally:
        await producer.stop()
        local_stack.start_kafka_node(cluster, victim)
        await asyncio.to_thread(local_stack.wait_for_kafka, cluster)

    records = await read_all(cluster_settings, topic, BEFORE + DURING)
    values = [r.value for r in records]
    assert len(values) == BEFORE + DURING, "an acknowledged write was lost or duplicated"
    assert set(values) == {f"before-{i}".encode() for i in range(BEFORE)} | {
        f"during-{i}".encode() for i in range(DURING)
    }
    # One producer, one partition: order is kept across the failover.
    assert values == sorted(values, key=lambda v: (v.startswith(b"during"), int(v.split(b"-")[1])))
