"""imaging: labels de-identified chest films with the CNN and explains each with Grad-CAM.

Films arrive in micro-batches; each is preprocessed from its DICOM bytes (a file that
is not a usable grayscale radiograph is dead-lettered with the reason), then one
forward pass scores the batch and one backward pass makes its heatmaps. The model work
runs in a thread, so the Kafka client's heartbeats go on meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Sequence

import numpy as np
from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from medstream.audit import audit_message
from medstream.clinical import ImagingEvent, ImagingResult
from medstream.consumer import BatchHandler
from medstream.deadletter import InvalidMessage
from medstream.envelope import Envelope
from medstream.imaging import model as imaging
from medstream.imaging.phantom import SIZE
from medstream.imaging.preprocess import preprocess_dicom
from medstream.models.package import ModelPackage, latest
from medstream.outbox import OutboundMessage
from medstream.received import Received
from medstream.runtime import ServiceRuntime, run
from medstream.topics import DEID_IMAGING, RESULTS_IMAGING
from medstream.worker import result_messages, serve_model

NAME = "imaging"
# The topics this stage consumes; each has its dead-letter topic in the registry.
CONSUMES = (DEID_IMAGING.name,)
MAX_BATCH, MAX_WAIT_MS = 16, 50
# The model reads projection radiographs. Other modalities (CT, MR, US…) are valid data
# that it does not apply to: acknowledged, audited and counted, never scored.
RADIOGRAPHY = {"CR", "DX", None}
NOT_APPLICABLE = Counter(
    "medstream_imaging_not_applicable_total",
    "Instances of a modality the model does not read",
    ["modality"],
)


class NotApplicable:
    """An instance the model does not apply to."""

    def __init__(self, event: Envelope[ImagingEvent]) -> None:
        self.event = event


def _prepare(
    record: Received,
) -> tuple[Envelope[ImagingEvent], np.ndarray] | InvalidMessage | NotApplicable:
    try:
        event = Envelope[ImagingEvent].model_validate_json(record.value)
        data = base64.b64decode(event.payload.dicom_base64, validate=True)
    except (ValidationError, binascii.Error):
        return InvalidMessage(
            "imaging.bad_event", "The event is not an imaging event of schema version 1."
        )
    if event.payload.modality not in RADIOGRAPHY:
        return NotApplicable(event)
    try:
        return event, preprocess_dicom(data)
    except InvalidMessage as exc:
        return exc


def make_batch_handler(package: ModelPackage, classifier: imaging.Classifier) -> BatchHandler:
    """Score a micro-batch of ImagingEvents."""

    def infer(
        records: Sequence[Received],
    ) -> list[tuple[Envelope[ImagingEvent], imaging.Prediction] | InvalidMessage | NotApplicable]:
        prepared = [_prepare(record) for record in records]
        ready = [p for p in prepared if isinstance(p, tuple)]
        predictions = iter(
            imaging.predict_batch(classifier, np.stack([x for _, x in ready])) if ready else []
        )
        return [(p[0], next(predictions)) if isinstance(p, tuple) else p for p in prepared]

    async def handle(
        conn: AsyncConnection, records: Sequence[Received]
    ) -> list[Sequence[OutboundMessage] | InvalidMessage]:
        results: list[Sequence[OutboundMessage] | InvalidMessage] = []
        for record, item in zip(records, await asyncio.to_thread(infer, records), strict=True):
            if isinstance(item, InvalidMessage):
                results.append(item)
                continue
            if isinstance(item, NotApplicable):
                modality = str(item.event.payload.modality)
                NOT_APPLICABLE.labels(modality).inc()
                results.append(
                    [
                        audit_message(
                            actor=NAME,
                            action="model.not_applicable",
                            entity=item.event.payload.patient,
                            message_id=record.header("inbound-message-id"),
                            correlation_id=item.event.correlation_id,
                            causation_id=item.event.event_id,
                            details={"modality": modality, "model": package.name},
                            dedupe_key=f"{NAME}:not-applicable:{item.event.event_id}",
                        )
                    ]
                )
                continue
            event, prediction = item
            result = ImagingResult(
                patient=event.payload.patient,
                sop_instance_uid=event.payload.sop_instance_uid,
                study_instance_uid=event.payload.study_instance_uid,
                labels=prediction.labels,
                explained=prediction.explained,
                heatmap_png_base64=base64.b64encode(prediction.heatmap_png).decode(),
                model=package.name,
                model_version=package.version,
                model_checksum=package.checksum,
                inbound_message_ids=[record.header("inbound-message-id") or record.message_id],
            )
            results.append(
                result_messages(
                    worker=NAME,
                    topic=RESULTS_IMAGING.name,
                    event=event,
                    patient=event.payload.patient,
                    payload=result,
                    package=package,
                    summary={"labels": prediction.labels, "explained": prediction.explained},
                    inbound_message_id=result.inbound_message_ids[-1],
                )
            )
        return results

    return handle


async def wire(runtime: ServiceRuntime) -> None:
    """Load and verify the model, warm it up, and subscribe in micro-batches."""
    package = latest(runtime.settings.model_registry, imaging.NAME)
    classifier = imaging.Classifier(package)
    dummy = np.zeros((2, SIZE, SIZE), np.float32)
    serve_model(
        runtime,
        name=NAME,
        topic=CONSUMES[0],
        package=package,
        batch_handler=make_batch_handler(package, classifier),
        warm=lambda: imaging.predict_batch(classifier, dummy),
        max_batch=MAX_BATCH,
        max_wait_ms=MAX_WAIT_MS,
    )


def main() -> None:
    """Run the imaging worker."""
    run(NAME, wire)
