"""gateway: the hospital's own protocols in, acknowledged only once Kafka holds them.

Three listeners share one idempotent, acks=all producer (``EdgePublisher``): HL7 v2
over MLLP, DICOM C-STORE and C-ECHO, and HTTP (DICOMweb STOW-RS and the FHIR REST
API, whose reads come from PostgreSQL as the gateway's own read-only role). The
gateway consumes nothing, so it has no inbox and no outbox (docs/gateways.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from medstream.db import make_engine
from medstream.kafka import make_producer
from medstream.ops.gateways.dimse import DicomListener
from medstream.ops.gateways.edge import EdgePublisher
from medstream.ops.gateways.http import HttpListener, make_app
from medstream.ops.gateways.mllp import MllpListener
from medstream.ops.gateways.smart import TokenIssuer
from medstream.runtime import prepare, run_loop, stop_on_signals
from medstream.settings import Settings

NAME = "gateway"
log = logging.getLogger(f"medstream.{NAME}")


def make_gateway_producer(settings: Settings) -> AIOKafkaProducer:
    """The shared producer, idempotent and acks=all, without compression: a DICOM
    instance barely shrinks, and compressing it is most of the time it takes to publish
    (a 7.2 MB film: 63 ms uncompressed, 92 ms with zstd, 231 ms with lz4;
    bench/e2e/compression.py). The HL7 and FHIR messages it also sends are small."""
    return make_producer(settings, compression_type=None)


async def serve(settings: Settings) -> None:
    """Start the producer and the listeners; run until SIGTERM."""
    stop = stop_on_signals(settings)
    loop = asyncio.get_running_loop()
    producer = make_gateway_producer(settings)
    # Kafka may be down when the gateway starts: wait for it rather than exit (the
    # listeners are not open yet, so senders see refused connections and retry).
    while True:
        try:
            await producer.start()
            break
        except (KafkaError, OSError) as error:
            log.warning("Kafka unavailable; retrying", extra={"error_class": type(error).__name__})
            await producer.stop()
            producer = make_gateway_producer(settings)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5)
            if stop.is_set():
                return
    engine = make_engine(settings)
    edge = EdgePublisher(producer, settings)
    mllp = MllpListener(edge, settings)
    dicom = DicomListener(edge, settings, loop)
    http = HttpListener(make_app(edge, TokenIssuer(settings), engine, settings), settings)
    try:
        await mllp.start()
        dicom.start()
        await http.start()
        log.info(
            "service started",
            extra={
                "mllp_port": settings.mllp_port,
                "dicom_port": settings.dicom_port,
                "http_port": settings.http_port,
            },
        )
        await stop.wait()
    finally:
        # Stop accepting first; what is in flight finishes (or its sender retries).
        await mllp.stop()
        await asyncio.to_thread(dicom.stop)
        await http.stop()
        await producer.stop()
        await engine.dispose()
        log.info("service stopped")


def main() -> None:
    """Run the gateway service."""
    settings = prepare(NAME)
    run_loop(serve(settings), settings)
