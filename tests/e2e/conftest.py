"""The end-to-end tier: the whole stack, every service under the supervisor, fed the
synthetic hospital through its inbound topics, and judged by the ledger."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream import migrate
from medstream import stack as local_stack
from medstream.audit.trail import verify
from medstream.db import make_engine
from medstream.demo.feed import Feed
from medstream.demo.ledger import Outcome
from medstream.demo.run import GROUPS, check, publish, wait_for_outcomes
from medstream.deployment import SERVICES
from medstream.kafka import consumer_lag, ensure_topics
from medstream.settings import Settings, get_settings

from ..integration.test_deid_leakage import read_since

# The fault tests send a flood of bad input on purpose: the bad-deploy guard (which
# halts a consumer whose recent input is mostly invalid) is widened for them.
FAULT_ENV = {
    "MEDSTREAM_DEAD_LETTER_MAX_RATIO": "0.95",
    "MEDSTREAM_DEAD_LETTER_MAX_CONSECUTIVE": "400",
}


def _report(message: str) -> None:
    print(f"[stack] {message}")


@pytest.fixture(scope="session")
def settings() -> Settings:
    settings = get_settings()
    local_stack.up(local_stack.Stack(settings.state_dir), _report)
    migrate.upgrade()
    asyncio.run(ensure_topics(settings))
    return settings


def start_services(stack: local_stack.Stack, env: dict[str, str]) -> None:
    """Every service under the supervisor, with ``env`` added to their environment."""
    bin_dir = Path(sys.executable).parent
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        local_stack.up_services(stack, {s.name: bin_dir / s.entry_point for s in SERVICES}, _report)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def services(settings: Settings) -> Iterator[local_stack.Stack]:
    """Every service under the supervisor, with FAULT_ENV; stopped afterwards."""
    stack = local_stack.Stack(settings.state_dir)
    local_stack.down_services(stack, _report)
    start_services(stack, FAULT_ENV)
    yield stack
    local_stack.down_services(stack, _report)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(settings)
    yield engine
    await engine.dispose()


@dataclass
class Run:
    """A feed that was sent, when, and what became of it."""

    feed: Feed
    sent: dict[str, datetime]
    started_ms: int
    outcomes: dict[str, Outcome]


async def send(settings: Settings, feed: Feed) -> tuple[dict[str, datetime], int]:
    started_ms = int(datetime.now().timestamp() * 1000) - 1000
    return await publish(settings, feed.messages, lambda n: None), started_ms


def flowing(settings: Settings, feed: Feed, seconds: float) -> tuple[Run, asyncio.Task[None]]:
    """Start sending ``feed`` in 20 even chunks over ``seconds``, so faults hit a
    flowing stream; the Run fills in as messages are acknowledged."""
    run = Run(feed, {}, int(datetime.now().timestamp() * 1000) - 1000, {})

    async def pace() -> None:
        chunk = max(1, len(feed.messages) // 20)
        for start in range(0, len(feed.messages), chunk):
            part = Feed(feed.messages[start : start + chunk], feed.patients)
            run.sent.update(await publish(settings, part.messages, lambda n: None))
            await asyncio.sleep(seconds / 20)

    return run, asyncio.create_task(pace())


async def ledger_check(
    settings: Settings, engine: AsyncEngine, run: Run, timeout_s: float = 300
) -> None:
    """The ledger: every inbound message has exactly one outcome (the expected one),
    no result is duplicated in PostgreSQL or on ehr.outbound.fhir, consumer lag
    returns to 0, and the audit trail verifies."""
    run.outcomes = await wait_for_outcomes(
        engine, run.feed, timeout_s=timeout_s, advance=lambda n: None
    )
    problems = check(run.feed, run.outcomes)
    assert not problems, f"{len(problems)} messages without their one outcome: {problems[:10]}"

    outbound = await read_since(settings, ["ehr.outbound.fhir"], run.started_ms)
    ids = {m.message_id for m in run.feed.messages}
    ours = [
        r.headers and dict(r.headers).get("message-id", b"").decode()
        for r in outbound
        if dict(r.headers).get("inbound-message-id", b"").decode() in ids
    ]
    stored = sum(o.resources for o in run.outcomes.values())
    assert len(ours) == len(set(ours)), "a resource id was published twice"
    assert len(ours) == stored, "PostgreSQL and ehr.outbound.fhir disagree"

    lag: dict[str, int] = {}
    for _ in range(60):
        lag = await consumer_lag(settings, GROUPS)
        if not any(lag.values()):
            break
        await asyncio.sleep(1)
    assert not any(lag.values()), f"consumer lag did not return to 0: {lag}"

    async with engine.connect() as conn:
        reports = await verify(conn)
    assert not [f for r in reports for f in r.findings], "audit verify failed"
