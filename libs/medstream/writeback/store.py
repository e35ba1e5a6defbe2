"""Storing outbound resources in ``fhir_resource`` and turning the new ones into
``ehr.outbound.fhir`` messages, in the caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from medstream.outbox import OutboundMessage
from medstream.topics import EHR_OUTBOUND_FHIR
from medstream.writeback.resources import OutboundResource, PatientLink


def outbound_message_id(resource: OutboundResource) -> str:
    """The outbox key and ``message-id`` header of a published resource."""
    return f"fhir:{resource.resource_type}/{resource.id}"


async def store(
    conn: AsyncConnection,
    resources: Sequence[OutboundResource],
    *,
    inbound_message_id: str,
    model: str,
    model_version: str,
    patient: PatientLink,
    correlation_id: str,
    result_event_id: str,
) -> list[OutboundMessage]:
    """Insert each resource unless its (inbound message, model, kind) is already stored;
    return the messages that publish the newly stored ones, keyed by EHR patient id."""
    messages = []
    for resource in resources:
        inserted = await conn.execute(
            text(
                "INSERT INTO fhir_resource (id, resource_type, resource_kind,"
                " inbound_message_id, model, model_version, ehr_patient_reference,"
                " correlation_id, result_event_id, resource) VALUES (:id, :type, :kind,"
                " :inbound, :model, :version, :patient, :correlation, :event,"
                " CAST(:resource AS jsonb))"
                " ON CONFLICT (inbound_message_id, model, resource_kind) DO NOTHING RETURNING 1"
            ),
            {
                "id": resource.id,
                "type": resource.resource_type,
                "kind": resource.kind,
                "inbound": inbound_message_id,
                "model": model,
                "version": model_version,
                "patient": f"Patient/{patient.ehr_patient_id}",
                "correlation": correlation_id,
                "event": result_event_id,
                "resource": json.dumps(resource.resource),
            },
        )
        if inserted.first() is None:
            continue  # this result already exists: publish it once, not again
        messages.append(
            OutboundMessage(
                topic=EHR_OUTBOUND_FHIR.name,
                value=json.dumps(resource.resource, separators=(",", ":")).encode(),
                key=patient.ehr_patient_id.encode(),
                message_id=outbound_message_id(resource),
                headers={
                    "content-type": "application/fhir+json",
                    "fhir-resource-type": resource.resource_type,
                    "correlation-id": correlation_id,
                    "inbound-message-id": inbound_message_id,
                },
            )
        )
    return messages
