"""Kafka clients with safe defaults, and topic creation from the registry.

Client defaults lose data: aiokafka produces with ``acks=1`` and no idempotence, and
a consumer auto-commits offsets before the work is done. Every MedStream client is
made here, so none of those defaults reaches a service.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker

from medstream.settings import Settings
from medstream.topics import ALL_TOPICS, Topic

log = logging.getLogger(__name__)

# Idempotence implies acks=all and bounded in-flight requests, so retries neither
# duplicate nor reorder records within a partition.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable_idempotence": True,
    "acks": "all",
    "linger_ms": 5,
    "request_timeout_ms": 30_000,
}

CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "isolation_level": "read_committed",
    "max_poll_interval_ms": 300_000,
    "session_timeout_ms": 10_000,
    "heartbeat_interval_ms": 3_000,
}


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent, acks=all producer. Start it before use and stop it after."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=settings.service_name,
        **{**PRODUCER_DEFAULTS, **overrides},
    )


def make_consumer(
    settings: Settings, *topics: str, group_id: str, **overrides: Any
) -> AIOKafkaConsumer:
    """A manual-commit consumer in ``group_id``: commit only after the effect is durable."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=settings.service_name,
        group_id=group_id,
        **{**CONSUMER_DEFAULTS, **overrides},
    )


def make_broker(settings: Settings) -> KafkaBroker:
    """A faststream broker whose publishers are idempotent with acks=all.

    Subscribers are declared with ``medstream.consumer.subscribe``, which sets the
    manual-commit acknowledgement policy.
    """
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=settings.service_name,
        enable_idempotence=True,
        acks="all",
        allow_auto_create_topics=False,
        # Through the root logger, so the redacting formatter applies to its records.
        logger=logging.getLogger("medstream.faststream"),
    )


def topic_config(topic: Topic, settings: Settings) -> dict[str, str]:
    """The per-topic configuration a topic is created with.

    ``min.insync.replicas`` is set on every topic: from Kafka 4.1, with Eligible
    Leader Replicas on, the broker-wide value only seeds the cluster default.
    """
    return {
        "retention.ms": str(topic.retention_ms),
        "min.insync.replicas": str(settings.topic_min_insync_replicas),
        "unclean.leader.election.enable": "false",
        **topic.config,
    }


async def ensure_topics(settings: Settings, topics: Iterable[Topic] = ALL_TOPICS) -> list[str]:
    """Create the registry's topics that do not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in topics if t.name not in existing]
        created: list[str] = []
        for topic in wanted:
            new = NewTopic(
                name=topic.name,
                num_partitions=topic.partitions,
                replication_factor=settings.topic_replication_factor,
                topic_configs=topic_config(topic, settings),
            )
            try:
                await admin.create_topics([new])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                # Another process created it between our list and create: fine.
                continue
        if created:
            log.info("topics created", extra={"count": len(created)})
        return created
    finally:
        await admin.close()


async def describe_topic_config(settings: Settings, name: str) -> dict[str, str]:
    """The broker's effective configuration of topic ``name``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    finally:
        await admin.close()
    # Each response holds resources as (error_code, error_message, type, name, configs),
    # and each config entry starts with (name, value).
    return {
        entry[0]: entry[1]
        for response in responses
        for resource in response.resources
        for entry in resource[4]
    }
