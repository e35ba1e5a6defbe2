"""The whole pipeline on this machine, in one run: sustained load at twice a hospital's
peak hour, then each model family saturated against its model-only ceiling, with the
memory of every process in the stack.

    make bench-e2e            (or: make up && .venv/bin/python bench/e2e/pipeline.py)
    MEDSTREAM_BENCH_MINUTES=5 sets the sustained phase's length
    make bench-security       (also: ... pipeline.py --security): the same pipeline with
                              SCRAM over TLS and with SCRAM alone, side by side
    make bench-throughput     (or: ... pipeline.py --throughput): saturation per family
                              beside issue 16's starting figures, the monitoring burst
                              with the null model (the platform alone), and latency
    make bench-platform       (or: ... pipeline.py --platform): the platform's own
                              settings (PLATFORM_VARIANTS: the event loop, the model
                              processes' threads) side by side, in alternated rounds
                              of the monitoring burst, as ratios; with
                              MEDSTREAM_BENCH_BASE=<rev>, also that revision's code
    make bench-films          (or: ... pipeline.py --films): the same on the imaging
                              burst for what a film's size makes costly
                              (FILM_VARIANTS: the producers' codec, PostgreSQL's TOAST
                              compression, pglz before migration 0012)

``--security`` alternates the local stack's Kafka between SASL_SSL (the default) and
SASL_PLAINTEXT (the development flag: SCRAM without TLS), restarting the broker and
the services for each, two rounds each, with a shorter sustained phase
(MEDSTREAM_BENCH_MINUTES, default 1 here) and the saturation bursts; it reports each
figure per protocol and TLS's ratio. The cost of SCRAM itself, and of plaintext without
authentication (MedStream before issue 15), is in bench/e2e/security.py, which runs
all three listeners on one broker.

1. **Sustained load.** MONAI Deploy's site profile (120 radiographs, 50 ultrasound,
   30 CT and 25 MRI studies an hour), plus vital signs for 500 beds every 5 minutes and
   1,000 notes an hour, all doubled, published at that pace for the phase's length.
   Ultrasound, CT and MRI go in as one DICOM instance each; the chest-film model reads
   none of them, so they end as ``model.not_applicable``. Every 5 s the benchmark
   samples each consumer group's lag (the backlog) and every process's memory.
   Reported: end-to-end latency per model family, latency per stage (from the audit
   trail: received, de-identified, scored, stored, published), and the backlog's trend.
2. **Saturation against the ceiling.** A burst per family through the whole pipeline
   (ingestion, deid, the worker, results, audit, the relay); throughput is the burst
   over the time from its first message to its last stored resource. The ceiling is
   the model's own batch computation in this process (bench/models/workers.py), in
   the same run. The ratio is the share of the model's speed that the pipeline keeps.
3. **Memory.** Peak RSS of every process (Kafka, each PostgreSQL process, Redis, the
   supervisor and each service), and the peak of the stack's total PSS (proportional
   set size, which counts memory shared between PostgreSQL's processes once).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.filebase import DicomBytesIO
from sqlalchemy import text

from medstream import stack as local_stack
from medstream.db import make_engine
from medstream.demo.feed import Feed, FeedMessage, hospital_feed, radiology_report
from medstream.demo.ledger import outcomes
from medstream.demo.run import GROUPS, publish, settled
from medstream.imaging.phantom import phantom, to_dicom
from medstream.kafka import consumer_lag
from medstream.notes.generator import report
from medstream.settings import get_settings
from medstream.topics import EHR_INBOUND_DICOM, EHR_INBOUND_FHIR

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
HOUR = 3600.0
NOON = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
# Twice the peak hour, per hour.
PROFILE = {"radiograph": 240, "ultrasound": 100, "ct": 60, "mri": 50, "notes": 2000}
VITALS_PER_HOUR = 2 * 500 * 12
SATURATION = {"monitoring": 1500, "imaging": 120, "notes": 150}
STILL_S = 45.0


def log(message: str) -> None:
    print(f"[bench-e2e] {message}", file=sys.stderr, flush=True)


def _film(rng: np.random.Generator, mrn: str, seed: int, modality: str) -> bytes:
    raw = to_dicom(phantom(rng).image, patient_id=mrn, seed=seed)
    if modality == "CR":
        return raw
    ds = pydicom.dcmread(DicomBytesIO(raw))
    ds.Modality = modality
    out = DicomBytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def documents(run: str, counts: dict[str, int], seed: int) -> list[FeedMessage]:
    """Films, other modalities and notes for ``counts``, spread over 50 patients."""
    rng, text_rng = np.random.default_rng(seed), random.Random(seed)
    made = []
    modality = {"radiograph": "CR", "ultrasound": "US", "ct": "CT", "mri": "MR"}
    for kind, count in counts.items():
        for n in range(count):
            mrn = f"{run.upper()}{n % 50:04d}"
            message_id = f"{run}-{kind}-{n:05d}"
            if kind == "notes":
                value = radiology_report(mrn, NOON, report(text_rng).text)
                made.append(FeedMessage(EHR_INBOUND_FHIR.name, value, mrn, message_id, "notes"))
            else:
                value = _film(rng, mrn, seed * 100_000 + n, modality[kind])
                made.append(
                    FeedMessage(
                        EHR_INBOUND_DICOM.name, value, mrn, message_id, "imaging", kind=kind
                    )
                )
    return made


def _kb(pid: int, file: str, field: str) -> int:
    """A memory figure from /proc/<pid>/<file> (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def processes(stack: local_stack.Stack) -> dict[str, int]:
    """Every process of the stack, by a readable name."""
    found: dict[str, int] = {}
    for name, pid in local_stack.server_pids(stack).items():
        if pid:
            found[name] = pid
    postmaster = found.get("postgres")
    if postmaster:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(") ", 1)[1].split()[1]) == postmaster:
                    comm = (entry / "comm").read_text().strip()
                    found[f"postgres {comm} {entry.name}"] = int(entry.name)
    supervisor = stack.state_dir / "supervisor.pid"
    for pidfile in [supervisor, *sorted((stack.state_dir / "services").glob("*.pid"))]:
        try:
            found[pidfile.stem] = int(pidfile.read_text())
        except (OSError, ValueError):
            continue
    return found


