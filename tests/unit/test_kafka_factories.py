"""The clients MedStream makes never carry the client defaults that lose data."""

from typing import Any

import pytest

from medstream import kafka
from medstream.settings import Settings


async def test_producer_is_idempotent_with_acks_all() -> None:
    producer = kafka.make_producer(Settings())
    try:
        # aiokafka resolves acks="all" to -1 and keeps a transaction manager only
        # when idempotence is on.
        assert producer._sender._acks == -1
        assert producer._txn_manager is not None
    finally:
        await producer.client.close()


async def test_consumer_commits_manually_from_the_earliest_offset() -> None:
    consumer = kafka.make_consumer(Settings(), "t", group_id="g")
    try:
        assert consumer._enable_auto_commit is False
        assert consumer._auto_offset_reset == "earliest"
    finally:
        await consumer._client.close()


def test_broker_is_built_with_idempotent_acks_all_publishing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}

    def record(*args: Any, **kwargs: Any) -> object:
        seen.update(kwargs)
        return object()

    monkeypatch.setattr(kafka, "KafkaBroker", record)
    kafka.make_broker(Settings())
    assert seen["enable_idempotence"] is True
    assert seen["acks"] == "all"
    assert seen["allow_auto_create_topics"] is False


def test_every_topic_is_created_with_its_min_insync_replicas() -> None:
    settings = Settings(topic_min_insync_replicas=2)
    for topic in kafka.ALL_TOPICS:
        config = kafka.topic_config(topic, settings)
        assert config["min.insync.replicas"] == "2"
        assert config["unclean.leader.election.enable"] == "false"


def test_the_broker_gets_every_bootstrap_host() -> None:
    """A cluster's comma-separated bootstrap must reach the client as separate hosts."""
    broker = kafka.make_broker(
        Settings(kafka_bootstrap="127.0.0.1:29092, 127.0.0.1:29094,127.0.0.1:29096")
    )
    servers = broker.config.broker_config.builder.keywords["bootstrap_servers"]  # type: ignore[attr-defined]
    assert list(servers) == ["127.0.0.1:29092", "127.0.0.1:29094", "127.0.0.1:29096"]
