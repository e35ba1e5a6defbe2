"""The shared inference runtime of the model workers (imaging, monitoring, notes).

- **Device.** CUDA when torch sees a GPU, else the CPU; ``MEDSTREAM_DEVICE`` forces
  one. On the GPU, inference runs under bf16 autocast (mixed precision); on the CPU a
  model may be dynamically quantised to int8 where its package says that is the
  fastest path that keeps accuracy (bench/models).
- **Warm-up.** A worker runs its model on a dummy batch before it subscribes, and
  reports ready (the ``medstream_worker_ready`` gauge) only after that.
- **Dynamic micro-batching.** Records are taken from Kafka in batches of at most
  ``max_batch``, waiting at most ``max_wait_ms`` to fill one (the consumer's
  ``getmany``): under light load a record is scored alone at once, under heavy load
  batches fill up. The queue is the consumer's fetch buffer, bounded by
  ``max.partition.fetch.bytes`` per partition; one batch is in flight at a time, so
  fetching pauses while the worker is busy (backpressure), and offsets commit only
  after the batch's results and audit rows are committed to PostgreSQL.
- **Metrics** (Prometheus, on ``MEDSTREAM_METRICS_PORT``): queue time (broker append
  to batch start), batch size, inference time, items scored with the throughput of
  the last batch, and readiness.
- **Scaling.** Start more workers with the same group id: Kafka spreads the input
  topic's partitions over them, and per-patient order holds because deid keys every
  de-identified topic by pseudonym.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:  # model code imports this module without Kafka or database clients
    from sqlalchemy.ext.asyncio import AsyncConnection

    from medstream.consumer import BatchHandler, BatchResult
    from medstream.received import Received

_LABEL = ("worker",)
QUEUE_SECONDS = Histogram(
    "medstream_worker_queue_seconds",
    "Time from the broker's append to the start of the batch that scores the record",
    _LABEL,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BATCH_SIZE = Histogram(
    "medstream_worker_batch_size",
    "Records per micro-batch",
    _LABEL,
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
INFERENCE_SECONDS = Histogram(
    "medstream_worker_inference_seconds",
    "Model time per micro-batch (preprocessing, forward pass and explanation)",
    _LABEL,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SCORED = Counter("medstream_worker_scored_total", "Records scored", _LABEL)
THROUGHPUT = Gauge(
    "medstream_worker_throughput_per_second",
    "Records per second of model time in the last micro-batch",
    _LABEL,
)
READY = Gauge("medstream_worker_ready", "1 once the model is loaded, verified and warm", _LABEL)


def select_device(preference: str | None = None) -> torch.device:
    """``cuda`` when available, else ``cpu``; ``MEDSTREAM_DEVICE`` (or ``preference``)
    may force ``cpu``, or ask for ``cuda`` and fail clearly where there is none."""
    wanted = (preference or os.environ.get("MEDSTREAM_DEVICE") or "auto").lower()
    if wanted == "cpu":
        return torch.device("cpu")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "MEDSTREAM_DEVICE=cuda but torch sees no GPU; unset it to use the CPU fallback."
        )
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def mixed_precision(device: torch.device) -> Iterator[None]:
    """bf16 autocast on the GPU; plain fp32 on the CPU. Gradients stay available, for
    explanations made in the same pass as the prediction."""
    if device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


@contextlib.contextmanager
def inference_mode(device: torch.device) -> Iterator[None]:
    """No gradients, and mixed precision on the GPU."""
    with torch.inference_mode(), mixed_precision(device):
        yield


def quantise_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantisation of the Linear layers, for the CPU."""
    import warnings  # noqa: PLC0415

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        quantised: torch.nn.Module = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            model, {torch.nn.Linear}, dtype=torch.qint8
        )
    return quantised


@dataclass
class WorkerMetrics:
    """The Prometheus series of one worker, labelled by its name."""

    worker: str

    def ready(self) -> None:
        READY.labels(self.worker).set(1)

    def observe_batch(self, records: Sequence[Received], model_seconds: float) -> None:
        now = time.time()
        for record in records:
            if record.timestamp > 0:
                QUEUE_SECONDS.labels(self.worker).observe(
                    max(0.0, now - model_seconds - record.timestamp / 1000)
                )
        BATCH_SIZE.labels(self.worker).observe(len(records))
        INFERENCE_SECONDS.labels(self.worker).observe(model_seconds)
        SCORED.labels(self.worker).inc(len(records))
        if model_seconds > 0:
            THROUGHPUT.labels(self.worker).set(len(records) / model_seconds)


def measured(metrics: WorkerMetrics, batch_handler: BatchHandler) -> BatchHandler:
    """``batch_handler`` with its batches timed and counted."""

    async def handle(conn: AsyncConnection, records: Sequence[Received]) -> Sequence[BatchResult]:
        started = time.perf_counter()
        results = await batch_handler(conn, records)
        metrics.observe_batch(records, time.perf_counter() - started)
        return results

    return handle


def warm_up(run_once: Callable[[], object], rounds: int = 2) -> float:
    """Run the model ``rounds`` times on a dummy batch; return the last run's seconds."""
    seconds = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        run_once()
        seconds = time.perf_counter() - started
    return seconds
