"""Kafka clients with safe defaults, and topic creation from the registry.

Client defaults lose data: aiokafka produces with ``acks=1`` and no idempotence, and
a consumer auto-commits offsets before the work is done. Every MedStream client is
made here, so none of those defaults reaches a service.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from medstream.platform import secrets
from medstream.settings import Settings
from medstream.topics import ALL_TOPICS, DEAD_LETTER_SLACK_BYTES, MAX_MESSAGE_BYTES, Topic

log = logging.getLogger(__name__)

# Idempotence implies acks=all and bounded in-flight requests, so retries neither
# duplicate nor reorder records within a partition.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable_idempotence": True,
    "acks": "all",
    "linger_ms": 5,
    "request_timeout_ms": 30_000,
    # Room for the largest record (a dead letter) plus the request's own framing.
    "max_request_size": MAX_MESSAGE_BYTES + DEAD_LETTER_SLACK_BYTES + 1024 * 1024,
}

CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "isolation_level": "read_committed",
    "max_poll_interval_ms": 300_000,
    "session_timeout_ms": 10_000,
    "heartbeat_interval_ms": 3_000,
    # A record larger than this could never be fetched and would stall its partition.
    "max_partition_fetch_bytes": MAX_MESSAGE_BYTES + DEAD_LETTER_SLACK_BYTES + 1024 * 1024,
}


def connection_options(settings: Settings, principal: str | None = None) -> dict[str, Any]:
    """How every client reaches the brokers: the bootstrap servers, SCRAM-SHA-512 with
    this process's identity (or, in dev, ``principal``'s), over TLS trusting the CA.

    Raises ``secrets.InsecureSettings`` for SASL_PLAINTEXT outside dev or off loopback.
    """
    refused = secrets.plaintext_problem(settings)
    if refused is not None:
        raise secrets.InsecureSettings(refused)
    credentials = secrets.kafka_credentials(settings, principal)
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": credentials.username,
        "sasl_plain_password": credentials.password,
    }
    if credentials.ca_file is not None:
        if not credentials.ca_file.exists():
            raise secrets.InsecureSettings(
                f"The Kafka CA file {credentials.ca_file} does not exist: start the local "
                "stack (`medstream up`) or set MEDSTREAM_KAFKA_CA_FILE"
            )
        options["ssl_context"] = create_ssl_context(cafile=str(credentials.ca_file))
    return options


def compression(settings: Settings) -> str | None:
    """The producers' codec (aiokafka's ``compression_type``), from the settings."""
    # Record batches travel and are stored compressed, with MEDSTREAM_KAFKA_COMPRESSION's
    # codec. zstd by default, not lz4: in aiokafka (cramjam) lz4's frame format took 231
    # ms to produce a 7.2 MB film (none: 63 ms) and left 93% of it; zstd took 92 ms and
    # left 73%, and on small JSON events the two cost the same (bench/e2e/compression.py).
    # Needs cramjam (aiokafka's lz4 extra, which has both).
    return None if settings.kafka_compression == "none" else settings.kafka_compression


def make_producer(
    settings: Settings, principal: str | None = None, **overrides: Any
) -> AIOKafkaProducer:
    """An idempotent, acks=all producer. Start it before use and stop it after."""
    return AIOKafkaProducer(
        client_id=settings.service_name,
        **connection_options(settings, principal),
        **{**PRODUCER_DEFAULTS, "compression_type": compression(settings), **overrides},
    )


def make_consumer(
    settings: Settings,
    *topics: str,
    group_id: str | None,
    principal: str | None = None,
    **overrides: Any,
) -> AIOKafkaConsumer:
    """A manual-commit consumer in ``group_id``: commit only after the effect is durable
    (``group_id=None``: a reader with no group, which commits nothing)."""
    return AIOKafkaConsumer(
        *topics,
        client_id=settings.service_name,
        group_id=group_id,
        **connection_options(settings, principal),
        **{**CONSUMER_DEFAULTS, **overrides},
    )


def make_admin(
    settings: Settings, principal: str | None = None, **overrides: Any
) -> AIOKafkaAdminClient:
    """An admin client (the operator's, unless ``principal`` says otherwise)."""
    return AIOKafkaAdminClient(
        client_id=settings.service_name, **connection_options(settings, principal), **overrides
    )


def topic_config(topic: Topic, settings: Settings) -> dict[str, str]:
    """The per-topic configuration a topic is created with.

    ``min.insync.replicas`` is set on every topic: from Kafka 4.1, with Eligible
    Leader Replicas on, the broker-wide value only seeds the cluster default.
    """
    return {
        "retention.ms": str(topic.retention_ms),
        "max.message.bytes": str(topic.max_message_bytes),
        "min.insync.replicas": str(settings.topic_min_insync_replicas),
        "unclean.leader.election.enable": "false",
        **topic.config,
    }


async def ensure_topics(settings: Settings, topics: Iterable[Topic] = ALL_TOPICS) -> list[str]:
    """Create the registry's missing topics and bring existing ones to the registry's
    configuration; return the names created.

    Partition counts are never changed here: adding partitions remaps keys and would
    break per-patient order, so that stays a deliberate operation.
    """
    admin = make_admin(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        created: list[str] = []
        for topic in topics:
            wanted = topic_config(topic, settings)
            if topic.name in existing:
                current = await _topic_config(admin, topic.name)
                if any(current.get(key) != value for key, value in wanted.items()):
                    await _alter_topic_config(admin, topic.name, wanted)
                    log.info("topic configuration updated", extra={"topic": topic.name})
                continue
            new = NewTopic(
                name=topic.name,
                num_partitions=topic.partitions,
                replication_factor=settings.topic_replication_factor,
                topic_configs=wanted,
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


async def describe_topic_config(
    settings: Settings, name: str, attempts: int = 20
) -> dict[str, str]:
    """The broker's effective configuration of topic ``name``. Right after a topic is
    created, a broker that has not yet caught up on the metadata answers with an error
    and no entries, so an empty answer is asked again, for up to ``attempts`` x 0.5 s."""
    admin = make_admin(settings)
    await admin.start()
    try:
        for _ in range(attempts - 1):
            config = await _topic_config(admin, name)
            if config:
                return config
            await asyncio.sleep(0.5)
        return await _topic_config(admin, name)
    finally:
        await admin.close()


async def _topic_config(admin: AIOKafkaAdminClient, name: str) -> dict[str, str]:
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    # Each response holds resources as (error_code, error_message, type, name, configs),
    # and each config entry starts with (name, value).
    return {
        entry[0]: entry[1]
        for response in responses
        for resource in response.resources
        for entry in resource[4]
    }


async def _alter_topic_config(
    admin: AIOKafkaAdminClient, name: str, config: dict[str, str]
) -> None:
    # AlterConfigs replaces the topic's whole dynamic configuration: pass all of it.
    responses = await admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name, configs=config)]
    )
    for response in responses:
        for error_code, error_message, *_ in response.resources:
            if error_code:
                raise RuntimeError(
                    f"Kafka refused the configuration of topic {name}: {error_message}"
                )


async def consumer_lag(settings: Settings, groups: Iterable[str]) -> dict[str, int]:
    """Records not yet committed by each consumer group, over all its partitions."""
    admin = make_admin(settings)
    consumer = make_consumer(settings, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        lag = {}
        for group in groups:
            committed = await admin.list_consumer_group_offsets(group)
            ends = await consumer.end_offsets(list(committed)) if committed else {}
            lag[group] = sum(
                max(0, ends[tp] - meta.offset) for tp, meta in committed.items() if meta.offset >= 0
            )
        return lag
    finally:
        await consumer.stop()
        await admin.close()


async def ensure_acls(settings: Settings) -> tuple[int, int]:
    """Reconcile the broker's ACLs to ``KAFKA_GRANTS`` (as the operator); return how
    many rules were added and removed."""
    from medstream.platform.kafka_acl import reconcile  # noqa: PLC0415

    admin = make_admin(settings)
    await admin.start()
    try:
        change = await reconcile(admin)
    finally:
        await admin.close()
    if change.added or change.removed:
        log.info(
            "kafka acls reconciled",
            extra={"added": len(change.added), "removed": len(change.removed)},
        )
    return len(change.added), len(change.removed)
