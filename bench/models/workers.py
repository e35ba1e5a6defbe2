"""The model workers through Kafka, against their model-only ceilings, in one run.

    make up && .venv/bin/python bench/models/workers.py [monitoring] [imaging] [notes]

For each worker, on the real local stack (Kafka, PostgreSQL, Redis, the relay):

1. **Ceiling.** The worker's own batch computation (preprocessing, forward pass and
   explanation, exactly the functions the worker calls) in a tight loop in this process,
   at the worker's batch size: everything but Kafka, PostgreSQL and Redis.
2. **Saturation.** A backlog of de-identified input events is produced to the worker's
   topic while it runs; throughput is events over the time from the first input to the
   last result on the results topic (so the outbox and relay count too). Once with
   dynamic batching (the worker's defaults) and once with ``MEDSTREAM_WORKER_MAX_BATCH=1``.
3. **Latency-bounded throughput.** Open-loop load at rising rates (fractions of each
   configuration's own saturation throughput); latency is the result's broker
   timestamp minus the input's. The throughput of a configuration is the highest
   offered rate whose p99 stays within the model's bound (open-loop: a rate the
   worker cannot sustain makes latency grow without bound): batch size 1 against
   dynamic batching at the same bound.
4. **Memory.** The worker process's peak RSS (VmHWM) after all of it.

The stack's own services are stopped for the run and restarted after it, so that only
the processes under test consume.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "libs"))

from medstream import stack as local_stack  # noqa: E402
from medstream.clinical import (  # noqa: E402
    DocumentEvent,
    ImagingEvent,
    Vital,
    VitalsEvent,
    VitalSign,
)
from medstream.deployment import SERVICES  # noqa: E402
from medstream.envelope import Envelope  # noqa: E402
from medstream.kafka import make_consumer, make_producer  # noqa: E402
from medstream.models.package import latest  # noqa: E402
from medstream.settings import get_settings  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
METRICS_PORT = 19399
STEP_SECONDS = 5.0
LADDER = (0.25, 0.5, 0.75, 0.9)


@dataclass
class Workload:
    """One worker: its topics, input events, ceiling and latency bound."""

    name: str
    topic: str
    results: str
    batch: int
    bound_ms: float
    events: Callable[[int], list[tuple[str, bytes]]]  # count -> (key, value)
    ceiling: Callable[[], float]  # items/s


def _envelope(payload: Any, kind: str, patient: str) -> bytes:
    now = datetime.now(UTC)
    return (
        Envelope[Any](
            event_type=f"medstream.deid.{kind}.v1",
            schema_version=1,
            correlation_id=str(uuid.uuid4()),
            occurred_at=now,
            patient_pseudonym=patient,
            payload=payload,
        )
        .model_dump_json()
        .encode()
    )


def _event_source(
    kind: str, payload: Callable[[int, str], Any]
) -> Callable[[int], list[tuple[str, bytes]]]:
    """``count`` more de-identified events of ``kind``, numbered across calls, over 400
    rotating pseudonyms; ``payload(n, pseudonym)`` makes the n-th event's payload."""
    numbers = itertools.count(1)

    def events(count: int) -> list[tuple[str, bytes]]:
        out = []
        for n in itertools.islice(numbers, count):
            patient = f"psn-bench{n % 400:04d}"
            out.append((patient, _envelope(payload(n, patient), kind, patient)))
        return out

    return events


