"""What the three model workers share: wiring a verified, warm model to a de-identified
topic in micro-batches, and the messages each result turns into (the result event and
its audit record, both through the outbox)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from medstream.audit import audit_message
from medstream.consumer import BatchHandler
from medstream.envelope import Envelope
from medstream.inference import WorkerMetrics, measured, warm_up
from medstream.models.package import ModelPackage
from medstream.outbox import OutboundMessage
from medstream.runtime import ServiceRuntime

log = logging.getLogger("medstream.worker")


def result_messages(
    *,
    worker: str,
    topic: str,
    event: Envelope[Any],
    patient: str,
    payload: BaseModel,
    package: ModelPackage,
    summary: dict[str, Any],
    inbound_message_id: str,
) -> list[OutboundMessage]:
    """The result event (keyed by pseudonym, id derived from the input event so a
    redelivery makes the same one, with the inbound message id as a header) and the
    audit record of the inference."""
    out = Envelope[Any](
        event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{event.event_id}#{worker}")),
        event_type=f"{topic}.v1",
        schema_version=1,
        correlation_id=event.correlation_id,
        causation_id=event.event_id,
        occurred_at=event.occurred_at,
        patient_pseudonym=patient,
        payload=payload,
    )
    return [
        OutboundMessage(
            topic=topic,
            value=out.model_dump_json().encode(),
            key=patient.encode(),
            message_id=out.event_id,
            headers={"inbound-message-id": inbound_message_id},
        ),
        audit_message(
            actor=worker,
            action="model.inference",
            entity=patient,
            message_id=inbound_message_id,
            correlation_id=event.correlation_id,
            causation_id=event.event_id,
            details={
                "model": package.name,
                "version": package.version,
                "checksum": package.checksum,
                **summary,
            },
            dedupe_key=f"{worker}:{out.event_id}",
        ),
    ]


def serve_model(
    runtime: ServiceRuntime,
    *,
    name: str,
    topic: str,
    package: ModelPackage,
    batch_handler: BatchHandler,
    warm: Callable[[], object],
    max_batch: int,
    max_wait_ms: int,
) -> WorkerMetrics:
    """Warm the model up, then subscribe ``batch_handler`` to ``topic`` in micro-batches
    in the group ``medstream-<name>``; readiness is reported once warm."""
    settings = runtime.settings
    max_batch = settings.worker_max_batch or max_batch
    max_wait_ms = (
        settings.worker_max_wait_ms if settings.worker_max_wait_ms is not None else max_wait_ms
    )
    metrics = WorkerMetrics(name)
    seconds = warm_up(warm)
    processor = runtime.processor(group=f"medstream-{name}", handler=None, stage=name)
    runtime.consumers.subscribe_batch(
        topic,
        processor=processor,
        batch_handler=measured(metrics, batch_handler),
        max_records=max_batch,
        max_wait_ms=max_wait_ms,
    )
    metrics.ready()
    log.info(
        "model ready",
        extra={
            "model": package.name,
            "version": package.version,
            "checksum": package.checksum[:12],
            "max_batch": max_batch,
            "max_wait_ms": max_wait_ms,
            "warm_up_seconds": round(seconds, 4),
        },
    )
    return metrics