def cpu_seconds(stack: local_stack.Stack) -> dict[str, float]:
    """CPU time (user + system) used so far by each component of the stack: each
    service, Kafka, PostgreSQL (all its backends together) and Redis."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for name, pid in processes(stack).items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        key = name.split(" ", 1)[0] if name.startswith("postgres") else name
        used[key] = used.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return used


def cpu_per_message(
    before: dict[str, float], after: dict[str, float], messages: int
) -> dict[str, float]:
    """Milliseconds of CPU per message by component, over a burst (a PostgreSQL
    backend that ended meanwhile is not counted: a slight undercount)."""
    per = {
        name: round(1000 * (after[name] - before.get(name, 0.0)) / messages, 2)
        for name in sorted(after)
        if name != "supervisor"
    }
    return {**per, "total": round(sum(per.values()), 2)}


class Sampler:
    """Every 5 s: consumer lag per group and memory per process."""

    def __init__(self, stack: local_stack.Stack) -> None:
        self.stack = stack
        self.peak_rss_kb: dict[str, int] = {}
        self.peak_total_pss_kb = 0
        self.lag: list[tuple[float, int]] = []
        self.started = time.monotonic()

    async def sample(self) -> None:
        procs = processes(self.stack)
        total = 0
        for name, pid in procs.items():
            key = name if not name.startswith("postgres ") else name.rsplit(" ", 1)[0]
            self.peak_rss_kb[key] = max(self.peak_rss_kb.get(key, 0), _kb(pid, "status", "VmRSS:"))
            total += _kb(pid, "smaps_rollup", "Pss:")
        self.peak_total_pss_kb = max(self.peak_total_pss_kb, total)
        lag = await consumer_lag(get_settings(), GROUPS)
        self.lag.append((round(time.monotonic() - self.started, 1), sum(lag.values())))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.sample()
            try:
                await asyncio.wait_for(stop.wait(), timeout=5)
            except TimeoutError:
                continue


async def paced(messages: Sequence[FeedMessage], seconds: float) -> dict[str, datetime]:
    """Publish ``messages`` evenly over ``seconds``, in order, in 1-second chunks."""
    settings = get_settings()
    sent: dict[str, datetime] = {}
    per_second = max(1, round(len(messages) / seconds))
    start = time.monotonic()
    for n, first in enumerate(range(0, len(messages), per_second)):
        sent.update(await publish(settings, messages[first : first + per_second], lambda k: None))
        await asyncio.sleep(max(0.0, start + n + 1 - time.monotonic()))
    return sent


def interleave(streams: list[list[FeedMessage]]) -> list[FeedMessage]:
    """Merge streams so each keeps its order and is spread evenly over the whole."""
    timed = [
        (i / max(1, len(stream)), n, message)
        for n, stream in enumerate(streams)
        for i, message in enumerate(stream)
    ]
    return [message for _, _, message in sorted(timed, key=lambda t: (t[0], t[1]))]


async def wait_settled(feed: Feed, timeout_s: float) -> dict[str, Any]:
    engine = make_engine(get_settings())
    by_id = {m.message_id: m for m in feed.messages}
    deadline = time.monotonic() + timeout_s
    # A message whose outcome differs from the feed's expectation (reported as
    # unsettled) would hold the wait to its timeout: once the pipeline has been idle,
    # with nothing settling, for STILL_S, the wait ends.
    last_change, last_pending = time.monotonic(), -1
    try:
        while True:
            async with engine.connect() as conn:
                found = await outcomes(conn, list(by_id))
            pending = [i for i, o in found.items() if not settled(by_id[i], o)]
            if len(pending) != last_pending:
                last_change, last_pending = time.monotonic(), len(pending)
            still = time.monotonic() - last_change > STILL_S
            if not pending or time.monotonic() > deadline or still:
                return {"outcomes": found, "pending": len(pending)}
            await asyncio.sleep(2)
    finally:
        await engine.dispose()


async def stage_latency(ids: list[str], sent: dict[str, datetime]) -> dict[str, Any]:
    """Seconds from publication to each audited stage, and to publication outbound."""
    engine = make_engine(get_settings())
    stages: dict[str, list[float]] = {}
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT message_id, action, min(occurred_at) AS at FROM audit_event"
                    " WHERE message_id = ANY(:ids) AND action IN ('message.received',"
                    " 'deid.completed', 'model.inference', 'result.stored') GROUP BY 1, 2"
                ),
                {"ids": ids},
            )
            for row in rows:
                stages.setdefault(row.action, []).append(
                    (row.at - sent[row.message_id]).total_seconds()
                )
            rows = await conn.execute(
                text(
                    "SELECT r.inbound_message_id AS message_id, min(o.sent_at) AS at"
                    " FROM fhir_resource r JOIN outbox o"
                    "   ON o.message_id = 'fhir:' || r.resource_type || '/' || r.id"
                    " WHERE r.inbound_message_id = ANY(:ids) GROUP BY 1"
                ),
                {"ids": ids},
            )
            for row in rows:
                if row.at is not None:
                    stages.setdefault("published outbound", []).append(
                        (row.at - sent[row.message_id]).total_seconds()
                    )
    finally:
        await engine.dispose()
    return {stage: _percentiles(values) for stage, values in stages.items()}


def _percentiles(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        **{f"p{q}": round(float(np.percentile(values, q)), 3) for q in (50, 95, 99)},
    }


def _family_latency(feed: Feed, found: dict[str, Any], sent: dict[str, datetime]) -> dict[str, Any]:
    per: dict[str, list[float]] = {}
    for message in feed.messages:
        for model, first in found[message.message_id].results.items():
            per.setdefault(model, []).append((first - sent[message.message_id]).total_seconds())
    return {model: _percentiles(values) for model, values in sorted(per.items())}


def _slope(points: list[tuple[float, int]]) -> float:
    """Backlog trend in messages per minute over the second half of the load."""
    half = points[len(points) // 2 :]
    if len(half) < 2:
        return 0.0
    x, y = np.array([p[0] for p in half]), np.array([p[1] for p in half])
    return round(float(np.polyfit(x, y, 1)[0] * 60), 2)


def ceilings() -> dict[str, float]:
    """The model-only ceilings, measured now, with the worker benchmark's own code."""
    spec = importlib.util.spec_from_file_location("workers", ROOT / "bench/models/workers.py")
    if spec is None or spec.loader is None:
        raise SystemExit("bench/models/workers.py is missing")
    workers = importlib.util.module_from_spec(spec)
    sys.modules["workers"] = workers  # its dataclasses look themselves up there
    spec.loader.exec_module(workers)
    found = {}
    for name, make in workers.WORKLOADS.items():
        workload = make()
        workload.ceiling()  # warm
        found[name] = round(max(workload.ceiling() for _ in range(3)), 1)
        log(f"ceiling {name}: {found[name]}/s")
    return found


