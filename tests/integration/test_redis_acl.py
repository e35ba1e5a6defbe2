"""Redis least privilege on the real server: the default user is off, a wrong password
is refused, and each principal reaches its own keys and no other's. What must be
allowed and refused is derived from ``REDIS_USERS``, the table the ACL file is
written from."""

from __future__ import annotations

import uuid

import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from medstream.cache import make_redis
from medstream.platform.identities import OPERATOR, REDIS_USERS, redis_user
from medstream.platform.secrets import development_secret
from medstream.settings import LOCAL_REDIS_PORT, Settings

URL = f"redis://127.0.0.1:{LOCAL_REDIS_PORT}/0"
SERVICE_USERS = [p for p in REDIS_USERS if p != OPERATOR]


def client(settings: Settings, principal: str, password: str | None = None) -> Redis:
    return Redis.from_url(
        URL,
        username=redis_user(principal),
        password=password or development_secret(settings.state_dir, f"redis-{principal}"),
        socket_timeout=5,
    )


def key_of(principal: str) -> str:
    """A key under the principal's first pattern."""
    return REDIS_USERS[principal].keys[0].replace("*", f"acl-test:{uuid.uuid4().hex}")


async def test_an_unauthenticated_client_is_refused(settings: Settings) -> None:
    del settings  # the fixture starts the stack
    anonymous = Redis.from_url(URL, socket_timeout=5)
    try:
        with pytest.raises((AuthenticationError, ResponseError), match=r"(?i)auth"):
            await anonymous.get("vault:anything")
    finally:
        await anonymous.aclose()


@pytest.mark.parametrize("principal", list(REDIS_USERS))
async def test_a_wrong_password_is_refused(settings: Settings, principal: str) -> None:
    wrong = client(settings, principal, password="not-the-password-" + uuid.uuid4().hex)
    try:
        with pytest.raises(AuthenticationError):
            await wrong.ping()
    finally:
        await wrong.aclose()


@pytest.mark.parametrize("principal", SERVICE_USERS)
async def test_each_service_reaches_its_own_keys_and_no_others(
    settings: Settings, principal: str
) -> None:
    own = client(settings, principal)
    operator = client(settings, OPERATOR)
    try:
        mine = key_of(principal)
        if "set" in (REDIS_USERS[principal].commands or ()):
            await own.set(mine, b"x", ex=60)
            assert await own.get(mine) == b"x"
        else:
            await own.hset(mine, mapping={"f": "x"})
            assert await own.hgetall(mine) == {b"f": b"x"}
        await own.expire(mine, 60)
        for other in REDIS_USERS:
            if other in (principal, OPERATOR):
                continue
            theirs = key_of(other)
            await operator.set(theirs, b"secret", ex=60)
            with pytest.raises(NoPermissionError):
                await own.get(theirs)
            with pytest.raises(NoPermissionError):
                await own.hgetall(theirs)
            with pytest.raises(NoPermissionError):
                await own.delete(theirs)
        with pytest.raises(NoPermissionError):
            await own.keys("*")  # not a command it was given
        with pytest.raises(NoPermissionError):
            await own.flushall()
    finally:
        await own.aclose()
        await operator.aclose()


async def test_a_service_without_a_redis_user_cannot_connect(settings: Settings) -> None:
    ingestion = make_redis(settings.model_copy(update={"service_name": "ingestion"}))
    try:
        with pytest.raises((AuthenticationError, ResponseError), match=r"(?i)auth"):
            await ingestion.get("vault:anything")
    finally:
        await ingestion.aclose()
