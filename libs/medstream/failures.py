"""Errors that are the environment's fault, not the message's.

A dependency that is down or restarting (Postgres, Kafka, Redis) or a deployment
mistake (a missing grant or table) fails every message alike. Dead-lettering would
throw good messages away, so these are retried forever with backoff instead, and the
consumer's lag shows the problem.
"""

from __future__ import annotations

from aiokafka.errors import KafkaError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DataError, InterfaceError, OperationalError, ProgrammingError

ENVIRONMENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    ProgrammingError,
    KafkaError,
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
)


def is_lost_connection(error: BaseException) -> bool:
    """Whether SQLAlchemy found that the database connection was lost under this error
    (``connection_invalidated``): the server restarted or ended the session. The
    driver may report that as any class (asyncpg has raised ``InternalClientError``),
    so it is the environment's fault whatever the class."""
    return getattr(error, "connection_invalidated", False) is True


def is_data_error(error: BaseException) -> bool:
    """Whether PostgreSQL (or asyncpg, before sending) refused a *value*: SQLSTATE class
    22, data exception (a NUL byte, an invalid character, a value too long for its
    column, a number out of range). The message that carried it is at fault."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DataError):
            return True
        state = getattr(current, "sqlstate", None)
        if isinstance(state, str) and state.startswith("22"):
            return True
        current = getattr(current, "orig", None) or current.__cause__
    return False
