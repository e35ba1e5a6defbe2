"""Survival under faults, each on a bounded stream of the synthetic hospital and each
ending with the ledger check (tests/e2e/conftest.py). CI runs these sizes; `make
faults` runs larger ones (MEDSTREAM_FAULT_SCALE)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream import stack as local_stack
from medstream.demo.feed import Feed, hospital_feed
from medstream.deployment import SERVICES
from medstream.settings import Settings
from medstream.topics import ALL_TOPICS

from ..integration.test_deid_leakage import read_since, texts_of
from .conftest import flowing, ledger_check, send
from .hostile import PLANTED, corpus

SCALE = int(os.environ.get("MEDSTREAM_FAULT_SCALE", "1"))


def feed(patients: int, hours: int, malformed: int = 0) -> Feed:
    return hospital_feed(
        patients=patients * SCALE,
        hours=hours,
        every_minutes=15,
        malformed=malformed * SCALE,
        seed=SCALE,
        run=f"e2e{uuid.uuid4().hex[:6]}",
    )


async def settled_assignments(log_dir: Path, names: list[str], quiet_s: float = 5.0) -> None:
    """Wait until each named service, as now running, has logged its partition
    assignment and logged no other for ``quiet_s``: its start-up rebalance is over."""
    for _ in range(120):
        settled = True
        for name in names:
            started = (log_dir / f"{name}.pid").stat().st_mtime
            lines = (log_dir / f"{name}.log").read_text(errors="replace").splitlines()
            times = [
                datetime.fromisoformat(json.loads(line)["time"]).timestamp()
                for line in lines
                if "partitions assigned" in line
            ]
            latest = max(times, default=0.0)
            settled &= latest >= started and time.time() - latest > quiet_s
        if settled:
            return
        await asyncio.sleep(1)
    raise AssertionError(f"{names} never settled their partition assignments")


def pids(stack: local_stack.Stack) -> dict[str, int]:
    folder = stack.state_dir / "services"
    return {s.name: int((folder / f"{s.name}.pid").read_text()) for s in SERVICES}


async def restarted(stack: local_stack.Stack, name: str, old: int, timeout_s: float = 60) -> None:
    for _ in range(int(timeout_s * 4)):
        try:
            if pids(stack)[name] != old:
                return
        except (OSError, ValueError):
            pass
        await asyncio.sleep(0.25)
    raise AssertionError(f"the supervisor did not restart {name}")


async def test_the_hostile_corpus_ends_each_message_exactly_as_expected(
    settings: Settings, services: local_stack.Stack, engine: AsyncEngine
) -> None:
    """Every kind of input we did not invent (tests/e2e/hostile.py): each message ends
    exactly as its kind says, from the stage it names, with no service restarting,
    no partition stalling and nothing planted reaching a log or a downstream topic."""
    before = pids(services)
    log_dir = services.state_dir / "services"
    await settled_assignments(log_dir, ["ingestion", "deid"])
    offsets = {p.name: p.stat().st_size for p in log_dir.glob("*.log")}
    messages = corpus(f"hx{uuid.uuid4().hex[:6]}", scale=SCALE)
    run = await send(settings, Feed(messages, []))
    await ledger_check(settings, engine, run, timeout_s=420)
    assert pids(services) == before, "a service restarted: hostile input must never crash one"
    # A stage that blocked its event loop (a 50,000-entry Bundle, a 20 MB note) would
    # let its group session expire: the rebalance logs a new assignment.
    for name in ("ingestion.log", "deid.log"):
        with (log_dir / name).open("rb") as log:
            log.seek(offsets.get(name, 0))
            assert b"partitions assigned" not in log.read(), f"{name}: a rebalance"
    logs = {
        p.name: p.read_text(errors="replace") for p in services.state_dir.glob("services/*.log")
    }
    for planted in PLANTED:
        leaked = [name for name, text in logs.items() if planted in text]
        assert not leaked, f"{planted} reached the logs of {leaked}"
    downstream = [t.name for t in ALL_TOPICS if not t.restricted and not t.is_dead_letter]
    for record in await read_since(settings, downstream, run.started_ms):
        for text in texts_of(record):
            assert not any(p in text for p in PLANTED), f"a planted value reached {record.topic}"


async def test_malformed_flood_is_dead_lettered_and_the_good_get_results(
    settings: Settings, services: local_stack.Stack, engine: AsyncEngine
) -> None:
    """500 bad inputs of 12 kinds (truncated, wrong encoding, oversize, wrong types, XML
    on the JSON topic, HL7 without MSH, DICOM without preamble, a Bundle holding an
    invalid resource…) interleaved with 112 good ones."""
    before = pids(services)
    hospital = feed(patients=4, hours=6, malformed=500)
    assert hospital.count(malformed=True) >= 500
    run = await send(settings, hospital)
    await ledger_check(settings, engine, run)
    assert pids(services) == before, "a service restarted: bad input must never crash one"
    codes = {code for o in run.outcomes.values() for _, code in o.rejected}
    assert codes == {m.expect_code for m in hospital.messages if m.expect_code}
    assert len(codes) >= 11


async def test_every_service_killed_mid_stream_loses_and_duplicates_nothing(
    settings: Settings, services: local_stack.Stack, engine: AsyncEngine
) -> None:
    """SIGKILL each service once while the stream flows; the supervisor restarts it."""
    run, sending = flowing(settings, feed(patients=4, hours=4, malformed=10), seconds=30)
    await asyncio.sleep(2)
    for spec in SERVICES:
        old = pids(services)[spec.name]
        os.kill(old, signal.SIGKILL)
        await restarted(services, spec.name, old)
        await asyncio.sleep(1.0)
    await sending
    await ledger_check(settings, engine, run, timeout_s=420, resends=True)


async def test_postgres_and_redis_restarts_mid_stream(
    settings: Settings,
    services: local_stack.Stack,
    engine: AsyncEngine,
    request: pytest.FixtureRequest,
) -> None:
    """PostgreSQL restarts while the stream flows, then Redis does. With two processes
    of a service, a relay whose "sent" mark died with PostgreSQL may see the other
    relay send those rows again (docs/architecture.md: its memory of acknowledged rows
    is its own), so the ledger accepts identical repeats there, and only there."""
    run, sending = flowing(settings, feed(patients=4, hours=4, malformed=10), seconds=30)
    await asyncio.sleep(5)
    local_stack.down_postgres(services, print)
    await asyncio.sleep(3)
    local_stack.up_postgres(services, print)
    await asyncio.sleep(5)
    local_stack.down_redis(services, print)
    await asyncio.sleep(3)
    local_stack.up_redis(services, print)
    await sending
    await engine.dispose()  # its pooled connections died with the server
    replicas = request.node.callspec.params.get("services", 1)
    await ledger_check(settings, engine, run, timeout_s=420, resends=replicas > 1)
