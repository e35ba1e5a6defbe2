"""deid: consumes the identified topics and emits de-identified events for the models.

Records arrive in micro-batches. The learned PHI tagger reads every free text of the
batch in one pass (on the GPU when there is one). Then, in the batch's transaction:
read every patient's date offset at once (vault, cached), de-identify each record by
the policy tables and the detector's spans, record the batch's EHR identifiers in the
PseudonymVault at once, and write the de-identified events and the audit events to the
outbox.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from medstream.audit import audit_message
from medstream.budget import offload
from medstream.clinical import (
    DocumentEvent,
    IdentifiedRecord,
    ImagingEvent,
    Kind,
    PatientEvent,
    VitalsEvent,
)
from medstream.consumer import BatchHandler, Effects
from medstream.deadletter import InvalidMessage
from medstream.deid.engine import DeidEngine, DeidOutput, DryRun
from medstream.deid.vault import OffsetRead, PseudonymVault, RelinkSeal, VaultCipher, VaultWrite
from medstream.envelope import Envelope
from medstream.outbox import OutboundMessage
from medstream.received import Received
from medstream.runtime import ServiceRuntime, run
from medstream.topics import (
    DEID_DOCUMENT,
    DEID_IMAGING,
    DEID_PATIENT,
    DEID_VITALS,
    IDENTIFIED_DICOM,
    IDENTIFIED_FHIR,
    IDENTIFIED_HL7V2,
)

NAME = "deid"
GROUP = "medstream-deid"
TOPIC_OF_KIND = {
    Kind.PATIENT: DEID_PATIENT.name,
    Kind.VITALS: DEID_VITALS.name,
    Kind.DOCUMENT: DEID_DOCUMENT.name,
    Kind.IMAGING: DEID_IMAGING.name,
}
KIND_OF_PAYLOAD: dict[type, Kind] = {
    PatientEvent: Kind.PATIENT,
    VitalsEvent: Kind.VITALS,
    DocumentEvent: Kind.DOCUMENT,
    ImagingEvent: Kind.IMAGING,
}
ENVELOPE_OF_KIND: dict[Kind, type[Envelope[Any]]] = {
    Kind.PATIENT: Envelope[PatientEvent],
    Kind.VITALS: Envelope[VitalsEvent],
    Kind.DOCUMENT: Envelope[DocumentEvent],
    Kind.IMAGING: Envelope[ImagingEvent],
}
# The topics this stage consumes; each has its dead-letter topic in the registry.
CONSUMES = (IDENTIFIED_FHIR.name, IDENTIFIED_HL7V2.name, IDENTIFIED_DICOM.name)
EVENTS = Counter("medstream_deid_events_total", "De-identified events emitted", ["kind"])
MAX_BATCH, MAX_WAIT_MS = 32, 50


def parse(received: Received) -> Envelope[IdentifiedRecord] | InvalidMessage:
    """The identified record a message carries, or why it carries none."""
    try:
        return Envelope[IdentifiedRecord].model_validate_json(received.value)
    except ValidationError:
        return InvalidMessage(
            "deid.bad_event", "The event is not an identified record of schema version 1."
        )


def make_batch_handler(engine: DeidEngine, vault: PseudonymVault, budget_s: float) -> BatchHandler:
    """De-identify a micro-batch: one tagger pass over all its free text, the vault
    read and written once for the whole batch, and each record in between. The heavy
    work runs off the event loop, under the message budget."""

    def prepare(records: list[IdentifiedRecord]) -> list[DryRun]:
        runs = [engine.dry_run(record) for record in records]
        engine.prepare([text for run in runs for text in run.texts])
        return runs

    async def deidentify(
        event: Envelope[IdentifiedRecord], offset: int, dry: DryRun
    ) -> tuple[Envelope[IdentifiedRecord], DeidOutput] | InvalidMessage:
        # A record with no free text was de-identified by its dry run already.
        output = dry.output_at(offset)
        if output is None:
            try:
                output = await offload(NAME, budget_s, engine.record, event.payload, offset)
            except InvalidMessage as error:
                return error
        return event, output

    async def handle(
        conn: AsyncConnection, records: Sequence[Received]
    ) -> list[Effects | InvalidMessage]:
        events = [parse(record) for record in records]
        valid = [e for e in events if not isinstance(e, InvalidMessage)]
        dry: dict[int, DryRun] = {}
        if valid:
            try:
                runs = await offload(NAME, budget_s, prepare, [e.payload for e in valid])
            except InvalidMessage:
                if len(valid) > 1:
                    # One record made the batch too costly: the processor splits the
                    # batch in halves, down to that record, so only it is refused.
                    raise BatchTooCostly from None
                raise
            dry = {id(e): run for e, run in zip(valid, runs, strict=True)}
        pseudonyms = {id(e): engine.keys.patient(e.payload.ehr_patient_id) for e in valid}
        offsets = await vault.offsets(
            conn,
            [
                OffsetRead(
                    pseudonyms[id(e)],
                    engine.keys.date_offset(e.payload.ehr_patient_id),
                    e.correlation_id,
                    f"{NAME}:{e.event_id}:offset",
                )
                for e in valid
            ],
        )
        offset_of = {id(e): answer for e, answer in zip(valid, offsets, strict=True)}
        # De-identify each record. Nothing is written yet, so a record refused here
        # leaves no vault row behind.
        done = [
            event
            if isinstance(event, InvalidMessage)
            else await deidentify(event, offset_of[id(event)][0], dry[id(event)])
            for event in events
        ]
        succeeded = [d for d in done if not isinstance(d, InvalidMessage)]
        writes = [
            VaultWrite(
                pseudonyms[id(event)],
                output.identity,
                offset_of[id(event)][0],
                event.correlation_id,
                f"{NAME}:{event.event_id}:vault",
            )
            for event, output in succeeded
        ]
        recorded = await vault.record_many(conn, writes)
        written = iter(recorded.events)
        results: list[Effects | InvalidMessage] = []
        for item in done:
            if isinstance(item, InvalidMessage):
                results.append(item)
                continue
            event, output = item
            audit = offset_of[id(event)][1] + next(written)
            results.append(effects_of(event, output, pseudonyms[id(event)], audit))
        if writes:
            refreshed = False

            async def refresh_cache() -> None:
                nonlocal refreshed
                if not refreshed:  # once per batch, whichever of its records committed
                    refreshed = True
                    await vault.after_commit(writes, recorded.created)

            for result in results:
                if isinstance(result, Effects):
                    result.after_commit.append(refresh_cache)
        return results

    return handle


class BatchTooCostly(RuntimeError):
    """The batch's tagging outran the budget; the processor splits the batch."""