def vital_signs(
    beds: int, hours: int, every_minutes: int, run: str, count: int
) -> list[FeedMessage]:
    """The first ``count`` vital-sign sets of ``beds`` patients, in charting order."""
    feed = hospital_feed(
        patients=beds,
        hours=hours,
        every_minutes=every_minutes,
        malformed=0,
        run=run,
        documents=False,
    )
    return [m for m in feed.messages if m.kind == "vitals"][:count]


async def sustained(stack: local_stack.Stack, minutes: float, run: str) -> dict[str, Any]:
    seconds = minutes * 60
    vitals_total = round(VITALS_PER_HOUR * seconds / HOUR)
    beds = 500
    vitals = vital_signs(beds, max(1, int(seconds // HOUR) + 1), 5, f"{run}v", vitals_total)
    docs = documents(run, {k: round(v * seconds / HOUR) for k, v in PROFILE.items()}, 7)
    streams = [vitals, *[[m for m in docs if m.kind == k] for k in PROFILE if k != "notes"]]
    streams.append([m for m in docs if m.family == "notes"])
    messages = interleave(streams)
    feed = Feed(messages, [])
    log(f"sustained: {len(messages)} messages over {minutes:g} min")
    sampler = Sampler(stack)
    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler.run(stop))
    sent = await paced(messages, seconds)
    load_end = time.monotonic() - sampler.started
    settled_ = await wait_settled(feed, timeout_s=600)
    stop.set()
    await sampling
    found = settled_["outcomes"]
    counts = {
        "messages": len(messages),
        "vital-sign sets": len(vitals),
        **{k: sum(1 for m in docs if m.kind == k) for k in PROFILE if k != "notes"},
        "notes": sum(1 for m in docs if m.family == "notes"),
    }
    return {
        "minutes": minutes,
        "offered_per_hour": {
            "vital-sign sets": VITALS_PER_HOUR,
            **PROFILE,
        },
        "offered_per_s": round(len(messages) / seconds, 2),
        "counts": counts,
        "unsettled": settled_["pending"],
        "latency_s_by_family": _family_latency(feed, found, sent),
        "latency_s_by_stage": await stage_latency(list(sent), sent),
        "backlog": {
            "samples": sampler.lag,
            "trend_per_min_second_half_of_load": _slope(
                [p for p in sampler.lag if p[0] <= load_end]
            ),
            "max": max((p[1] for p in sampler.lag), default=0),
        },
        "peak_rss_mb": {k: round(v / 1024) for k, v in sorted(sampler.peak_rss_kb.items())},
        "peak_total_pss_mb": round(sampler.peak_total_pss_kb / 1024),
    }


async def saturation(
    run: str, ceiling: dict[str, float], families: Sequence[str] = tuple(SATURATION)
) -> dict[str, Any]:
    out = {}
    for family in families:
        count = SATURATION[family]
        if family == "monitoring":
            burst = vital_signs(125, 3, 15, f"{run}s", count)
        else:
            kind = {"imaging": "radiograph", "notes": "notes"}[family]
            burst = documents(f"{run}{family[0]}", {kind: count}, 11)
        feed = Feed(burst, [])
        log(f"saturation {family}: {len(burst)} messages")
        stack = local_stack.Stack(get_settings().state_dir)
        cpu_before = cpu_seconds(stack)
        started = datetime.now(UTC)
        sent = await publish(get_settings(), burst, lambda k: None)
        settled_ = await wait_settled(feed, timeout_s=900)
        cpu_ms = cpu_per_message(cpu_before, cpu_seconds(stack), len(burst))
        last = max(
            (t for o in settled_["outcomes"].values() for t in o.results.values()), default=started
        )
        elapsed = (last - started).total_seconds()
        throughput = len(burst) / elapsed if elapsed > 0 else 0.0
        out[family] = {
            "messages": len(burst),
            "unsettled": settled_["pending"],
            "seconds": round(elapsed, 1),
            "pipeline_per_s": round(throughput, 2),
            "model_ceiling_per_s": ceiling.get(family),
            "pipeline_vs_ceiling": round(throughput / ceiling[family], 3)
            if family in ceiling
            else None,
            "first_sent": min(sent.values()).isoformat(),
            # Includes the idle polling of the services this burst does not use.
            "cpu_ms_per_message": cpu_ms,
        }
    return out


def _switch(stack: local_stack.Stack, protocol: str) -> local_stack.Stack:
    """Restart the local stack's Kafka and every service with ``protocol``."""
    from dataclasses import replace  # noqa: PLC0415

    from medstream.deployment import SERVICES  # noqa: PLC0415
    from medstream.settings import get_settings as cached  # noqa: PLC0415

    log(f"switching Kafka and the services to {protocol}")
    local_stack.down_services(stack, log)
    local_stack.down_kafka(stack, log)
    os.environ["MEDSTREAM_KAFKA_SECURITY_PROTOCOL"] = protocol
    cached.cache_clear()
    switched = replace(stack, kafka_protocol=protocol)
    local_stack.up_kafka(switched, log)
    bin_dir = Path(sys.executable).parent
    local_stack.up_services(
        switched, {spec.name: bin_dir / spec.entry_point for spec in SERVICES}, log
    )
    time.sleep(30)  # the workers load and warm their models, the groups settle
    return switched


def compare_security(stack: local_stack.Stack) -> None:
    minutes = float(os.environ.get("MEDSTREAM_BENCH_MINUTES", "1"))
    ceiling = ceilings()
    rounds: dict[str, list[dict[str, Any]]] = {"SASL_PLAINTEXT": [], "SASL_SSL": []}
    try:
        for round_ in range(2):
            for protocol, kept in rounds.items():
                current = _switch(stack, protocol)
                run = "s" + uuid.uuid4().hex[:5]
                log(f"round {round_ + 1}: {protocol}")
                found = asyncio.run(sustained(current, minutes, run))
                kept.append(
                    {
                        "latency_s_by_family": found["latency_s_by_family"],
                        "unsettled": found["unsettled"],
                        "saturation": asyncio.run(saturation(run, ceiling)),
                    }
                )
    finally:
        _switch(stack, "SASL_SSL")

    def median(protocol: str, pick: Any) -> float:
        return round(statistics.median(pick(r) for r in rounds[protocol]), 3)

    table: dict[str, Any] = {}
    for family in SATURATION:
        row = {}
        for protocol in rounds:
            row[protocol] = {
                "sustained_p50_s": median(
                    protocol, lambda r, f=family: r["latency_s_by_family"][f]["p50"]
                ),
                "sustained_p95_s": median(
                    protocol, lambda r, f=family: r["latency_s_by_family"][f]["p95"]
                ),
                "saturation_per_s": median(
                    protocol, lambda r, f=family: r["saturation"][f]["pipeline_per_s"]
                ),
            }
        plain, tls = row["SASL_PLAINTEXT"], row["SASL_SSL"]
        row["tls_ratio"] = {k: round(tls[k] / plain[k], 3) if plain[k] else None for k in tls}
        table[family] = row
    result = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "sustained_minutes": minutes,
        "rounds": rounds,
        "by_family": table,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "e2e-security.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(table, indent=2))


# The figures issue 16 started from (2026-11-28: one transaction per message, one
# shared relay), for the side-by-side report.
BASELINE = {
    "monitoring": {"pipeline_per_s": 28.49, "pipeline_vs_ceiling": 0.074},
    "imaging": {"pipeline_per_s": 14.49, "pipeline_vs_ceiling": 0.345},
    "notes": {"pipeline_per_s": 13.86, "pipeline_vs_ceiling": 0.353},
}


def _restart(stack: local_stack.Stack, env: dict[str, str]) -> None:
    """Every service restarted with ``env`` added to its environment."""
    from medstream.deployment import SERVICES  # noqa: PLC0415

    local_stack.down_services(stack, log)
    bin_dir = Path(sys.executable).parent
    local_stack.up_services(
        stack, {spec.name: bin_dir / spec.entry_point for spec in SERVICES}, log, env
    )
    time.sleep(30)  # the workers load and warm their models, the groups settle


def throughput(stack: local_stack.Stack) -> None:
    """Saturation per family with the real models, the monitoring burst again with the
    null model (the platform alone), and the latency of a short sustained phase at
    twice the peak hour, beside the figures issue 16 started from."""
    minutes = float(os.environ.get("MEDSTREAM_BENCH_MINUTES", "2"))
    ceiling = ceilings()
    run = "t" + uuid.uuid4().hex[:5]
    latency = asyncio.run(sustained(stack, minutes, run))["latency_s_by_family"]
    real = asyncio.run(saturation(run, ceiling))
    _restart(stack, {"MEDSTREAM_WORKER_NULL_MODEL": "true"})
    try:
        null = asyncio.run(saturation(run + "n", ceiling, families=("monitoring",)))
    finally:
        _restart(stack, {})
    table = {
        family: {
            "before_per_s": BASELINE[family]["pipeline_per_s"],
            "now_per_s": real[family]["pipeline_per_s"],
            "speed_up": round(
                real[family]["pipeline_per_s"] / BASELINE[family]["pipeline_per_s"], 2
            ),
            "before_vs_ceiling": BASELINE[family]["pipeline_vs_ceiling"],
            "now_vs_ceiling": real[family]["pipeline_vs_ceiling"],
            "model_ceiling_per_s": ceiling[family],
            "sustained_p99_s": latency.get(family, {}).get("p99"),
        }
        for family in SATURATION
    }
    result = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "by_family": table,
        "null_model_monitoring_per_s": null["monitoring"]["pipeline_per_s"],
        # The platform alone (null model): CPU per vital-sign set, by component, and the
        # cores it would take to carry 1,000 sets a second at that cost.
        "platform_cpu_ms_per_message": null["monitoring"]["cpu_ms_per_message"],
        "platform_cores_per_1000_per_s": round(
            null["monitoring"]["cpu_ms_per_message"]["total"], 1
        ),
        "saturation": real,
        "null_model": null,
        "sustained_minutes": minutes,
        "latency_s_by_family": latency,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "e2e-throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: v
                for k, v in result.items()
                if k
                in (
                    "by_family",
                    "null_model_monitoring_per_s",
                    "platform_cpu_ms_per_message",
                    "platform_cores_per_1000_per_s",
                )
            },
            indent=2,
        )
    )


