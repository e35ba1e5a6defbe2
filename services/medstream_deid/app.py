"""deid: consumes the identified topics and emits de-identified events for the models.

For each record, in one transaction: read the patient's date offset (vault, cached),
de-identify by the policy tables, record the EHR identifiers in the PseudonymVault,
and write the de-identified events and the audit events to the outbox.
"""

from __future__ import annotations

import uuid
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
from medstream.consumer import Effects, Handler
from medstream.deadletter import InvalidMessage
from medstream.deid.engine import DeidEngine
from medstream.deid.vault import PseudonymVault, VaultCipher
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


def make_handler(engine: DeidEngine, vault: PseudonymVault, budget_s: float) -> Handler:
    """The handler for every identified topic. De-identification itself runs off the
    event loop, under the message's budget."""

    async def handle(conn: AsyncConnection, received: Received) -> Effects:
        try:
            event = Envelope[IdentifiedRecord].model_validate_json(received.value)
        except ValidationError:
            raise InvalidMessage(
                "deid.bad_event", "The event is not an identified record of schema version 1."
            ) from None
        record = event.payload
        pseudonym = engine.keys.patient(record.ehr_patient_id)
        offset, audit = await vault.offset(
            conn,
            pseudonym,
            engine.keys.date_offset(record.ehr_patient_id),
            correlation_id=event.correlation_id,
            dedupe_key=f"{NAME}:{event.event_id}:offset",
        )
        output = await offload(NAME, budget_s, engine.record, record, offset)
        audit += await vault.record(
            conn,
            pseudonym,
            output.identity,
            offset,
            correlation_id=event.correlation_id,
            dedupe_key=f"{NAME}:{event.event_id}:vault",
        )
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

        async def refresh_cache() -> None:
            await vault.after_commit(pseudonym, output.identity)

        effects.after_commit.append(refresh_cache)
        return effects

    return handle


async def wire(runtime: ServiceRuntime) -> None:
    """One processor for the three identified topics."""
    engine = DeidEngine.from_settings(runtime.settings)
    vault = PseudonymVault(VaultCipher.from_settings(runtime.settings), runtime.redis, NAME)
    handler = make_handler(engine, vault, runtime.settings.message_budget_s)
    processor = runtime.processor(group=GROUP, handler=handler, stage=NAME)
    runtime.consumers.subscribe(*CONSUMES, processor=processor)


def main() -> None:
    """Run the deid service."""
    run(NAME, wire)