def effects_of(
    event: Envelope[IdentifiedRecord],
    output: DeidOutput,
    pseudonym: str,
    audit: list[OutboundMessage],
) -> Effects:
    """One de-identified record's messages: the vault's audit events, the events for
    the models, and its ``deid.completed`` audit event."""
    record = event.payload
    effects = Effects(messages=list(audit))
    for index, payload in enumerate(output.payloads):
        kind = KIND_OF_PAYLOAD[type(payload)]
        outgoing = ENVELOPE_OF_KIND[kind](
            event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{event.event_id}#deid#{index}")),
            event_type=f"medstream.deid.{kind.value}.v1",
            schema_version=1,
            correlation_id=event.correlation_id,
            causation_id=event.event_id,
            occurred_at=event.occurred_at,
            patient_pseudonym=pseudonym,
            payload=payload,
        )
        effects.messages.append(
            OutboundMessage(
                topic=TOPIC_OF_KIND[kind],
                value=outgoing.model_dump_json().encode(),
                key=pseudonym.encode(),
                message_id=outgoing.event_id,
                headers={"inbound-message-id": record.inbound_message_id},
            )
        )
        EVENTS.labels(kind.value).inc()
    effects.messages.append(
        audit_message(
            actor=NAME,
            action="deid.completed",
            entity=pseudonym,
            message_id=record.inbound_message_id,
            correlation_id=event.correlation_id,
            causation_id=event.event_id,
            details={
                "format": record.format.value,
                "events": len(output.payloads),
                **{k: v for k, v in output.summary.items() if k != "patient_pseudonym"},
            },
            dedupe_key=f"{NAME}:{event.event_id}:done",
        )
    )
    return effects


async def wire(runtime: ServiceRuntime) -> None:
    """One micro-batch processor for the three identified topics, with the tagger warm."""
    engine = DeidEngine.from_settings(runtime.settings)
    engine.prepare(["Warm-up: seen by Dr. Example on 3/14."])
    vault = PseudonymVault(
        VaultCipher.from_settings(runtime.settings),
        runtime.redis,
        NAME,
        RelinkSeal.for_service(runtime.settings, NAME),
    )
    handler = make_batch_handler(engine, vault, runtime.settings.message_budget_s)
    processor = runtime.processor(group=GROUP, handler=None, stage=NAME)
    runtime.consumers.subscribe_batch(
        *CONSUMES,
        processor=processor,
        batch_handler=handler,
        max_records=MAX_BATCH,
        max_wait_ms=MAX_WAIT_MS,
    )


def main() -> None:
    """Run the deid service."""
    run(NAME, wire)
