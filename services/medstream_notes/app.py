"""notes: labels de-identified reports and notes with the fine-tuned MiniLM.

Every document is labelled: a note that is not about a chest film simply comes out
with its observations not mentioned. Documents arrive in micro-batches, are padded to
the batch's longest, scored in one forward pass and explained in one backward pass, in
a thread so that the Kafka client's heartbeats go on meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from medstream.clinical import DocumentEvent, NotesResult
from medstream.consumer import BatchHandler
from medstream.deadletter import InvalidMessage
from medstream.envelope import Envelope
from medstream.models.package import ModelPackage, latest
from medstream.notes import model as notes
from medstream.outbox import OutboundMessage
from medstream.received import Received
from medstream.runtime import ServiceRuntime, run
from medstream.topics import DEID_DOCUMENT, RESULTS_NOTES
from medstream.worker import result_messages, serve_model

NAME = "notes"
# The topics this stage consumes; each has its dead-letter topic in the registry.
CONSUMES = (DEID_DOCUMENT.name,)
MAX_BATCH, MAX_WAIT_MS = 32, 50


def make_batch_handler(package: ModelPackage, labeller: notes.Labeller) -> BatchHandler:
    """Label a micro-batch of DocumentEvents."""

    def infer(texts: list[str]) -> tuple[np.ndarray, list[list[dict[str, Any]]]]:
        return labeller.predict(texts)

    async def handle(
        conn: AsyncConnection, records: Sequence[Received]
    ) -> list[Sequence[OutboundMessage] | InvalidMessage]:
        parsed: list[Envelope[DocumentEvent] | InvalidMessage] = []
        for record in records:
            try:
                event = Envelope[DocumentEvent].model_validate_json(record.value)
            except ValidationError:
                parsed.append(
                    InvalidMessage(
                        "notes.bad_event", "The event is not a document event of schema version 1."
                    )
                )
                continue
            if not event.payload.text.strip():
                parsed.append(InvalidMessage("notes.empty_text", "The document has no text."))
                continue
            parsed.append(event)
        events = [p for p in parsed if not isinstance(p, InvalidMessage)]
        probs, explanations = (
            await asyncio.to_thread(infer, [e.payload.text for e in events])
            if events
            else (np.zeros(0), [])
        )
        scored = iter(zip(probs, explanations, strict=True))
        results: list[Sequence[OutboundMessage] | InvalidMessage] = []
        for record, item in zip(records, parsed, strict=True):
            if isinstance(item, InvalidMessage):
                results.append(item)
                continue
            p, explanation = next(scored)
            labels = notes.labels_output(p)
            result = NotesResult.model_validate(
                {
                    "patient": item.payload.patient,
                    "document_kind": item.payload.document_kind,
                    "labels": labels,
                    "explanation": [
                        {**span, "text": item.payload.text[span["start"] : span["end"]]}
                        for span in explanation
                    ],
                    "model": package.name,
                    "model_version": package.version,
                    "model_checksum": package.checksum,
                    "inbound_message_ids": [
                        record.header("inbound-message-id") or record.message_id
                    ],
                }
            )
            mentioned = {
                k: v["status"] for k, v in labels.items() if v["status"] != "not_mentioned"
            }
            results.append(
                result_messages(
                    worker=NAME,
                    topic=RESULTS_NOTES.name,
                    event=item,
                    patient=item.payload.patient,
                    payload=result,
                    package=package,
                    summary={"labels": mentioned},
                    inbound_message_id=result.inbound_message_ids[-1],
                )
            )
        return results

    return handle


async def wire(runtime: ServiceRuntime) -> None:
    """Load and verify the model, warm it up, and subscribe in micro-batches."""
    package = latest(runtime.settings.model_registry, notes.NAME)
    labeller = notes.Labeller(package)
    dummy = ["No pleural effusion or pneumothorax."] * 2
    serve_model(
        runtime,
        name=NAME,
        topic=CONSUMES[0],
        package=package,
        batch_handler=make_batch_handler(package, labeller),
        warm=lambda: labeller.predict(dummy),
        max_batch=MAX_BATCH,
        max_wait_ms=MAX_WAIT_MS,
    )


def main() -> None:
    """Run the notes worker."""
    run(NAME, wire)
