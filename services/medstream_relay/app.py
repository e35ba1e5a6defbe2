"""The outbox relay: one process that drains the shared outbox into Kafka."""

from __future__ import annotations

import asyncio
import logging
import signal

from medstream.db import make_engine
from medstream.kafka import make_producer
from medstream.logging import configure_logging
from medstream.outbox import OutboxRelay
from medstream.settings import get_settings

log = logging.getLogger("medstream.relay")


async def run() -> None:
    """Relay until SIGTERM or SIGINT, then finish the batch in flight and exit."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    settings = get_settings()
    engine = make_engine(settings)
    producer = make_producer(settings)
    await producer.start()
    log.info("relay started")
    try:
        relay = OutboxRelay(engine, producer, settings.outbox_batch_size)
        await relay.run(stop, settings.outbox_poll_interval_s)
    finally:
        await producer.stop()
        await engine.dispose()
        log.info("relay stopped")


def main() -> None:
    """Run the relay service."""
    settings = get_settings()
    configure_logging("relay", settings.log_level, settings.log_format)
    asyncio.run(run())
