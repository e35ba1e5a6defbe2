"""The outcome ledger: what became of each inbound message, from PostgreSQL alone.

An inbound message ends in one of these ways:
- ``result``: FHIR resources in ``fhir_resource`` from the model family;
- ``dead_letter``: a stage rejected it (a ``message.rejected`` audit row, with its code);
- ``not_applicable``: a valid film the imaging model does not read;
- ``no_model``: de-identified, but no model reads what it held (an admission);
- ``unused``: valid, but nothing in it is for a model (an Encounter): received only;
- ``quarantined``: a stage's output that the broker refused for good, set aside by
  the relay with its reason.

The audit rows carry the inbound message id at every stage, so one query per table
answers for a whole feed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass
class Outcome:
    """Everything recorded about one inbound message."""

    results: dict[str, datetime] = field(default_factory=dict)  # model -> first stored
    resources: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (stage, code)
    quarantined: list[str] = field(default_factory=list)  # codes
    not_applicable: bool = False
    deidentified: bool = False
    received: bool = False

    def ends(self) -> list[str]:
        """Every way this message ended; exactly one when the pipeline is consistent."""
        found = [f"result:{model}" for model in sorted(self.results)]
        found += [f"dead_letter:{code}" for _, code in self.rejected]
        found += [f"quarantined:{code}" for code in self.quarantined]
        if self.not_applicable:
            found.append("not_applicable")
        return found


def _details(resource: Any) -> dict[str, Any]:
    if isinstance(resource, str):
        resource = json.loads(resource)
    return {
        d["type"]: json.loads(d["valueString"]) if d["type"] != "correlation-id" else None
        for entity in resource.get("entity", [])
        for d in entity.get("detail", [])
    }


async def outcomes(conn: AsyncConnection, message_ids: Sequence[str]) -> dict[str, Outcome]:
    """The outcome of each of ``message_ids`` as recorded so far."""
    found = {message_id: Outcome() for message_id in message_ids}
    ids = list(found)
    rows = await conn.execute(
        text(
            "SELECT inbound_message_id, model, min(created_at) AS first, count(*) AS n"
            " FROM fhir_resource WHERE inbound_message_id = ANY(:ids) GROUP BY 1, 2"
        ),
        {"ids": ids},
    )
    for row in rows:
        found[row.inbound_message_id].results[row.model] = row.first
        found[row.inbound_message_id].resources += row.n
    rows = await conn.execute(
        text(
            "SELECT message_id, actor, action, resource FROM audit_event"
            " WHERE message_id = ANY(:ids) AND action IN"
            " ('message.received', 'message.rejected', 'deid.completed', 'model.not_applicable',"
            " 'outbox.quarantined')"
        ),
        {"ids": ids},
    )
    for row in rows:
        outcome = found[row.message_id]
        if row.action == "message.rejected":
            outcome.rejected.append((row.actor, str(_details(row.resource).get("code"))))
        elif row.action == "outbox.quarantined":
            outcome.quarantined.append(str(_details(row.resource).get("code")))
        elif row.action == "model.not_applicable":
            outcome.not_applicable = True
        elif row.action == "deid.completed":
            outcome.deidentified = True
        else:
            outcome.received = True
    return found
