"""The clients MedStream makes never carry the client defaults that lose data."""

from aiokafka.conn import collect_hosts

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


def test_every_topic_is_created_with_its_min_insync_replicas() -> None:
    settings = Settings(topic_min_insync_replicas=2)
    for topic in kafka.ALL_TOPICS:
        config = kafka.topic_config(topic, settings)
        assert config["min.insync.replicas"] == "2"
        assert config["unclean.leader.election.enable"] == "false"


async def test_the_consumer_gets_every_bootstrap_host() -> None:
    """A cluster's comma-separated bootstrap must reach the client as separate hosts."""
    consumer = kafka.make_consumer(
        Settings(kafka_bootstrap="127.0.0.1:29092, 127.0.0.1:29094,127.0.0.1:29096"),
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
