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
import signal

from aiokafka.errors import KafkaError
from prometheus_client import start_http_server

from medstream.db import make_engine
from medstream.kafka import make_producer
from medstream.ops.gateways.dimse import DicomListener
from medstream.ops.gateways.edge import EdgePublisher
from medstream.ops.gateways.http import HttpListener, make_app
from medstream.ops.gateways.mllp import MllpListener
from medstream.ops.gateways.smart import TokenIssuer
from medstream.runtime import prepare
from medstream.settings import Settings

NAME = "gateway"
log = logging.getLogger(f"medstream.{NAME}")


async def serve(settings: Settings) -> None:
    """Start the producer and the listeners; run until SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr="127.0.0.1")
    producer = make_producer(settings)
    # Kafka may be down when the gateway starts: wait for it rather than exit (the
    # listeners are not open yet, so senders see refused connections and retry).
    while True:
        try:
            await producer.start()
            break
        except (KafkaError, OSError) as error:
            log.warning("Kafka unavailable; retrying", extra={"error_class": type(error).__name__})
            await producer.stop()
            producer = make_producer(settings)
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
    asyncio.run(serve(settings))
