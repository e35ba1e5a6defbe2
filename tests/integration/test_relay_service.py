"""The medstream-relay service publishes outbox rows once each, even beside another
relay (the stack's own, when it runs), and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream.outbox import OutboundMessage, enqueue
from medstream.settings import Settings

from .conftest import create_topics
from .test_crash_between_commits import read_all, wait_for

BATCHES, PER_BATCH = 10, 30


async def test_relay_service_publishes_every_row_once(
    settings: Settings,
    engine: AsyncEngine,
    unique: Callable[[str], str],
    tmp_path: Path,
) -> None:
    topic = unique("proof.relay")
    await create_topics(settings, topic)
    log = tmp_path / "relay.log"
    with log.open("wb") as out:
        relay = subprocess.Popen(
            [str(Path(sys.executable).parent / "medstream-relay")],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await wait_for(lambda: "relay started" in log.read_text(), 30, "the relay to start")
        for batch in range(BATCHES):
            async with engine.begin() as conn:
                for i in range(PER_BATCH):
                    await enqueue(
                        conn,
                        OutboundMessage(
                            topic=topic,
                            value=f"v{batch}-{i}".encode(),
                            key=f"k{i % 3}".encode(),
                            message_id=f"{topic}-{batch}-{i}",
                            headers={"source-system": "test"},
                        ),
                    )

        async def all_sent() -> bool:
            async with engine.connect() as conn:
                unsent = await conn.scalar(
                    text("SELECT count(*) FROM outbox WHERE topic = :t AND sent_at IS NULL"),
                    {"t": topic},
                )
            return unsent == 0

        await wait_for(all_sent, 60, "every row to be marked sent")
    finally:
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(timeout=30) == 0, log.read_text()

    total = BATCHES * PER_BATCH
    records = await read_all(settings, topic, total)
    ids = Counter(dict(r.headers)["message-id"].decode() for r in records)
    assert len(ids) == total
    assert max(ids.values()) == 1, "a row was published twice"
    assert all(dict(r.headers)["source-system"] == b"test" for r in records)
    assert "relay stopped" in log.read_text()
