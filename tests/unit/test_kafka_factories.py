"""The clients MedStream makes never carry the client defaults that lose data."""

import ssl
from pathlib import Path

import pytest
from aiokafka.conn import collect_hosts

from medstream import kafka
from medstream.platform import secrets
from medstream.platform.tls import ensure_local_ca
from medstream.settings import Settings


@pytest.fixture
def local(tmp_path: Path) -> Settings:
    """Dev settings over a state folder of the test's own, with its own local CA."""
    ensure_local_ca(tmp_path / "tls")
    return Settings(state_dir=tmp_path)


async def test_producer_is_idempotent_with_acks_all(local: Settings) -> None:
    producer = kafka.make_producer(local)
    try:
        # aiokafka resolves acks="all" to -1 and keeps a transaction manager only
        # when idempotence is on.
        assert producer._sender._acks == -1
        assert producer._txn_manager is not None
        assert producer._compression_type == "zstd"  # cramjam is installed
    finally:
        await producer.client.close()


@pytest.mark.parametrize(("setting", "codec"), [("lz4", "lz4"), ("gzip", "gzip"), ("none", None)])
async def test_producer_compression_follows_the_setting(
    local: Settings, setting: str, codec: str | None
) -> None:
    producer = kafka.make_producer(local.model_copy(update={"kafka_compression": setting}))
    try:
        assert producer._compression_type == codec
        assert producer._sender._acks == -1  # the setting changes nothing else
    finally:
        await producer.client.close()


async def test_consumer_commits_manually_from_the_earliest_offset(local: Settings) -> None:
    consumer = kafka.make_consumer(local, "t", group_id="g")
    try:
        assert consumer._enable_auto_commit is False
        assert consumer._auto_offset_reset == "earliest"
    finally:
        await consumer._client.close()


def test_every_topic_is_created_with_its_min_insync_replicas() -> None:
    settings = Settings(topic_min_insync_replicas=2)
    for topic in kafka.ALL_TOPICS:
        config = kafka.topic_config(topic, settings)
        assert config["min.insync.replicas"] == "2"
        assert config["unclean.leader.election.enable"] == "false"


async def test_the_consumer_gets_every_bootstrap_host(local: Settings) -> None:
    """A cluster's comma-separated bootstrap must reach the client as separate hosts."""
    consumer = kafka.make_consumer(
        local.model_copy(
            update={"kafka_bootstrap": "127.0.0.1:29092, 127.0.0.1:29094,127.0.0.1:29096"}
        ),
        "t",
        group_id="g",
    )
    try:
        hosts = collect_hosts(consumer._client._bootstrap_servers)
        assert sorted((h, p) for h, p, _ in hosts) == [
            ("127.0.0.1", 29092),
            ("127.0.0.1", 29094),
            ("127.0.0.1", 29096),
        ]
    finally:
        await consumer._client.close()


def test_dead_letter_topics_take_a_whole_record_and_its_error_headers() -> None:
    """A record as large as its topic allows must still fit its dead-letter topic, and
    every client must be able to send and fetch it."""
    for topic in kafka.ALL_TOPICS:
        if topic.dead_letter is not None:
            dead = next(t for t in kafka.ALL_TOPICS if t.name == topic.dead_letter)
            assert dead.max_message_bytes >= topic.max_message_bytes + 512 * 1024
            assert kafka.PRODUCER_DEFAULTS["max_request_size"] > dead.max_message_bytes
            assert kafka.CONSUMER_DEFAULTS["max_partition_fetch_bytes"] > dead.max_message_bytes


def test_every_client_authenticates_with_scram_over_tls(local: Settings) -> None:
    options = kafka.connection_options(local.model_copy(update={"service_name": "deid"}))
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "medstream-deid"
    # The generated password of deid, not the operator's.
    operator = kafka.connection_options(local)
    assert operator["sasl_plain_username"] == "medstream-operator"
    assert operator["sasl_plain_password"] != options["sasl_plain_password"]
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_a_missing_ca_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(secrets.InsecureSettings, match="medstream up"):
        kafka.connection_options(Settings(state_dir=tmp_path))


def test_plaintext_sasl_is_for_dev_on_loopback_only(tmp_path: Path) -> None:
    plain = Settings(state_dir=tmp_path, kafka_security_protocol="SASL_PLAINTEXT")
    assert "ssl_context" not in kafka.connection_options(plain)
    remote = plain.model_copy(update={"kafka_bootstrap": "10.1.2.3:9092"})
    with pytest.raises(secrets.InsecureSettings, match="loopback"):
        kafka.connection_options(remote)
    staging = plain.model_copy(update={"env": "staging"})
    with pytest.raises(secrets.InsecureSettings, match="dev only"):
        kafka.connection_options(staging)


def test_outside_dev_a_client_needs_its_password(tmp_path: Path) -> None:
    ensure_local_ca(tmp_path / "tls")
    staging = Settings(state_dir=tmp_path, env="staging", kafka_ca_file=tmp_path / "tls/ca.pem")
    with pytest.raises(secrets.InsecureSettings, match="MEDSTREAM_KAFKA_PASSWORD"):
        kafka.connection_options(staging)
