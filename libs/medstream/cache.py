"""The Redis client factory. Redis holds caches and working state; PostgreSQL is the
source of truth for anything that must survive."""

from __future__ import annotations

from redis.asyncio import Redis

from medstream.platform.secrets import redis_credentials
from medstream.settings import Settings


def make_redis(settings: Settings) -> Redis:
    """An asyncio Redis client with bounded timeouts and retry on connection errors,
    authenticated as this process's own ACL user (none for a service with no Redis
    rights: its first command is refused)."""
    credentials = redis_credentials(settings)
    username, password = credentials if credentials else (None, None)
    return Redis.from_url(
        settings.redis_url.get_secret_value(),
        username=username,
        password=password,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry_on_timeout=True,
    )
