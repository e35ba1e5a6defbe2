"""The integration tier runs against the real local stack, started here if it is down."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream import migrate
from medstream import stack as local_stack
from medstream.consumer import ConsumerSet
from medstream.db import make_engine
from medstream.deployment import SERVICES as SERVICE_SPECS
from medstream.kafka import ensure_acls, ensure_topics
from medstream.settings import Settings, get_settings
from medstream.topics import Topic


def _report(message: str) -> None:
    print(f"[stack] {message}")


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings of the local stack, which is started (idempotently) for the session."""
    settings = get_settings()
    stack = local_stack.Stack(settings.state_dir)
    local_stack.up(stack, _report)
    migrate.upgrade()
    asyncio.run(ensure_topics(settings))
    asyncio.run(ensure_acls(settings))
    return settings


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The services' role: what a service may do, a test may do through this."""
    engine = make_engine(settings)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def admin_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The owner role, for the tables that test programs write to."""
    engine = make_engine(settings, admin=True)
    yield engine
    await engine.dispose()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Names unique to this test run, so reruns never see each other's data."""
    run = uuid.uuid4().hex[:10]
    return lambda prefix: f"{prefix}.{run}"


@pytest.fixture(scope="session")
async def proof_table(admin_engine: AsyncEngine) -> str:
    """A side-effect table with no unique key: only the inbox can keep it duplicate-free."""
    async with admin_engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS proof_effect ("
                " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                " consumer_group text NOT NULL, message_id text NOT NULL,"
                " created_at timestamptz NOT NULL DEFAULT now())"
            )
        )
        await conn.execute(text("GRANT SELECT, INSERT ON proof_effect TO medstream"))
    return "proof_effect"


PIPELINE = (
    "medstream-ingestion",
    "medstream-deid",
    "medstream-monitoring",
    "medstream-imaging",
    "medstream-notes",
    "medstream-results",
    "medstream-audit",
)
METRICS_PORTS = {
    "medstream-monitoring": 19311,
    "medstream-imaging": 19312,
    "medstream-notes": 19313,
}


@pytest.fixture(scope="session")
def pipeline(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every service as a real process, logging to a folder of its own.

    The stack's own services are stopped meanwhile: in the same consumer groups they
    would take some of the partitions, and the test must exercise the code under test.
    """
    stack = local_stack.Stack(settings.state_dir)
    were_running = [name for name, alive in local_stack.services_running(stack).items() if alive]
    local_stack.down_services(stack, print)
    logs = tmp_path_factory.mktemp("service-logs")
    bin_dir = Path(sys.executable).parent
    processes = []
    for name in PIPELINE:
        handle = (logs / f"{name}.log").open("wb")
        env = {**os.environ, "MEDSTREAM_METRICS_PORT": str(METRICS_PORTS.get(name, 0))}
        processes.append(
            subprocess.Popen(
                [str(bin_dir / name)], stdout=handle, stderr=subprocess.STDOUT, env=env
            )
        )
    yield logs
    for proc in processes:
        proc.send_signal(signal.SIGTERM)
    for proc in processes:
        proc.wait(timeout=30)
    if were_running:
        local_stack.up_services(
            stack, {spec.name: bin_dir / spec.entry_point for spec in SERVICE_SPECS}, print
        )


async def create_topics(settings: Settings, *names: str, partitions: int = 3) -> None:
    """Create throwaway topics (and their dead-letter topics) for one test."""
    topics = [
        Topic(
            name=n,
            description="test",
            content_type="application/octet-stream",
            partitions=partitions,
            retention_ms=3_600_000,
        )
        for n in names
    ]
    topics += [
        Topic(
            name=f"{n}.dlt",
            description="test",
            content_type="application/octet-stream",
            partitions=1,
            retention_ms=3_600_000,
        )
        for n in names
    ]
    await ensure_topics(settings, topics)


@asynccontextmanager
async def running(consumers: ConsumerSet) -> AsyncIterator[None]:
    """Run ``consumers`` for the block, then stop them and surface any failure."""
    stop = asyncio.Event()
    task = asyncio.create_task(consumers.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task
