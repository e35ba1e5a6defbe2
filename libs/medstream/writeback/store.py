"""Storing outbound resources in ``fhir_resource`` and turning the new ones into
``ehr.outbound.fhir`` messages, in the caller's transaction, a batch at a time."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from medstream.outbox import OutboundMessage
from medstream.topics import EHR_OUTBOUND_FHIR
from medstream.writeback.resources import OutboundResource, PatientLink


def outbound_message_id(resource: OutboundResource) -> str:
    """The outbox key and ``message-id`` header of a published resource."""
    return f"fhir:{resource.resource_type}/{resource.id}"


@dataclass(frozen=True)
class StoreItem:
    """One result's resources and where they came from."""

    resources: Sequence[OutboundResource]
    inbound_message_id: str
    model: str
    model_version: str
    patient: PatientLink
    correlation_id: str
    result_event_id: str


async def store_many(
    conn: AsyncConnection, items: Sequence[StoreItem]
) -> list[list[OutboundMessage]]:
    """Insert each item's resources, in one statement for the whole batch, unless their
    (inbound message, model, kind) is already stored (by an earlier batch, or by an
    earlier item of this one); return, for each item, the messages that publish its
    newly stored resources, keyed by EHR patient id."""
    rows: list[tuple[StoreItem, OutboundResource]] = []
    claimed: set[tuple[str, str, str]] = set()
    for item in items:
        for resource in item.resources:
            key = (item.inbound_message_id, item.model, resource.kind)
            if key not in claimed:  # the first of a batch wins, as one at a time would
                claimed.add(key)
                rows.append((item, resource))
    inserted: set[str] = set()
    if rows:
        result = await conn.execute(
            text(
                "INSERT INTO fhir_resource (id, resource_type, resource_kind,"
                " inbound_message_id, model, model_version, ehr_patient_reference,"
                " correlation_id, result_event_id, resource)"
                " SELECT * FROM unnest(CAST(:id AS text[]), CAST(:type AS text[]),"
                " CAST(:kind AS text[]), CAST(:inbound AS text[]), CAST(:model AS text[]),"
                " CAST(:version AS text[]), CAST(:patient AS text[]),"
                " CAST(:correlation AS text[]), CAST(:event AS text[]),"
                " CAST(:resource AS jsonb[]))"
                " ON CONFLICT (inbound_message_id, model, resource_kind) DO NOTHING RETURNING id"
            ),
            {
                "id": [r.id for _, r in rows],
                "type": [r.resource_type for _, r in rows],
                "kind": [r.kind for _, r in rows],
                "inbound": [i.inbound_message_id for i, _ in rows],
                "model": [i.model for i, _ in rows],
                "version": [i.model_version for i, _ in rows],
                "patient": [f"Patient/{i.patient.ehr_patient_id}" for i, _ in rows],
                "correlation": [i.correlation_id for i, _ in rows],
                "event": [i.result_event_id for i, _ in rows],
                "resource": [json.dumps(r.resource) for _, r in rows],
            },
        )
        inserted = {row[0] for row in result}
    published: dict[int, list[OutboundMessage]] = {id(item): [] for item in items}
    for item, resource in rows:
        if resource.id not in inserted:
            continue  # this result already exists: publish it once, not again
        published[id(item)].append(
            OutboundMessage(
                topic=EHR_OUTBOUND_FHIR.name,
                value=json.dumps(resource.resource, separators=(",", ":")).encode(),
                key=item.patient.ehr_patient_id.encode(),
                message_id=outbound_message_id(resource),
                headers={
                    "content-type": "application/fhir+json",
                    "fhir-resource-type": resource.resource_type,
                    "correlation-id": item.correlation_id,
                    "inbound-message-id": item.inbound_message_id,
                },
            )
        )
    return [published[id(item)] for item in items]