# What ``--platform`` compares: each variant's environment, and the variant it is
# measured against (``None`` for a reference). The null model (one fixed score)
# measures the platform alone; the model-threads pair runs the real monitoring model.
NULL_MODEL = {"MEDSTREAM_WORKER_NULL_MODEL": "true"}
PLATFORM_VARIANTS: dict[str, tuple[dict[str, str], str | None]] = {
    "null model, defaults": (NULL_MODEL, None),
    "null model, asyncio event loop": (
        {**NULL_MODEL, "MEDSTREAM_EVENT_LOOP": "asyncio"},
        "null model, defaults",
    ),
    "real model, defaults (monitoring: 1 model thread)": ({}, None),
    "real model, model threads: the libraries' default": (
        {"MEDSTREAM_MODEL_THREADS": "0"},
        "real model, defaults (monitoring: 1 model thread)",
    ),
}


_CODE_AT_KEYS = ("PYTHONPATH", "MEDSTREAM_STATE_DIR", "MEDSTREAM_MODEL_REGISTRY")


def _code_at(revision: str) -> dict[str, str]:
    """The environment that runs the services with the code of ``revision`` (its
    ``libs`` and ``services``, exported from git), against this stack's state."""
    folder = Path(tempfile.mkdtemp(prefix="medstream-base-"))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "libs", "services"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    settings = get_settings()
    return {
        "PYTHONPATH": f"{folder / 'libs'}:{folder / 'services'}",
        "MEDSTREAM_STATE_DIR": str(settings.state_dir),
        "MEDSTREAM_MODEL_REGISTRY": str(settings.model_registry),
    }


