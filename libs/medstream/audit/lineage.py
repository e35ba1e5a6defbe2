"""Lineage: why the EHR has a resource. From the stored resource back through the
audit trail to the inbound messages it came from.

The correlation id travels unchanged from the inbound message to the last outbound
resource, so one query finds every audited step; the Provenance names the inputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from medstream.audit.trail import AuditFilter, query

# The order of the stages, for steps recorded at the same instant.
STAGE_ORDER = ("gateway", "message.received", "vault", "deid", "model", "result")


@dataclass(frozen=True)
class Step:
    """One thing that happened to the data behind a resource."""

    at: datetime
    actor: str
    action: str
    summary: str


@dataclass
class Lineage:
    """The chain from the inbound messages to the stored and published resource."""

    resource: str
    resource_type: str
    model: str
    model_version: str
    model_checksum: str | None
    patient_reference: str
    inbound_message_ids: list[str]
    correlation_id: str
    steps: list[Step] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form for ``--json``."""
        return {
            "resource": self.resource,
            "model": {
                "name": self.model,
                "version": self.model_version,
                "checksum": self.model_checksum,
            },
            "patient": self.patient_reference,
            "inbound_message_ids": self.inbound_message_ids,
            "correlation_id": self.correlation_id,
            "steps": [
                {"at": s.at.isoformat(), "actor": s.actor, "action": s.action, "summary": s.summary}
                for s in self.steps
            ],
            "missing": self.missing,
        }


class UnknownResource(LookupError):
    """No stored resource has that id."""


async def trace(conn: AsyncConnection, resource: str) -> Lineage:
    """The lineage of ``resource`` ("Type/id" or a bare id)."""
    resource_id = resource.rsplit("/", 1)[-1]
    row = (
        (
            await conn.execute(
                text(
                    "SELECT id, resource_type, model, model_version, ehr_patient_reference,"
                    " correlation_id, result_event_id, inbound_message_id, created_at"
                    " FROM fhir_resource WHERE id = :id"
                ),
                {"id": resource_id},
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise UnknownResource(resource)
    provenance = await conn.scalar(
        text(
            "SELECT resource FROM fhir_resource WHERE result_event_id = :e"
            " AND resource_type = 'Provenance'"
        ),
        {"e": row["result_event_id"]},
    )
    inputs, checksum = _provenance_facts(provenance)
    reference = f"{row['resource_type']}/{row['id']}"
    lineage = Lineage(
        resource=reference,
        resource_type=row["resource_type"],
        model=row["model"],
        model_version=row["model_version"],
        model_checksum=checksum,
        patient_reference=row["ehr_patient_reference"],
        inbound_message_ids=inputs or [row["inbound_message_id"]],
        correlation_id=row["correlation_id"],
    )
    events = {
        e["event_id"]: e
        for e in await query(conn, AuditFilter(correlation_id=row["correlation_id"], limit=1000))
    }
    for message_id in lineage.inbound_message_ids:
        for event in await query(conn, AuditFilter(message_id=message_id, limit=1000)):
            events.setdefault(event["event_id"], event)
    lineage.steps = [_step(e) for e in events.values()]
    lineage.steps.append(
        Step(row["created_at"], "results", "resource.stored", f"{reference} in fhir_resource")
    )
    sent = (
        await conn.execute(
            text("SELECT sent_at FROM outbox WHERE message_id = :m"), {"m": f"fhir:{reference}"}
        )
    ).first()
    if sent is None:
        # `medstream db prune` deletes sent rows after the dedup window; a resource is
        # written in the same transaction as its outbox row, so no row means pruned.
        lineage.missing.append(
            "published: no longer known (sent outbox rows are pruned after the dedup window)"
        )
    elif sent.sent_at is not None:
        lineage.steps.append(
            Step(sent.sent_at, "relay", "resource.published", f"{reference} to ehr.outbound.fhir")
        )
    else:
        lineage.missing.append("published: the outbox has not sent it yet")
    lineage.steps.sort(key=lambda s: (s.at, _stage_rank(s.action)))
    actions = {s.action for s in lineage.steps}
    for needed in ("message.received", "deid.completed", "model.inference", "vault.relink"):
        if needed not in actions:
            lineage.missing.append(f"{needed}: not in the audit trail (yet)")
    return lineage


def _provenance_facts(provenance: Any) -> tuple[list[str], str | None]:
    if not provenance:
        return [], None
    if isinstance(provenance, str):
        provenance = json.loads(provenance)
    inputs = [e["what"]["identifier"]["value"] for e in provenance.get("entity", [])]
    device: dict[str, Any] = next(iter(provenance.get("contained", [])), {})
    identifiers: list[dict[str, Any]] = device.get("identifier", [])
    checksum = identifiers[0].get("value") if identifiers else None
    return inputs, checksum


def _stage_rank(action: str) -> int:
    for rank, prefix in enumerate(STAGE_ORDER):
        if action.startswith(prefix):
            return rank
    return len(STAGE_ORDER)


def _step(event: dict[str, Any]) -> Step:
    details = {
        d["type"]: d.get("valueString")
        for entity in event["resource"].get("entity", [])
        for d in entity.get("detail", [])
    }
    shown = {k: v for k, v in details.items() if k not in {"correlation-id", "inbound_message_ids"}}
    subject = event["patient_pseudonym"] or event["message_id"] or event["entity"] or ""
    summary = subject + (
        " " + ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) if shown else ""
    )
    return Step(event["occurred_at"], event["actor"], event["action"], summary.strip())
