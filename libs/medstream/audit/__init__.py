"""Audit events: every service emits them through its outbox to ``medstream.audit``.

An event names who acted, what they did, and to which pseudonym or message; it never
carries PHI. The audit service (issue 5) stores them as a hash-chained FHIR AuditEvent
trail.
"""

from __future__ import annotations

from typing import Any

from medstream.envelope import Envelope, utc_now
from medstream.events import AuditOutcome, AuditRecord
from medstream.outbox import OutboundMessage
from medstream.topics import AUDIT

AUDIT_EVENT_TYPE = "medstream.audit.v1"


def audit_message(
    *,
    actor: str,
    action: str,
    correlation_id: str,
    entity: str | None = None,
    message_id: str | None = None,
    causation_id: str | None = None,
    outcome: AuditOutcome = AuditOutcome.SUCCESS,
    details: dict[str, Any] | None = None,
    dedupe_key: str,
) -> OutboundMessage:
    """An audit event ready for the outbox. ``dedupe_key`` makes it exactly-once."""
    envelope = Envelope[AuditRecord](
        event_type=AUDIT_EVENT_TYPE,
        schema_version=1,
        correlation_id=correlation_id,
        causation_id=causation_id,
        occurred_at=utc_now(),
        patient_pseudonym=entity if entity and entity.startswith("psn-") else None,
        payload=AuditRecord(
            actor=actor,
            action=action,
            outcome=outcome,
            entity=entity,
            message_id=message_id,
            details=details or {},
        ),
    )
    return OutboundMessage(
        topic=AUDIT.name,
        value=envelope.model_dump_json().encode(),
        key=(entity or actor).encode(),
        message_id=f"audit:{dedupe_key}",
    )