# What ``--films`` compares, on the imaging burst: the producers' codec
# (MEDSTREAM_KAFKA_COMPRESSION) and how PostgreSQL compresses large values (TOAST:
# lz4 since migration 0012, pglz before it). Each variant: environment, TOAST method,
# and the variant it is measured against.
FILM_REFERENCE = "now: zstd producers, lz4 TOAST"
FILM_VARIANTS: dict[str, tuple[dict[str, str], str, str | None]] = {
    FILM_REFERENCE: ({}, "lz4", None),
    "pglz TOAST (before migration 0012)": ({}, "pglz", FILM_REFERENCE),
    "lz4 producers": ({"MEDSTREAM_KAFKA_COMPRESSION": "lz4"}, "lz4", FILM_REFERENCE),
    "uncompressed producers": ({"MEDSTREAM_KAFKA_COMPRESSION": "none"}, "lz4", FILM_REFERENCE),
}


def _toast(method: str) -> None:
    """Set the compression of migration 0012's large-value columns (as their owner)."""
    m0012 = importlib.import_module("medstream.migrations.versions.0012_lz4_for_large_values")

    async def apply() -> None:
        engine = make_engine(get_settings(), admin=True)
        try:
            async with engine.begin() as conn:
                for table, column in m0012.LARGE_VALUES:
                    await conn.execute(
                        text(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}")
                    )
        finally:
            await engine.dispose()

    asyncio.run(apply())


