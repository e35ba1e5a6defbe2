"""The start command is idempotent and the stack it starts is the one the CONTRACT names."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka.admin import NewTopic
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream import stack as local_stack
from medstream.cache import make_redis
from medstream.kafka import describe_topic_config, ensure_topics, make_admin
from medstream.settings import Settings
from medstream.topics import ALL_TOPICS, MAX_MESSAGE_BYTES, Topic

MEDSTREAM = str(Path(sys.executable).parent / "medstream")


def test_up_twice_is_harmless(settings: Settings) -> None:
    stack = local_stack.Stack(settings.state_dir)
    before = local_stack.server_pids(stack)
    assert all(before.values()), before
    for _ in range(2):
        result = subprocess.run(
            [MEDSTREAM, "up", "--no-services"], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        assert "0 created" in result.stderr
    assert local_stack.server_pids(stack) == before, "up restarted a running server"
    status = subprocess.run([MEDSTREAM, "status"], capture_output=True, text=True, check=False)
    assert status.returncode == 0, status.stdout


async def test_every_registry_topic_exists_with_its_settings(settings: Settings) -> None:
    for topic in ALL_TOPICS:
        config = await describe_topic_config(settings, topic.name)
        assert config["retention.ms"] == str(topic.retention_ms)
        assert config["min.insync.replicas"] == str(settings.topic_min_insync_replicas)


async def test_redis_answers(settings: Settings) -> None:
    redis = make_redis(settings)
    try:
        assert await redis.ping()
    finally:
        await redis.aclose()


async def test_the_service_role_cannot_rewrite_the_inbox(engine: AsyncEngine) -> None:
    """Least privilege: services insert idempotency keys, never change or delete them."""
    for statement in ("DELETE FROM inbox", "UPDATE inbox SET outcome = 'processed'"):
        async with engine.connect() as conn:
            with pytest.raises(ProgrammingError, match="permission denied"):
                await conn.execute(text(statement))


async def test_existing_topics_are_brought_to_the_registry_configuration(
    settings: Settings,
    unique: Callable[[str], str],
) -> None:
    topic = Topic(
        name=unique("proof.reconcile"),
        description="t",
        content_type="text/plain",
        partitions=1,
        retention_ms=3_600_000,
    )
    admin = make_admin(settings)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic.name, 1, 1, topic_configs={"retention.ms": "1000"})]
        )
    finally:
        await admin.close()
    assert (await describe_topic_config(settings, topic.name))["retention.ms"] == "1000"

    assert await ensure_topics(settings, [topic]) == []
    config = await describe_topic_config(settings, topic.name)
    assert config["retention.ms"] == "3600000"
    assert config["max.message.bytes"] == str(MAX_MESSAGE_BYTES)
