"""The processing-time budget: heavy work runs off the event loop, and a message that
outruns its budget is refused with <stage>.too_costly while the loop stays free."""

from __future__ import annotations

import asyncio
import time

import pytest

from medstream import budget
from medstream.errors import InvalidMessage


def busy(seconds: float, *, checking: bool) -> str:
    """CPU work in slices, checking the budget between them when ``checking``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(10_000))
        if checking:
            budget.check()
    return "done"


async def test_work_within_its_budget_returns_its_result() -> None:
    assert await budget.offload("ingestion", 5.0, busy, 0.05, checking=True) == "done"


async def test_a_loop_that_checks_stops_at_the_budget() -> None:
    started = time.monotonic()
    with pytest.raises(InvalidMessage) as caught:
        await budget.offload("ingestion", 0.2, busy, 30, checking=True)
    assert caught.value.code == "ingestion.too_costly"
    assert "MEDSTREAM_MESSAGE_BUDGET_S" in caught.value.reason
    assert time.monotonic() - started < 5


async def test_work_that_never_checks_is_abandoned_after_the_grace() -> None:
    started = time.monotonic()
    with pytest.raises(InvalidMessage) as caught:
        await budget.offload("deid", 0.2, busy, 0.2 + budget.GRACE_S + 1.5, checking=False)
    assert caught.value.code == "deid.too_costly"
    assert time.monotonic() - started < 0.2 + budget.GRACE_S + 1.0


async def test_the_event_loop_keeps_running_meanwhile() -> None:
    """What keeps Kafka heartbeats going: ticks on the loop while the work runs."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticker = asyncio.create_task(tick())
    await budget.offload("ingestion", 5.0, busy, 1.0, checking=False)
    ticker.cancel()
    assert ticks >= 10


def test_outside_a_budget_check_does_nothing() -> None:
    budget.check()  # the CLI runs the same code with no budget
