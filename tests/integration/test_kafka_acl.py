"""Kafka least privilege on the real broker: SCRAM over TLS, and every principal's
rights derived from ``KAFKA_GRANTS`` and tried, allowed and denied, with real clients.

For each principal and each topic of the registry: produce, consume and describe; for
each principal and each consumer group in the table: join. Every "allow" must work and
every "deny" must come back as an authorisation error, so a rule the broker lacks and
a rule it holds too many both fail here.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from medstream.kafka import connection_options, make_admin, make_consumer, make_producer
from medstream.platform.identities import KAFKA_GRANTS
from medstream.platform.kafka_acl import reconcile
from medstream.settings import Settings
from medstream.topics import ALL_TOPICS

TOPICS = [topic.name for topic in ALL_TOPICS]
GROUPS = sorted({group for grant in KAFKA_GRANTS.values() for group in grant.groups})
TOPIC_AUTHORIZATION_FAILED = 29
UNKNOWN_TOPIC_OR_PARTITION = 3
NO_SUCH_PARTITION = 999
# A probe that must wait for an answer (a fetch, a group join) gives up after this.
PROBE_TIMEOUT_S = 20


async def _may_write(settings: Settings, principal: str, topic: str) -> bool:
    """Whether the broker lets ``principal`` write ``topic``, asked without writing a
    record: a Produce request for a partition that does not exist is refused with
    TOPIC_AUTHORIZATION_FAILED when the principal may not write the topic, and with
    UNKNOWN_TOPIC_OR_PARTITION when it may (the broker checks rights first), so no
    topic the other tests read gets a probe record."""
    client = AIOKafkaClient(**connection_options(settings, principal))
    await client.bootstrap()
    try:
        builder = DefaultRecordBatchBuilder(
            magic=2,
            compression_type=0,
            is_transactional=0,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=-1,
            batch_size=1024,
        )
        builder.append(0, timestamp=None, key=None, value=b"acl-probe", headers=[])
        request = ProduceRequest(
            transactional_id=None,
            required_acks=1,
            timeout=10_000,
            topics=[(topic, [(NO_SUCH_PARTITION, bytes(builder.build()))])],
        )
        response = await client.send(client.get_random_node(), request)
    finally:
        await client.close()
    codes = {partition[1] for _name, partitions in response.topics for partition in partitions}
    assert codes <= {TOPIC_AUTHORIZATION_FAILED, UNKNOWN_TOPIC_OR_PARTITION}, codes
    return codes == {UNKNOWN_TOPIC_OR_PARTITION}


async def test_the_broker_refuses_unauthenticated_and_wrong_passwords(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    right = connection_options(settings, "deid")
    admin = AIOKafkaAdminClient(**right, request_timeout_ms=5000)
    await admin.start()  # the right password works, so what follows is the refusal
    await admin.close()

    plaintext = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000
    )
    with pytest.raises(KafkaConnectionError):
        await plaintext.start()
    await plaintext.close()

    no_tls = AIOKafkaAdminClient(
        **{**right, "security_protocol": "SASL_PLAINTEXT", "ssl_context": None},
        request_timeout_ms=5000,
    )
    with pytest.raises(KafkaConnectionError):
        await no_tls.start()
    await no_tls.close()

    caplog.set_level(logging.ERROR, logger="aiokafka")
    wrong = AIOKafkaAdminClient(
        **{**right, "sasl_plain_password": "not-the-password-of-deid"}, request_timeout_ms=5000
    )
    with pytest.raises(KafkaConnectionError):
        await wrong.start()
    await wrong.close()
    assert "SaslAuthenticationFailed" in caplog.text


@pytest.mark.parametrize("principal", sorted(KAFKA_GRANTS))
async def test_produce_follows_the_table(settings: Settings, principal: str) -> None:
    grant = KAFKA_GRANTS[principal]
    wrong = []
    for topic in TOPICS:
        allowed = await _may_write(settings, principal, topic)
        if allowed != (topic in grant.writes):
            wrong.append(f"{topic}: {'allowed' if allowed else 'denied'}")
    assert not wrong, f"{principal} produce: {wrong}"


async def test_an_allowed_producer_really_writes(settings: Settings, unique) -> None:  # type: ignore[no-untyped-def]
    """The probe's "allowed" means a real write succeeds: the EHR principal sends a
    record to ehr.inbound.fhir with the idempotent producer every service uses, and is
    refused on a topic of the pipeline."""
    producer = make_producer(settings, principal="ehr")
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait("medstream.identified.fhir", b"{}")
        assert await _may_write(settings, "ehr", "ehr.inbound.fhir")
        assert not await _may_write(settings, "ehr", "medstream.identified.fhir")
    finally:
        await producer.stop()


@pytest.mark.parametrize("principal", sorted(KAFKA_GRANTS))
async def test_describe_follows_the_table(settings: Settings, principal: str) -> None:
    grant = KAFKA_GRANTS[principal]
    admin = make_admin(settings, principal=principal)
    await admin.start()
    try:
        described = {t["topic"]: t["error_code"] for t in await admin.describe_topics(TOPICS)}
    finally:
        await admin.close()
    for topic in TOPICS:
        may = topic in grant.reads or topic in grant.writes
        expected = 0 if may else TOPIC_AUTHORIZATION_FAILED
        assert described[topic] == expected, f"{principal} describe {topic}"


async def _may_read(consumer, topic: str) -> bool:  # type: ignore[no-untyped-def]
    """Whether ``consumer`` may read ``topic``: True when a fetch from the end of
    partition 0 comes back without an error, False on an authorisation error."""
    try:
        # A topic the principal may not even describe is refused at the metadata step
        # (aiokafka's wait for metadata raises the error the broker gave).
        await consumer._client._wait_on_metadata(topic)
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_end(partition)
        await asyncio.wait_for(consumer.getmany(partition, timeout_ms=1000), PROBE_TIMEOUT_S)
    except TopicAuthorizationFailedError:
        return False
    return True


@pytest.mark.parametrize("principal", sorted(KAFKA_GRANTS))
async def test_consume_follows_the_table(settings: Settings, principal: str) -> None:
    grant = KAFKA_GRANTS[principal]
    wrong: list[str] = []
    for topic in TOPICS:
        # A client per topic: a refused fetch leaves the consumer's fetcher failing.
        consumer = make_consumer(settings, group_id=None, principal=principal)
        await consumer.start()
        try:
            allowed = await _may_read(consumer, topic)
        finally:
            await consumer.stop()
        if allowed != (topic in grant.reads):
            wrong.append(f"{topic}: {'allowed' if allowed else 'denied'}")
    assert not wrong, f"{principal} consume: {wrong}"


@pytest.mark.parametrize("principal", sorted(KAFKA_GRANTS))
async def test_joining_a_group_follows_the_table(settings: Settings, principal: str) -> None:
    grant = KAFKA_GRANTS[principal]
    # A topic the principal may read; the EHR reads none, so one it may describe (the
    # group's refusal comes first either way).
    topic = (grant.reads or grant.writes)[0]
    for group in GROUPS:
        consumer = make_consumer(settings, topic, group_id=group, principal=principal)
        try:
            await consumer.start()
            await asyncio.wait_for(consumer.getmany(timeout_ms=1000), PROBE_TIMEOUT_S)
            allowed = True
        except GroupAuthorizationFailedError:
            allowed = False
        finally:
            await consumer.stop()
        assert allowed == (group in grant.groups), f"{principal} join {group}"


def test_minimum_necessary_is_what_the_table_says() -> None:
    """The issue's rules, checked on the table the broker is reconciled to."""
    identified = [t for t in TOPICS if t.startswith("medstream.identified.") and ".dlt" not in t]
    for principal, grant in KAFKA_GRANTS.items():
        reads_phi = set(identified) & set(grant.reads)
        assert not reads_phi or principal == "deid", principal
        writes_phi = set(identified) & set(grant.writes)
        assert not writes_phi or principal in ("ingestion", "relay"), principal
        assert not any(t.endswith(".dlt") for t in grant.reads), principal
        if "ehr.outbound.fhir" in grant.writes:
            assert principal in ("results", "relay"), principal
    for worker, source in (
        ("monitoring", "medstream.deid.vitals"),
        ("imaging", "medstream.deid.imaging"),
        ("notes", "medstream.deid.document"),
    ):
        assert KAFKA_GRANTS[worker].reads == (source,)
    assert KAFKA_GRANTS["ehr"].reads == ()
    assert set(KAFKA_GRANTS["ehr"].writes) == {
        "ehr.inbound.fhir",
        "ehr.inbound.hl7v2",
        "ehr.inbound.dicom",
    }


async def test_the_reconciler_adds_and_removes_rules_to_match_the_table(settings: Settings) -> None:
    """A rule the table does not have is removed by the next reconcile, and the broker
    refuses again what it had allowed."""
    extra = dict(KAFKA_GRANTS)
    monitoring = extra["monitoring"]
    extra["monitoring"] = replace(monitoring, writes=(*monitoring.writes, TOPICS[0]))
    admin = make_admin(settings)
    await admin.start()
    try:
        added = await reconcile(admin, extra)
        assert [b.name for b in added.added] == [TOPICS[0]]
        assert not added.removed
        await asyncio.sleep(1)  # the brokers' ACL cache follows the metadata log
        assert await _may_write(settings, "monitoring", TOPICS[0])
        restored = await reconcile(admin)
        assert [b.name for b in restored.removed] == [TOPICS[0]]
        assert not restored.added
        await asyncio.sleep(1)
        assert not await _may_write(settings, "monitoring", TOPICS[0])
    finally:
        await reconcile(admin)
        await admin.close()
