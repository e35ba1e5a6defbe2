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
from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError

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
