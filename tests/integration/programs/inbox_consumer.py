"""A consumer that writes to Postgres through the inbox and the outbox.

It is the subject of the crash proof: with ``--crash-after N`` it kills itself with
SIGKILL right after the Nth message's database transaction commits and before its
offset commits, which is the window in which a naive consumer duplicates effects.
It prints one line per message outcome for the test to read.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from medstream.consumer import ConsumerSet, ExactlyOnceProcessor, Outcome
from medstream.db import make_engine
from medstream.kafka import make_producer
from medstream.logging import configure_logging
from medstream.outbox import OutboundMessage
from medstream.received import Received
from medstream.settings import get_settings


async def main(args: argparse.Namespace) -> None:
    settings = get_settings()
    engine = make_engine(settings)
    producer = make_producer(settings)
    await producer.start()
    processed = 0

    async def handle(conn: AsyncConnection, received: Received) -> Sequence[OutboundMessage]:
        await conn.execute(
            text("INSERT INTO proof_effect (consumer_group, message_id) VALUES (:g, :m)"),
            {"g": args.group, "m": received.message_id},
        )
        return [
            OutboundMessage(
                topic=args.output,
                value=b"done:" + received.value,
                key=received.key,
                message_id=f"{received.message_id}:out",
            )
        ]

    def on_outcome(received: Received, outcome: Outcome, _elapsed: float) -> None:
        nonlocal processed
        print(f"outcome {received.message_id} {outcome.value}", flush=True)
        if outcome is Outcome.PROCESSED:
            processed += 1
            if processed == args.crash_after:
                # The database transaction has committed; the offset has not.
                os.kill(os.getpid(), signal.SIGKILL)

    processor = ExactlyOnceProcessor.from_settings(
        settings, engine=engine, producer=producer, group=args.group, handler=handle, stage="proof"
    )
    consumers = ConsumerSet(settings)
    consumers.subscribe(args.input, processor=processor, on_outcome=on_outcome)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await consumers.run(stop)
    await producer.stop()
    await engine.dispose()


if __name__ == "__main__":
    configure_logging("proof-consumer", fmt="console")
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--crash-after", type=int, default=0)
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
