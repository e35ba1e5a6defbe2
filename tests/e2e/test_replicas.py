"""Two processes of every service in the same consumer groups: they split the
partitions, one is SIGKILLed in the middle of its batches while the stream flows, the
supervisor brings it back (another rebalance), and the ledger still adds up."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream import stack as local_stack
from medstream.deployment import SERVICES
from medstream.settings import Settings

from .conftest import FAULT_ENV, flowing, ledger_check, start_services
from .test_faults import feed, settled_assignments

REPLICAS = 2


@pytest.fixture(scope="module")
def replicas(settings: Settings) -> Iterator[local_stack.Stack]:
    stack = local_stack.Stack(settings.state_dir)
    local_stack.down_services(stack, print)
    start_services(stack, FAULT_ENV, replicas=REPLICAS)
    yield stack
    local_stack.down_services(stack, print)


def _pid(stack: local_stack.Stack, name: str) -> int:
    return int((stack.state_dir / "services" / f"{name}.pid").read_text())


async def kill_second_replicas(stack: local_stack.Stack, pause_s: float) -> None:
    """SIGKILL the second process of ingestion, deid and results, one after another."""
    for name in (f"ingestion-{REPLICAS}", f"deid-{REPLICAS}", f"results-{REPLICAS}"):
        os.kill(_pid(stack, name), signal.SIGKILL)
        await asyncio.sleep(pause_s)


async def test_a_replica_killed_mid_batch_loses_and_duplicates_nothing(
    settings: Settings, replicas: local_stack.Stack, engine: AsyncEngine
) -> None:
    running = local_stack.services_running(replicas)
    assert all(running.get(f"{s.name}-{REPLICAS}") for s in SERVICES), running
    log_dir = replicas.state_dir / "services"
    await settled_assignments(log_dir, ["ingestion", f"ingestion-{REPLICAS}", "deid"])
    run, sending = flowing(settings, feed(patients=6, hours=4, malformed=20), seconds=20)
    await asyncio.sleep(4)  # the stream is flowing: the replicas are between batches or in one
    await kill_second_replicas(replicas, pause_s=1.5)
    await sending
    await ledger_check(settings, engine, run, timeout_s=420, resends=True)


async def test_a_replica_killed_inside_a_full_batch_loses_and_duplicates_nothing(
    settings: Settings, replicas: local_stack.Stack, engine: AsyncEngine
) -> None:
    """A burst of 490 messages at once fills the batches (ingestion takes up to 100
    records a fetch, deid 32, results 64); each second replica is killed while the burst
    is being worked through, so most likely inside a full batch: before its commit,
    or between its commit and its offset commit."""
    log_dir = replicas.state_dir / "services"
    await settled_assignments(log_dir, ["ingestion", f"ingestion-{REPLICAS}", "deid"])
    burst = feed(patients=24, hours=4, malformed=10)
    assert len(burst.messages) >= 300
    run, sending = flowing(settings, burst, seconds=2)
    await asyncio.sleep(2.5)  # the whole burst is on the topics: batches are full
    await kill_second_replicas(replicas, pause_s=1.0)
    await sending
    await ledger_check(settings, engine, run, timeout_s=600, resends=True)
