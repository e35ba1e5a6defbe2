"""The Redis client factory. Redis holds caches and working state; PostgreSQL is the
source of truth for anything that must survive."""

from __future__ import annotations

from redis.asyncio import Redis

from medstream.settings import Settings


def make_redis(settings: Settings) -> Redis:
    """An asyncio Redis client with bounded timeouts and retry on connection errors."""
    return Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry_on_timeout=True,
    )
