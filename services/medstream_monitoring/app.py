"""monitoring: scores each patient's recent vital signs with the GRU and NEWS2.

Each patient's window of observation sets lives in Redis (keyed by pseudonym), so any
worker instance can score any patient; per-patient order holds because deid keys the
vitals topic by pseudonym. Records arrive in micro-batches; one forward pass scores
the whole batch. Results and audit events go out through the outbox.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
from prometheus_client import Counter
from pydantic import ValidationError
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection

from medstream.clinical import MonitoringResult, Vital, VitalsEvent
from medstream.consumer import BatchHandler
from medstream.deadletter import InvalidMessage
from medstream.envelope import Envelope
from medstream.models.package import ModelPackage, latest
from medstream.monitoring import model as monitoring
from medstream.monitoring.news2 import Observations, detail, news2_now, stale_limits
from medstream.outbox import OutboundMessage
from medstream.received import Received
from medstream.runtime import ServiceRuntime, run
from medstream.topics import DEID_VITALS, RESULTS_MONITORING
from medstream.worker import result_messages, serve_model

NAME = "monitoring"
# Observation sets kept per patient in Redis: the model's 24 hours, and NEWS2's longest
# staleness limit, at most WINDOW_ROWS of them.
WINDOW_HOURS, WINDOW_ROWS = 24, 240
MAX_BATCH, MAX_WAIT_MS = 64, 50
# The topics this stage consumes; each has its dead-letter topic in the registry.
CONSUMES = (DEID_VITALS.name,)
SCORED = Counter("medstream_monitoring_scored_total", "Patients scored")


async def merge_windows(
    redis: Redis, updates: Sequence[tuple[str, list[dict[str, object]]]]
) -> list[list[dict[str, object]]]:
    """Add each VitalsEvent's coded observations to its patient's window and return the
    windows, in two round trips for the whole batch (pipelines, in order: a patient
    with two events in one batch sees the first in the second's window).

    Keyed by observation time and LOINC code, so a redelivered event merges the same
    values again and changes nothing."""
    keys = [f"monitoring:window:{pseudonym}" for pseudonym, _ in updates]
    pipe = redis.pipeline(transaction=False)
    for key, (_, items) in zip(keys, updates, strict=True):
        if items:
            pipe.hset(key, mapping={f"{i['time']}|{i['code']}": json.dumps(i) for i in items})
        pipe.hgetall(key)
    replies = await pipe.execute()
    windows: list[list[dict[str, object]]] = []
    tidy = redis.pipeline(transaction=False)
    position = 0
    for key, (_, items) in zip(keys, updates, strict=True):
        position += 1 if items else 0
        fields = {_text(f): v for f, v in replies[position].items()}
        position += 1
        times = sorted({f.split("|")[0] for f in fields}, key=datetime.fromisoformat)
        newest = datetime.fromisoformat(times[-1]) if times else None
        stale = set(times[:-WINDOW_ROWS]) | {
            t
            for t in times
            if newest is not None
            and datetime.fromisoformat(t) < newest - timedelta(hours=WINDOW_HOURS)
        }
        if stale:
            tidy.hdel(key, *[f for f in fields if f.split("|")[0] in stale])
        tidy.expire(key, 7 * 24 * 3600)
        windows.append([json.loads(v) for f, v in fields.items() if f.split("|")[0] not in stale])
    await tidy.execute()
    return windows


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def make_batch_handler(
    package: ModelPackage,
    scorer: monitoring.Scorer,
    redis: Redis,
    limits: dict[Vital, float] | None = None,
    *,
    null_model: bool = False,
) -> BatchHandler:
    """Score a micro-batch of VitalsEvents. ``null_model`` (a benchmark setting,
    ``MEDSTREAM_WORKER_NULL_MODEL``) skips the GRU and its explanation and echoes a
    fixed score, so a benchmark measures the platform alone."""
    limits = limits or stale_limits(None)
    fixed: list[tuple[np.ndarray, dict[str, float]]] = []

    async def handle(
        conn: AsyncConnection, records: Sequence[Received]
    ) -> list[Sequence[OutboundMessage] | InvalidMessage]:
        events: list[Envelope[VitalsEvent] | InvalidMessage] = []
        for record in records:
            try:
                events.append(Envelope[VitalsEvent].model_validate_json(record.value))
            except ValidationError:
                events.append(
                    InvalidMessage(
                        "monitoring.bad_event",
                        "The event is not a vitals event of schema version 1.",
                    )
                )
        valid = [e for e in events if not isinstance(e, InvalidMessage)]
        windows = iter(
            await merge_windows(
                redis, [(e.payload.patient, monitoring.coded(e.payload.vitals)) for e in valid]
            )
            if valid
            else []
        )
        parsed: list[
            tuple[Envelope[VitalsEvent], list[float], list[Observations], int] | InvalidMessage
        ] = []
        for event in events:
            if isinstance(event, InvalidMessage):
                parsed.append(event)
                continue
            items = next(windows)
            times, sets = monitoring.observation_sets(items)
            if not sets:
                parsed.append(
                    InvalidMessage(
                        "monitoring.no_vitals", "The event holds no vital sign the model uses."
                    )
                )
                continue
            at = max(v.observed_at for v in event.payload.vitals)
            parsed.append((event, times, sets, monitoring.row_at(items, times, at)))
        scorable = [p for p in parsed if not isinstance(p, InvalidMessage)]

        def infer(windows: np.ndarray) -> tuple[np.ndarray, list[dict[str, float]]]:
            if null_model:
                if not fixed:  # one real score, echoed to every patient from then on
                    first = windows[:1]
                    fixed.append(
                        (scorer.logits(first)[0], monitoring.explain_batch(scorer.model, first)[0])
                    )
                logits, explanation = fixed[0]
                return np.stack([logits] * len(windows)), [dict(explanation)] * len(windows)
            return scorer.logits(windows), monitoring.explain_batch(scorer.model, windows)

        scored = (
            await asyncio.to_thread(
                infer, np.stack([monitoring.window(t, s, end) for _, t, s, end in scorable])
            )
            if scorable
            else (np.zeros(0), [])
        )
        outputs = iter(zip(*scored, strict=True))
        results: list[Sequence[OutboundMessage] | InvalidMessage] = []
        for record, item in zip(records, parsed, strict=True):
            if isinstance(item, InvalidMessage):
                results.append(item)
                continue
            event, times, sets, end = item
            score = news2_now(times, sets, end, limits=limits)
            logits, explanation = next(outputs)
            risks = 1 / (1 + np.exp(-np.asarray(logits, dtype=np.float64)))
            result = MonitoringResult(
                patient=event.payload.patient,
                scored_at=max(v.observed_at for v in event.payload.vitals),
                risk=round(float(risks[monitoring.HORIZONS.index(monitoring.HORIZON_HOURS)]), 4),
                horizon_hours=monitoring.HORIZON_HOURS,
                risk_by_horizon={
                    str(h): round(float(r), 4)
                    for h, r in zip(monitoring.HORIZONS, risks, strict=True)
                },
                news2_complete=score.complete,
                **detail(score),
                explanation=explanation,
                explanation_notes=monitoring.explanation_notes(explanation, score.ages),
                model=package.name,
                model_version=package.version,
                model_checksum=package.checksum,
                inbound_message_ids=[record.header("inbound-message-id") or record.message_id],
            )
            SCORED.inc()
            results.append(
                result_messages(
                    worker=NAME,
                    topic=RESULTS_MONITORING.name,
                    event=event,
                    patient=event.payload.patient,
                    payload=result,
                    package=package,
                    summary={"risk": result.risk, "news2": score.total},
                    inbound_message_id=result.inbound_message_ids[-1],
                )
            )
        return results

    return handle


async def wire(runtime: ServiceRuntime) -> None:
    """Load and verify the model, warm it up, and subscribe in micro-batches."""
    package = latest(runtime.settings.model_registry, monitoring.NAME)
    limits = stale_limits(runtime.settings.news2_stale_minutes)
    scorer = monitoring.Scorer(package, monitoring.load_model(package))
    dummy = np.zeros((8, monitoring.STEPS, len(monitoring.FEATURES)), dtype=np.float32)
    serve_model(
        runtime,
        name=NAME,
        topic=CONSUMES[0],
        package=package,
        batch_handler=make_batch_handler(
            package,
            scorer,
            runtime.redis,
            limits,
            null_model=runtime.settings.worker_null_model,
        ),
        warm=lambda: (scorer.logits(dummy), monitoring.explain_batch(scorer.model, dummy)),
        max_batch=MAX_BATCH,
        max_wait_ms=MAX_WAIT_MS,
    )


def main() -> None:
    """Run the monitoring worker: one CPU thread for its model unless
    MEDSTREAM_MODEL_THREADS says otherwise (bench/e2e ``--platform``)."""
    run(NAME, wire, model_threads=1)