def monitoring_workload() -> Workload:
    from medstream.monitoring import model as monitoring  # noqa: PLC0415
    from medstream.monitoring.simulator import simulate  # noqa: PLC0415

    rng = np.random.default_rng(0)
    start = datetime(2026, 3, 1, tzinfo=UTC)

    def vitals(n: int, patient: str) -> VitalsEvent:
        at = start + timedelta(hours=4 * (n // 400))
        values = {
            Vital.HEART_RATE: ("8867-4", rng.normal(85, 15), "/min"),
            Vital.RESPIRATORY_RATE: ("9279-1", rng.normal(17, 3), "/min"),
            Vital.SPO2: ("59408-5", min(100, rng.normal(96, 2)), "%"),
            Vital.SYSTOLIC_BP: ("8480-6", rng.normal(125, 18), "mm[Hg]"),
            Vital.TEMPERATURE: ("8310-5", rng.normal(37, 0.5), "Cel"),
        }
        return VitalsEvent(
            patient=patient,
            vitals=[
                VitalSign(vital=v, loinc=c, value=round(float(x), 1), unit=u, observed_at=at)
                for v, (c, x, u) in values.items()
            ],
        )

    events = _event_source("vitals", vitals)

    package = latest(ROOT / "models", monitoring.NAME)
    scorer = monitoring.Scorer(package, monitoring.load_model(package))
    windows = monitoring.examples(simulate(40, 5))[0][:640]

    def ceiling() -> float:
        started = time.perf_counter()
        for s in range(0, len(windows), 64):
            batch = windows[s : s + 64]
            scorer.logits(batch)
            monitoring.explain_batch(scorer.model, batch)
        return len(windows) / (time.perf_counter() - started)

    return Workload(
        "monitoring",
        "medstream.deid.vitals",
        "medstream.results.monitoring",
        64,
        500,
        events,
        ceiling,
    )


def imaging_workload() -> Workload:
    from medstream.imaging import model as imaging  # noqa: PLC0415
    from medstream.imaging.phantom import phantom, to_dicom  # noqa: PLC0415
    from medstream.imaging.preprocess import preprocess_dicom  # noqa: PLC0415

    rng = np.random.default_rng(1)
    films = [to_dicom(phantom(rng, size=512).image, patient_id="ANON", seed=i) for i in range(24)]
    events = _event_source(
        "imaging",
        lambda n, patient: ImagingEvent(
            patient=patient,
            sop_instance_uid=f"2.25.{uuid.uuid4().int}",
            modality="CR",
            rows=512,
            columns=512,
            dicom_base64=base64.b64encode(films[n % len(films)]).decode(),
        ),
    )

    classifier = imaging.Classifier(latest(ROOT / "models", imaging.NAME))

    def ceiling() -> float:
        started, done = time.perf_counter(), 0
        for _ in range(4):
            inputs = np.stack([preprocess_dicom(f) for f in films[:16]])
            imaging.predict_batch(classifier, inputs)
            done += 16
        return done / (time.perf_counter() - started)

    return Workload(
        "imaging", "medstream.deid.imaging", "medstream.results.imaging", 16, 2000, events, ceiling
    )


def notes_workload() -> Workload:
    from medstream.notes import model as notes  # noqa: PLC0415
    from medstream.notes.generator import reports  # noqa: PLC0415

    texts = [r.text for r in reports(256, 99)]
    events = _event_source(
        "document",
        lambda n, patient: DocumentEvent(
            patient=patient, document_kind="radiology_report", text=texts[n % len(texts)]
        ),
    )

    labeller = notes.Labeller(latest(ROOT / "models", notes.NAME))

    def ceiling() -> float:
        started = time.perf_counter()
        for s in range(0, 128, 32):
            labeller.predict(texts[s : s + 32])
        return 128 / (time.perf_counter() - started)

    return Workload(
        "notes", "medstream.deid.document", "medstream.results.notes", 32, 3000, events, ceiling
    )


WORKLOADS = {
    "monitoring": monitoring_workload,
    "imaging": imaging_workload,
    "notes": notes_workload,
}


def _ready(port: int, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
            if f'medstream_worker_ready{{worker="{name}"}} 1.0'.encode() in body:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{name} did not report ready within {timeout:.0f} s")


def _log_dir() -> Path:
    folder = get_settings().state_dir / "bench-logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def _run(
    workload: Workload, items: list[tuple[str, bytes]], rate: float | None
) -> dict[str, float]:
    """Produce ``items`` (at ``rate`` per second, or as fast as possible) and wait for
    every result; return throughput and latency percentiles."""
    settings = get_settings()
    consumer = make_consumer(
        settings,
        workload.results,
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="latest",
        max_partition_fetch_bytes=40 * 1024 * 1024,
    )
    await consumer.start()
    while not consumer.assignment():  # positions are at the end once assigned
        await consumer.getmany(timeout_ms=200)
    for tp in consumer.assignment():
        await consumer.position(tp)
    producer = make_producer(settings)
    await producer.start()
    sent: dict[str, int] = {}
    try:
        started = time.perf_counter()
        futures = []
        for index, (key, value) in enumerate(items):
            if rate:
                delay = started + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            event_id = json.loads(value)["event_id"]
            sent[event_id] = int(time.time() * 1000)
            futures.append(await producer.send(workload.topic, value=value, key=key.encode()))
        await asyncio.gather(*futures)
        latencies: list[float] = []
        first_in = min(sent.values())
        last_out = first_in
        deadline = time.monotonic() + 300
        while len(latencies) < len(items) and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                for record in batch:
                    cause = json.loads(record.value).get("causation_id")
                    if cause in sent:
                        latencies.append(record.timestamp - sent.pop(cause))
                        last_out = max(last_out, record.timestamp)
        if len(latencies) < len(items):
            raise RuntimeError(f"{workload.name}: {len(items) - len(latencies)} results missing")
    finally:
        await producer.stop()
        await consumer.stop()
    return {
        "items": len(items),
        "offered_per_s": round(rate, 1) if rate else None,  # type: ignore[dict-item]
        "achieved_per_s": round(len(items) / max((last_out - first_in) / 1000, 1e-3), 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p99_ms": round(float(np.percentile(latencies, 99)), 1),
    }


def _start(name: str, max_batch: int | None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MEDSTREAM_METRICS_PORT": str(METRICS_PORT)}
    if max_batch:
        env["MEDSTREAM_WORKER_MAX_BATCH"] = str(max_batch)
    log = (_log_dir() / f"{name}.log").open("ab")
    proc = subprocess.Popen([str(BIN / f"medstream-{name}")], env=env, stdout=log, stderr=log)
    _ready(METRICS_PORT, name)
    return proc


def bench(name: str) -> dict[str, Any]:
    workload = WORKLOADS[name]()
    print(f"{name}: ceiling", file=sys.stderr, flush=True)
    workload.ceiling()  # warm
    ceiling = max(workload.ceiling() for _ in range(3))
    configs: dict[str, Any] = {}
    peak: dict[str, float] = {}
    saturation_items = {"monitoring": 2000, "imaging": 240, "notes": 240}[name]
    for label, max_batch in (("dynamic", None), ("batch1", 1)):
        proc = _start(name, max_batch)
        try:
            print(f"{name} {label}: saturation", file=sys.stderr, flush=True)
            asyncio.run(
                _run(workload, workload.events(max(8, saturation_items // 10)), None)
            )  # warm path
            saturated = asyncio.run(_run(workload, workload.events(saturation_items), None))
            reference = saturated["achieved_per_s"]  # each configuration's own capacity
            ladder = []
            for fraction in LADDER:
                rate = max(1.0, reference * fraction)
                count = max(10, int(rate * STEP_SECONDS))
                print(f"{name} {label}: {rate:.1f}/s", file=sys.stderr, flush=True)
                ladder.append(asyncio.run(_run(workload, workload.events(count), rate)))
            # Open-loop load: a rate the worker cannot sustain makes latency grow without
            # bound, so a step within the p99 bound (every result received) is sustained.
            within = [s["offered_per_s"] for s in ladder if s["p99_ms"] <= workload.bound_ms]
            configs[label] = {
                "saturation": saturated,
                "ladder": ladder,
                "throughput_within_p99_bound_per_s": max(within, default=0.0),
            }
            peak[label] = _peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    dynamic, single = configs["dynamic"], configs["batch1"]
    return {
        "p99_bound_ms": workload.bound_ms,
        "ceiling_per_s": round(ceiling, 1),
        "configs": configs,
        "batching_gain_within_bound": round(
            dynamic["throughput_within_p99_bound_per_s"]
            / max(single["throughput_within_p99_bound_per_s"], 1e-9),
            2,
        )
        if single["throughput_within_p99_bound_per_s"]
        else None,
        "worker_vs_ceiling": round(dynamic["saturation"]["achieved_per_s"] / ceiling, 2),
        "peak_rss_mb": peak,
    }


def main() -> None:
    names = sys.argv[1:] or list(WORKLOADS)
    settings = get_settings()
    stack = local_stack.Stack(settings.state_dir)
    were_running = [n for n, alive in local_stack.services_running(stack).items() if alive]
    local_stack.down_services(stack, lambda m: print(m, file=sys.stderr))
    relay_log = (_log_dir() / "relay.log").open("ab")
    relay = subprocess.Popen([str(BIN / "medstream-relay")], stdout=relay_log, stderr=relay_log)
    RESULTS.mkdir(parents=True, exist_ok=True)
    try:
        for name in names:
            report = {
                "date": datetime.now(UTC).date().isoformat(),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "worker": name,
                **bench(name),
            }
            (RESULTS / f"models-{name}-worker.json").write_text(json.dumps(report, indent=2) + "\n")
            print(json.dumps(report, indent=2))
    finally:
        relay.terminate()
        relay.wait(timeout=60)
        if were_running:
            local_stack.up_services(
                stack,
                {s.name: BIN / s.entry_point for s in SERVICES},
                lambda m: print(m, file=sys.stderr),
            )


if __name__ == "__main__":
    main()
