"""How ExactlyOnceProcessor treats each kind of failure, without servers: the database
steps are replaced, the decision logic is the real one."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError, OperationalError

from medstream.consumer import ExactlyOnceProcessor, Outcome, RetryLater
from medstream.deadletter import DeadLetterLimiter, InvalidMessage
from medstream.received import Received

RECEIVED = Received(
    topic="t",
    partition=0,
    offset=5,
    timestamp=1,
    key=None,
    value=b"v",
    headers=(),
    message_id="m-1",
)


class Script:
    """Stands in for the processor's database steps and records what was asked."""

    def __init__(self, *process_results: Any, dead_letter_error: BaseException | None = None):
        self.process_results = list(process_results)
        self.dead_letter_error = dead_letter_error
        self.dead_lettered: list[InvalidMessage] = []

    async def process_once(self, received: Received, handler: object = None) -> Outcome:
        result = self.process_results.pop(0)
        if isinstance(result, BaseException):
            raise result
        return result

    async def dead_letter(self, received: Received, error: InvalidMessage) -> Outcome:
        if self.dead_letter_error is not None:
            raise self.dead_letter_error
        self.dead_lettered.append(error)
        return Outcome.DEAD_LETTERED


async def unused_handler(conn: object, received: Received) -> list[object]:
    """The database steps are replaced below, so the handler itself is never called."""
    raise AssertionError("not called")


def processor(script: Script, max_attempts: int = 3) -> ExactlyOnceProcessor:
    proc = ExactlyOnceProcessor(
        engine=None,  # type: ignore[arg-type]
        group="g",
        handler=unused_handler,  # type: ignore[arg-type]
        dead_letters=None,  # type: ignore[arg-type]
        limiter=DeadLetterLimiter(1.0, 10, 10),
        max_attempts=max_attempts,
        backoff_s=0,
        max_backoff_s=0,
    )
    proc._process_once = script.process_once  # type: ignore[method-assign]
    proc._dead_letter = script.dead_letter  # type: ignore[method-assign]
    return proc


def db_down() -> OperationalError:
    return OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


async def test_a_bug_is_retried_then_dead_lettered_without_its_text() -> None:
    script = Script(KeyError("secret"), KeyError("secret"), KeyError("secret"))
    proc = processor(script)
    for _ in range(2):
        with pytest.raises(RetryLater):
            await proc.process(RECEIVED)
    assert await proc.process(RECEIVED) is Outcome.DEAD_LETTERED
    (error,) = script.dead_lettered
    assert error.code == "internal.unhandled_error"
    assert "KeyError" in error.reason
    assert "secret" not in error.reason


async def test_an_outage_is_retried_forever_and_never_dead_lettered() -> None:
    script = Script(*[db_down() for _ in range(10)], Outcome.PROCESSED)
    proc = processor(script, max_attempts=2)
    for _ in range(10):
        with pytest.raises(RetryLater):
            await proc.process(RECEIVED)
    assert await proc.process(RECEIVED) is Outcome.PROCESSED
    assert script.dead_lettered == []


async def test_an_outage_while_dead_lettering_is_retried_not_raised_raw() -> None:
    script = Script(KeyError("x"), dead_letter_error=db_down())
    proc = processor(script, max_attempts=1)
    with pytest.raises(RetryLater):
        await proc.process(RECEIVED)


async def test_success_forgets_earlier_attempts() -> None:
    script = Script(KeyError("x"), Outcome.PROCESSED, KeyError("x"), KeyError("x"))
    proc = processor(script, max_attempts=3)
    with pytest.raises(RetryLater):
        await proc.process(RECEIVED)
    assert await proc.process(RECEIVED) is Outcome.PROCESSED
    for _ in range(2):
        with pytest.raises(RetryLater):
            await proc.process(RECEIVED)


async def test_unusable_headers_are_dead_lettered_before_any_processing() -> None:
    script = Script()  # no processing result: the handler path must not run
    bad = replace(RECEIVED, headers=(("message-id", b"\xff\xfe"),))
    assert await processor(script).process(bad) is Outcome.DEAD_LETTERED
    (error,) = script.dead_lettered
    assert error.code == "envelope.bad_header"


def value_refused() -> DBAPIError:
    """What SQLAlchemy raises when PostgreSQL refuses a NUL byte (SQLSTATE 22021)."""
    cause = Exception("invalid byte sequence for encoding UTF8: 0x00")
    cause.sqlstate = "22021"  # type: ignore[attr-defined]
    return DBAPIError("INSERT ...", {}, cause)


async def test_a_value_the_database_refuses_is_the_messages_fault_at_once() -> None:
    script = Script(value_refused())
    assert await processor(script).process(RECEIVED) is Outcome.DEAD_LETTERED
    (error,) = script.dead_lettered
    assert error.code == "database.rejected_value"
    assert "0x00" not in error.reason