def compare_platform(stack: local_stack.Stack, films: bool = False) -> None:
    """The monitoring burst under each of PLATFORM_VARIANTS (or, with ``films``, the
    imaging burst under each of FILM_VARIANTS), alternated for MEDSTREAM_BENCH_ROUNDS
    rounds (default 3), so the platform's own settings are compared side by side on
    the same machine in one run: throughput and CPU per message (medians), each as a
    ratio to its reference variant. MEDSTREAM_BENCH_BASE=<git revision> adds the code
    of that revision, with the null model, as one more variant of the monitoring
    comparison (before and after a change, in one run)."""
    family = "imaging" if films else "monitoring"
    variants: dict[str, tuple[dict[str, str], str, str | None]] = (
        dict(FILM_VARIANTS)
        if films
        else {name: (env, "lz4", against) for name, (env, against) in PLATFORM_VARIANTS.items()}
    )
    base = os.environ.get("MEDSTREAM_BENCH_BASE")
    if base and not films:
        variants[f"null model, code at {base}"] = (
            {**NULL_MODEL, **_code_at(base)},
            "lz4",
            "null model, defaults",
        )
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    try:
        for round_ in range(int(os.environ.get("MEDSTREAM_BENCH_ROUNDS", "3"))):
            for name, (env, toast, _) in variants.items():
                log(f"round {round_ + 1}: {name}")
                _toast(toast)
                _restart(stack, env)
                run = "p" + uuid.uuid4().hex[:5]
                found = asyncio.run(saturation(run, {}, families=(family,)))
                rounds[name].append(found[family])
    finally:
        _toast("lz4")
        _restart(stack, {})
        for env, _, _ in variants.values():
            if "PYTHONPATH" in env:  # the exported code of MEDSTREAM_BENCH_BASE
                shutil.rmtree(Path(env["PYTHONPATH"].split(":")[0]).parent, ignore_errors=True)

    def median(name: str, pick: Any) -> float:
        return round(statistics.median(pick(r) for r in rounds[name]), 2)

    table: dict[str, Any] = {}
    for name, (env, toast, reference) in variants.items():
        table[name] = {
            "env": {k: v for k, v in env.items() if k not in _CODE_AT_KEYS},
            **({"toast_compression": toast} if films else {}),
            "against": reference,
            "pipeline_per_s": median(name, lambda r: r["pipeline_per_s"]),
            "cpu_ms_per_message": median(name, lambda r: r["cpu_ms_per_message"]["total"]),
            "cpu_ms_by_component": {
                part: median(name, lambda r, p=part: r["cpu_ms_per_message"][p])
                for part in rounds[name][0]["cpu_ms_per_message"]
            },
        }
    for row in table.values():
        if row["against"] is not None:
            against = table[row["against"]]
            row["throughput_ratio"] = round(row["pipeline_per_s"] / against["pipeline_per_s"], 3)
            row["cpu_ratio"] = round(row["cpu_ms_per_message"] / against["cpu_ms_per_message"], 3)
    result = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "burst": SATURATION[family],
        "rounds": rounds,
        "variants": table,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "e2e-films.json" if films else "e2e-platform.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(table, indent=2))


def main() -> None:
    settings = get_settings()
    stack = local_stack.Stack(settings.state_dir)
    if not all(local_stack.services_running(stack).values()) or not local_stack.services_running(
        stack
    ):
        raise SystemExit("start the stack and its services first: `make up`")
    if "--security" in sys.argv[1:]:
        compare_security(stack)
        return
    if "--throughput" in sys.argv[1:]:
        throughput(stack)
        return
    if "--platform" in sys.argv[1:]:
        compare_platform(stack)
        return
    if "--films" in sys.argv[1:]:
        compare_platform(stack, films=True)
        return
    minutes = float(os.environ.get("MEDSTREAM_BENCH_MINUTES", "5"))
    run = "b" + uuid.uuid4().hex[:5]
    ceiling = ceilings()
    result = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GB",
        "sustained": asyncio.run(sustained(stack, minutes, run)),
        "saturation": asyncio.run(saturation(run, ceiling)),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "e2e-pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "sustained"}, indent=2))
    summary = {k: v for k, v in result["sustained"].items() if k != "backlog"}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
