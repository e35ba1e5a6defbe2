"""How ExactlyOnceProcessor treats each kind of failure, without servers: the database
steps are replaced, the decision logic is the real one."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError, OperationalError

from medstream.consumer import DEFERRED, ExactlyOnceProcessor, Outcome, RetryLater, per_record
from medstream.deadletter import DeadLetterLimiter, DeadLetterPublisher, InvalidMessage
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

    async def batch_once(self, records: list[Received], handler: object = None) -> list[Outcome]:
        result = self.process_results.pop(0)
        if isinstance(result, BaseException):
            raise result
        return [result for _ in records]

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
        dead_letters=DeadLetterPublisher(None, "g"),  # type: ignore[arg-type]
        limiter=DeadLetterLimiter(1.0, 10, 10),
        max_attempts=max_attempts,
        backoff_s=0,
        max_backoff_s=0,
    )
    proc._batch_once = script.batch_once  # type: ignore[method-assign]
    proc._dead_letter = script.dead_letter  # type: ignore[method-assign]
    return proc


def db_down() -> OperationalError:
    return OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


async def test_a_bug_is_retried_then_dead_lettered_without_its_text() -> None:
    script = Script(KeyError("secret"), KeyError("secret"), KeyError("secret"))
    proc = processor(script)
    for _ in range(2):
        with pytest.raises(RetryLater):
            await proc.process_batch([RECEIVED])
    assert await proc.process_batch([RECEIVED]) == [Outcome.DEAD_LETTERED]
    (error,) = script.dead_lettered
    assert error.code == "internal.unhandled_error"
    assert "KeyError" in error.reason
    assert "secret" not in error.reason


async def test_an_outage_is_retried_forever_and_never_dead_lettered() -> None:
    script = Script(*[db_down() for _ in range(10)], Outcome.PROCESSED)
    proc = processor(script, max_attempts=2)
    for _ in range(10):
        with pytest.raises(RetryLater):
            await proc.process_batch([RECEIVED])
    assert await proc.process_batch([RECEIVED]) == [Outcome.PROCESSED]
    assert script.dead_lettered == []


async def test_an_outage_while_dead_lettering_is_retried_not_raised_raw() -> None:
    script = Script(KeyError("x"), dead_letter_error=db_down())
    proc = processor(script, max_attempts=1)
    with pytest.raises(RetryLater):
        await proc.process_batch([RECEIVED])


async def test_success_forgets_earlier_attempts() -> None:
    script = Script(KeyError("x"), Outcome.PROCESSED, KeyError("x"), KeyError("x"))
    proc = processor(script, max_attempts=3)
    with pytest.raises(RetryLater):
        await proc.process_batch([RECEIVED])
    assert await proc.process_batch([RECEIVED]) == [Outcome.PROCESSED]
    for _ in range(2):
        with pytest.raises(RetryLater):
            await proc.process_batch([RECEIVED])


def test_unusable_headers_and_repeated_ids_are_sorted_before_the_database() -> None:
    bad = replace(RECEIVED, headers=(("message-id", b"\xff\xfe"),))
    again = replace(RECEIVED, offset=6)
    other = replace(RECEIVED, offset=7, value=b"other content, same id")
    outcomes, rejected, candidates = processor(Script())._sort_batch([bad, RECEIVED, again, other])
    assert [record for _, record in candidates] == [RECEIVED]
    assert outcomes == {2: Outcome.DUPLICATE}
    assert [(i, e.code) for i, _, e in rejected] == [
        (0, "envelope.bad_header"),
        (3, "g.id_conflict"),
    ]


def value_refused() -> DBAPIError:
    """What SQLAlchemy raises when PostgreSQL refuses a NUL byte (SQLSTATE 22021)."""
    cause = Exception("invalid byte sequence for encoding UTF8: 0x00")
    cause.sqlstate = "22021"  # type: ignore[attr-defined]
    return DBAPIError("INSERT ...", {}, cause)


async def test_a_value_the_database_refuses_is_the_messages_fault_at_once() -> None:
    script = Script(value_refused())
    assert await processor(script).process_batch([RECEIVED]) == [Outcome.DEAD_LETTERED]
    (error,) = script.dead_lettered
    assert error.code == "database.rejected_value"
    assert "0x00" not in error.reason


class Bisecting:
    """A batch step that fails whenever the batch holds the bad record."""

    def __init__(self, bad: Received) -> None:
        self.bad = bad
        self.batches: list[int] = []

    async def batch_once(self, records: list[Received], handler: object = None) -> list[Outcome]:
        self.batches.append(len(records))
        if self.bad in records:
            raise KeyError("a bug")
        return [Outcome.PROCESSED for _ in records]


async def test_a_record_that_breaks_its_batch_is_isolated_by_bisection() -> None:
    records = [replace(RECEIVED, offset=i, message_id=f"m-{i}") for i in range(8)]
    script = Script()
    proc = processor(script, max_attempts=2)
    bisecting = Bisecting(records[5])
    proc._batch_once = bisecting.batch_once  # type: ignore[method-assign]
    # The first failure of the bad record: its neighbours before it are done (and
    # commit); it and those after it come again with the next fetch.
    first = await proc.process_batch(records)
    assert first == [Outcome.PROCESSED] * 5
    # Halves, not one by one: 8 -> 4 (fine) + 4 -> 2 -> 1 (fine) + 1 (bad).
    assert bisecting.batches == [8, 4, 4, 2, 1, 1]
    again = await proc.process_batch(records[5:])
    assert again == [Outcome.DEAD_LETTERED, Outcome.PROCESSED, Outcome.PROCESSED]
    assert script.dead_lettered[0].code == "internal.unhandled_error"


async def test_single_record_handlers_defer_what_is_left_when_the_batch_runs_long() -> None:
    calls: list[int] = []

    async def handler(conn: object, received: Received) -> list[object]:
        calls.append(received.offset)
        return []

    class Savepoint:
        async def __aenter__(self) -> None:
            return None

        async def __aexit__(self, *exc: object) -> None:
            return None

    class Conn:
        def begin_nested(self) -> Savepoint:
            return Savepoint()

    batch = per_record(handler, time_budget_s=0.0)  # type: ignore[arg-type]
    records = [replace(RECEIVED, offset=i) for i in range(3)]
    results = await batch(Conn(), records)  # type: ignore[arg-type]
    assert calls == [0]  # the first record always runs
    assert results[1:] == [DEFERRED, DEFERRED]
