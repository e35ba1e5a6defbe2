"""How the outbox relay learns of new rows, side by side in one run: polling, a
PostgreSQL LISTEN/NOTIFY wake-up, and the in-process wake-up MedStream uses.

    make up && .venv/bin/python bench/e2e/relay_wakeup.py      (or: make bench-wakeup)

The same relay (OutboxRelay, poll interval 0.2 s, the services' default) publishes a
trickle of outbox rows, one every 50 ms (low load, where the wake-up matters: under
load the relay never sleeps). Latency is from the writer's commit to the record's
arrival at a consumer in the same process (one clock). Three ways to wake, in
interleaved rounds so that drift on this noisy machine hits all alike:

- ``poll``: the writer commits on another engine (as another process would), so the
  relay finds the row at its next poll;
- ``notify``: the same, and the writer's transaction also runs ``NOTIFY``; the relay
  holds a ``LISTEN`` connection whose callback wakes it;
- ``in_process``: the writer commits on the relay's own engine, as each service does
  since its relay runs in its process (``outbox.wake_on_commit``).

Reported: p50 and p99 per way, and each as a ratio of polling. Results:
bench/results/e2e-relay-wakeup.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "libs"))

from medstream import outbox  # noqa: E402
from medstream.db import make_engine  # noqa: E402
from medstream.kafka import ensure_topics, make_consumer, make_producer  # noqa: E402
from medstream.outbox import OutboundMessage, OutboxRelay  # noqa: E402
from medstream.platform.secrets import database_url  # noqa: E402
from medstream.settings import get_settings  # noqa: E402
from medstream.topics import Topic  # noqa: E402

RESULTS = ROOT / "bench" / "results"
ROUNDS = int(os.environ.get("MEDSTREAM_BENCH_ROUNDS", "3"))
PER_ROUND = int(os.environ.get("MEDSTREAM_BENCH_MESSAGES", "40"))
GAP_S, POLL_S = 0.05, 0.2
CHANNEL = "medstream_bench_outbox"
WAYS = ("poll", "notify", "in_process")


def log(message: str) -> None:
    print(f"[relay-wakeup] {message}", file=sys.stderr, flush=True)


async def measure() -> dict[str, list[float]]:
    settings = get_settings()
    topic = f"bench.relay-wakeup.{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, [Topic(topic, "bench", "application/octet-stream", 1, 600_000)])
    relay_engine, other_engine = make_engine(settings), make_engine(settings)
    producer = make_producer(settings)
    consumer = make_consumer(settings, topic, group_id=None, auto_offset_reset="earliest")
    await producer.start()
    await consumer.start()
    committed: dict[str, float] = {}
    arrived: dict[str, float] = {}

    async def consume() -> None:
        async for record in consumer:
            arrived[record.value.decode()] = time.monotonic()

    wake = asyncio.Event()
    listener = await asyncpg.connect(
        database_url(settings).replace("postgresql+asyncpg://", "postgresql://")
    )
    await listener.add_listener(CHANNEL, lambda *_: wake.set())
    stop = asyncio.Event()
    relay = OutboxRelay(relay_engine, producer, settings.outbox_batch_size)
    tasks = [
        asyncio.create_task(consume()),
        asyncio.create_task(relay.run(stop, POLL_S, wake=wake)),
    ]
    latencies: dict[str, list[float]] = {way: [] for way in WAYS}
    try:
        await asyncio.sleep(1.0)
        for round_ in range(ROUNDS):
            for way in WAYS:
                engine = relay_engine if way == "in_process" else other_engine
                ids = []
                for _ in range(PER_ROUND):
                    message_id = f"{way}-{uuid.uuid4().hex}"
                    async with engine.begin() as conn:
                        await outbox.enqueue(
                            conn, OutboundMessage(topic, message_id.encode(), message_id)
                        )
                        if way == "notify":
                            await conn.execute(text(f"NOTIFY {CHANNEL}"))
                    committed[message_id] = time.monotonic()
                    ids.append(message_id)
                    await asyncio.sleep(GAP_S)
                deadline = time.monotonic() + 30
                # A bounded wait for the round's last records (the consumer task records them).
                while not all(i in arrived for i in ids) and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                latencies[way] += [1000 * (arrived[i] - committed[i]) for i in ids if i in arrived]
                log(f"round {round_ + 1}/{ROUNDS}: {way} done")
    finally:
        stop.set()
        for task in tasks[:1]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await listener.close()
        await consumer.stop()
        await producer.stop()
        await relay_engine.dispose()
        await other_engine.dispose()
    expected = ROUNDS * PER_ROUND
    missing = {w: expected - len(v) for w, v in latencies.items() if len(v) != expected}
    if missing:
        raise SystemExit(f"records did not arrive within 30 s: {missing}")
    return latencies


def summary(raw: dict[str, list[float]]) -> dict[str, Any]:
    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    table = {
        way: {
            "p50_ms": round(statistics.median(v), 1),
            "p99_ms": pct(v, 0.99),
            "max_ms": round(max(v), 1),
            "n": len(v),
        }
        for way, v in raw.items()
    }
    base = table["poll"]
    ratios = {
        way: {k: round(row[k] / base[k], 3) for k in ("p50_ms", "p99_ms")}
        for way, row in table.items()
        if way != "poll"
    }
    return {"latency_commit_to_consumer": table, "ratio_to_poll": ratios}


def main() -> None:
    raw = asyncio.run(measure())
    result = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "rounds": ROUNDS,
        "workload": (
            f"{PER_ROUND} outbox rows a round per way, one every {int(GAP_S * 1000)} ms;"
            f" relay poll interval {POLL_S} s"
        ),
        **summary(raw),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "e2e-relay-wakeup.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
