"""What every consuming service starts with: settings, logging, PostgreSQL, Kafka, Redis,
Prometheus, and a clean stop on SIGTERM. A service's app.py only composes its handlers."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from prometheus_client import start_http_server
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream.cache import make_redis
from medstream.consumer import ConsumerSet, ExactlyOnceProcessor, Handler
from medstream.db import make_engine
from medstream.kafka import make_producer
from medstream.logging import configure_logging
from medstream.outbox import OutboxRelay
from medstream.platform import secrets
from medstream.settings import Settings, get_settings


@dataclass
class ServiceRuntime:
    """The shared connections of one service process."""

    name: str
    settings: Settings
    engine: AsyncEngine
    producer: AIOKafkaProducer
    consumers: ConsumerSet
    redis: Redis

    def processor(self, *, group: str, handler: Handler | None, stage: str) -> ExactlyOnceProcessor:
        """An exactly-once processor on this runtime's connections; dead letters name
        ``stage``."""
        return ExactlyOnceProcessor.from_settings(
            self.settings,
            engine=self.engine,
            producer=self.producer,
            group=group,
            handler=handler,
            stage=stage,
        )


Wiring = Callable[[ServiceRuntime], Awaitable[None]]


def stop_on_signals(settings: Settings) -> asyncio.Event:
    """An event set by SIGTERM or SIGINT; also starts the process's Prometheus
    endpoint (MEDSTREAM_METRICS_PORT). Call it from the running event loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr="127.0.0.1")
    return stop


async def serve(name: str, wire: Wiring) -> None:
    """Start the connections, let ``wire`` register subscriptions, run until SIGTERM."""
    settings = get_settings().model_copy(update={"service_name": name})
    log = logging.getLogger(f"medstream.{name}")
    stop = stop_on_signals(settings)
    runtime = ServiceRuntime(
        name=name,
        settings=settings,
        engine=make_engine(settings),
        producer=make_producer(settings),
        consumers=ConsumerSet(settings),
        redis=make_redis(settings),
    )
    await runtime.producer.start()
    # Each service publishes its own outbox rows (row level security shows its role
    # only those), with its own Kafka identity, which may write only its topics.
    relay = OutboxRelay(runtime.engine, runtime.producer, settings.outbox_batch_size)
    relaying = asyncio.create_task(relay.run(stop, settings.outbox_poll_interval_s))

    def relay_ended(task: asyncio.Task[None]) -> None:
        # A relay that dies would leave the service consuming with nothing published:
        # stop the service instead, so the supervisor restarts it.
        if not task.cancelled() and task.exception() is not None:
            error = type(task.exception()).__name__
            log.critical("outbox relay failed", extra={"error_class": error})
            stop.set()

    relaying.add_done_callback(relay_ended)
    try:
        await wire(runtime)
        log.info("service started")
        # Returns once stop is set, or raises if a consumer failed for good: the
        # process then exits and the supervisor restarts it.
        await runtime.consumers.run(stop)
    finally:
        stop.set()
        # The relay finishes the batch in flight; what it leaves is sent at the next
        # start (rows are marked sent only after Kafka acknowledged them).
        relay_error = None
        try:
            await asyncio.wait_for(relaying, timeout=30)
        except Exception as exc:  # noqa: BLE001  (re-raised below, after the clean-up)
            relay_error = exc
        await runtime.producer.stop()
        await runtime.redis.aclose()
        await runtime.engine.dispose()
        log.info("service stopped")
    if relay_error is not None:
        raise SystemExit(1) from relay_error


T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T], settings: Settings) -> T:
    """Run a service's main coroutine on the event loop its settings name: uvloop
    where it is installed (it is a dependency except on Windows), else asyncio's."""
    if settings.event_loop == "uvloop":
        try:
            import uvloop  # noqa: PLC0415  (optional: not built for every platform)
        except ImportError:
            logging.getLogger("medstream.runtime").warning(
                "uvloop is not installed; running on asyncio's event loop"
            )
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that allocates its own malloc arena; the model workers'
    inference threads would each keep one (hundreds of MB of peak RSS). Two suffice."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to limit
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX


def limit_model_threads(threads: int) -> None:
    """Give the model libraries of this process ``threads`` CPU threads (0: their own
    default). torch is set directly when it is loaded (the workers import it with their
    model code); ``OMP_NUM_THREADS`` covers what loads OpenMP later. onnxruntime's
    sessions read ``torch.get_num_threads()`` when they are made."""
    if threads <= 0:
        return
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):  # set already, or parallel work has begun
            torch.set_num_interop_threads(threads)


def prepare(name: str, *, model_threads: int = 0) -> Settings:
    """What every service process does first: logging, the model libraries' threads
    (``MEDSTREAM_MODEL_THREADS``, else the service's ``model_threads``; 0 is the
    libraries' default), and a refusal to start on settings unfit for its environment.
    Returns the service's settings."""
    _limit_malloc_arenas()
    settings = get_settings()
    limit_model_threads(model_threads if settings.model_threads is None else settings.model_threads)
    configure_logging(name, settings.log_level, settings.log_format)
    named = settings.model_copy(update={"service_name": name})
    try:
        secrets.enforce(named)
    except secrets.InsecureSettings as refused:
        logging.getLogger(f"medstream.{name}").critical("%s", refused)
        raise SystemExit(2) from None
    return named


def run(name: str, wire: Wiring, *, model_threads: int = 0) -> None:
    """The entry point body of a consuming service: ``prepare``, then ``serve`` until
    stopped."""
    settings = prepare(name, model_threads=model_threads)
    run_loop(serve(name, wire), settings)
