"""Proof: a consumer killed between its database commit and its offset commit
leaves exactly one effect and exactly one outbound message per input."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream.kafka import make_consumer, make_producer
from medstream.outbox import OutboxRelay
from medstream.settings import Settings

from .conftest import create_topics

PROGRAM = Path(__file__).parent / "programs" / "inbox_consumer.py"
MESSAGES = 40
CRASH_AFTER = 15


def start_consumer(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, str(PROGRAM), *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )


async def effects(engine: AsyncEngine, group: str) -> Counter[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT message_id FROM proof_effect WHERE consumer_group = :g"), {"g": group}
        )
        return Counter(row.message_id for row in rows)


async def wait_for(check: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


async def read_all(settings: Settings, topic: str, expect: int, settle_s: float = 3.0) -> list:
    consumer = make_consumer(settings, topic, group_id=None)
    await consumer.start()
    records: list = []
    try:
        deadline = time.monotonic() + 60
        quiet_until = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for partition_records in batch.values():
                records.extend(partition_records)
            if len(records) >= expect:
                # Keep reading a little longer: a duplicate would arrive after the last one.
                quiet_until = quiet_until or time.monotonic() + settle_s
                if time.monotonic() >= quiet_until:
                    break
    finally:
        await consumer.stop()
    return records


async def test_sigkill_between_db_commit_and_offset_commit(
    settings: Settings,
    engine: AsyncEngine,
    proof_table: str,
    unique: Callable[[str], str],
    tmp_path: Path,
) -> None:
    source, output, group = (
        unique("proof.crash.in"),
        unique("proof.crash.out"),
        unique("proof-crash"),
    )
    await create_topics(settings, source, output)

    producer = make_producer(settings)
    await producer.start()
    ids = [f"{group}-m{i}" for i in range(MESSAGES)]
    try:
        for i, message_id in enumerate(ids):
            await producer.send_and_wait(
                source,
                value=f"payload {i}".encode(),
                key=f"patient-{i % 7}".encode(),
                headers=[("message-id", message_id.encode())],
            )
    finally:
        await producer.stop()

    args = ["--input", source, "--output", output, "--group", group]
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start_consumer([*args, "--crash-after", str(CRASH_AFTER)], first_log)
    assert first.wait(timeout=90) == -9, first_log.read_text()
    after_crash = await effects(engine, group)
    # It died after the batch holding its 15th message committed: that batch's effects
    # are in, its offsets are not.
    assert CRASH_AFTER <= sum(after_crash.values()) < MESSAGES

    second = start_consumer(args, second_log)
    try:
        await wait_for(
            lambda: _all_done(engine, group, ids), 90, "the restarted consumer to finish"
        )
    finally:
        second.terminate()
        second.wait(timeout=30)

    final = await effects(engine, group)
    assert set(final) == set(ids)
    assert max(final.values()) == 1, "an effect was applied twice"
    # The message killed in flight came back and the inbox recognised it.
    assert " duplicate" in second_log.read_text()

    # Relay the outbox (a running relay service may share the work: SKIP LOCKED).
    async def drained() -> bool:
        await OutboxRelay(engine, relay_producer).relay_once()
        async with engine.connect() as conn:
            left = await conn.scalar(
                text("SELECT count(*) FROM outbox WHERE topic = :t AND sent_at IS NULL"),
                {"t": output},
            )
        return left == 0

    relay_producer = make_producer(settings)
    await relay_producer.start()
    try:
        await wait_for(drained, 60, "the outbox to drain")
    finally:
        await relay_producer.stop()

    records = await read_all(settings, output, MESSAGES)
    out_ids = Counter(dict(r.headers)["message-id"].decode() for r in records)
    assert len(records) == MESSAGES
    assert set(out_ids) == {f"{m}:out" for m in ids}
    assert max(out_ids.values()) == 1


async def _all_done(engine: AsyncEngine, group: str, ids: list[str]) -> bool:
    return set(await effects(engine, group)) == set(ids)
