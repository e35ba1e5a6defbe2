"""The start command is idempotent and the stack it starts is the one the CONTRACT names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream import stack as local_stack
from medstream.cache import make_redis
from medstream.kafka import describe_topic_config
from medstream.settings import Settings
from medstream.topics import ALL_TOPICS

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
