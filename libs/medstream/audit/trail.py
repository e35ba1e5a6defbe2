"""The audit trail in PostgreSQL: FHIR AuditEvent rows appended to hash chains,
verified and queried.

One chain per partition of ``medstream.audit``. Kafka gives each partition to one
consumer of the audit service's group, and the writer also takes a transaction-level
advisory lock per chain, so during a rebalance two writers append one after the other,
never both from the same head. A trigger accepts a row only as its chain's next link
and advances ``audit_chain_head``. ``verify`` walks every chain.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from medstream import outbox
from medstream.audit.anchor import Anchor, anchors_of, signed_record
from medstream.audit.anchor import check as check_anchor
from medstream.audit.chain import (
    ChainRow,
    Finding,
    content_of,
    genesis,
    link_hash,
    verify_chain,
)
from medstream.envelope import Envelope, utc_now
from medstream.events import AuditRecord
from medstream.fhir_r4 import (
    ACTION_SYSTEM,
    ACTOR_SYSTEM,
    MESSAGE_ID_SYSTEM,
    PSEUDONYM_SYSTEM,
    validated,
)
from medstream.outbox import OutboundMessage
from medstream.topics import AUDIT_ANCHORS

DCM = "http://dicom.nema.org/resources/ontology/DCM"
# DICOM audit event types (PS3.15 A.5) by the first part of MedStream's action.
EVENT_TYPE = {
    "message": ("110107", "Import"),
    "result": ("110106", "Export"),
    "vault": ("110110", "Patient Record"),
    "audit": ("110112", "Query"),
    "lineage": ("110112", "Query"),
}
APPLICATION_ACTIVITY = ("110100", "Application Activity")
# FHIR AuditEvent.action: C, R, U, D or E.
CRUDE = {"vault.read": "R", "vault.relink": "R", "vault.write": "U", "message.received": "C"}
CRUDE_BY_PREFIX = {"result": "C", "audit": "R", "lineage": "R"}
LOCK_NAMESPACE = 0x6D617564  # advisory lock class for audit chains ("maud")


def audit_event_resource(event: Envelope[AuditRecord], recorded_at: datetime) -> dict[str, Any]:
    """The FHIR R4 AuditEvent of one audit record (validated)."""
    record = event.payload
    family = record.action.split(".", 1)[0]
    code, display = EVENT_TYPE.get(family, APPLICATION_ACTIVITY)
    entities: list[dict[str, Any]] = []
    if event.patient_pseudonym:
        entities.append(
            {
                "what": {
                    "identifier": {"system": PSEUDONYM_SYSTEM, "value": event.patient_pseudonym}
                },
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "1",
                    "display": "Person",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                    "display": "Patient",
                },
            }
        )
    details = [
        {"type": "correlation-id", "valueString": event.correlation_id},
        *(
            {"type": key, "valueString": json.dumps(value, sort_keys=True)}
            for key, value in sorted(record.details.items())
        ),
    ]
    entities.append(
        {
            "what": {
                "identifier": {
                    "system": MESSAGE_ID_SYSTEM,
                    "value": record.message_id or record.entity or event.event_id,
                }
            },
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                "code": "2",
                "display": "System Object",
            },
            "detail": details,
        }
    )
    resource = {
        "resourceType": "AuditEvent",
        "id": event.event_id,
        "type": {"system": DCM, "code": code, "display": display},
        "subtype": [{"system": ACTION_SYSTEM, "code": record.action}],
        "action": CRUDE.get(record.action, CRUDE_BY_PREFIX.get(family, "E")),
        "period": {"start": event.occurred_at.isoformat()},
        "recorded": recorded_at.isoformat(),
        "outcome": record.outcome.value,
        "agent": [
            {
                "who": {
                    "identifier": {"system": ACTOR_SYSTEM, "value": record.actor},
                    "display": record.actor,
                },
                "requestor": record.actor.startswith("user:"),
            }
        ],
        "source": {
            "observer": {"display": "MedStream"},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
        "entity": entities,
    }
    return validated(resource)


# The per-row columns of an appended batch, with their SQL types (the resource goes as
# JSON text, cast to jsonb in the statement).
_ARRAY_COLUMNS = (
    ("seq", "bigint"),
    ("event_id", "text"),
    ("recorded_at", "timestamptz"),
    ("occurred_at", "timestamptz"),
    ("actor", "text"),
    ("action", "text"),
    ("outcome", "text"),
    ("entity", "text"),
    ("patient_pseudonym", "text"),
    ("message_id", "text"),
    ("correlation_id", "text"),
    ("causation_id", "text"),
    ("resource", "text"),
    ("prev_hash", "text"),
    ("hash", "text"),
)

# Built from the constant column list above; no value is ever part of the text.
_APPEND = text(
    "INSERT INTO audit_event (chain, seq, event_id, recorded_at, occurred_at, actor, action,"  # noqa: S608
    " outcome, entity, patient_pseudonym, message_id, correlation_id, causation_id, resource,"
    " prev_hash, hash)"
    " SELECT :chain, seq, event_id, recorded_at, occurred_at, actor, action, outcome, entity,"
    " patient_pseudonym, message_id, correlation_id, causation_id, CAST(resource AS jsonb),"
    " prev_hash, hash FROM unnest("
    + ", ".join(f"CAST(:{c} AS {t}[])" for c, t in _ARRAY_COLUMNS)
    + ") WITH ORDINALITY AS u("
    + ", ".join(c for c, _ in _ARRAY_COLUMNS)
    + ", n) ORDER BY n"
)


async def append(conn: AsyncConnection, chain: int, events: Sequence[Envelope[AuditRecord]]) -> int:
    """Append ``events`` to ``chain`` in the caller's transaction; return how many were
    new (an event already stored is skipped, so a redelivery appends nothing)."""
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(:ns, :chain)"), {"ns": LOCK_NAMESPACE, "chain": chain}
    )
    stored = set(
        (
            await conn.execute(
                text("SELECT event_id FROM audit_event WHERE event_id = ANY(:ids)"),
                {"ids": [e.event_id for e in events]},
            )
        ).scalars()
    )
    head = (
        await conn.execute(
            text("SELECT seq, hash FROM audit_chain_head WHERE chain = :c"), {"c": chain}
        )
    ).first()
    seq, prev = (head.seq, head.hash) if head else (0, genesis(chain))
    rows = []
    for event in events:
        if event.event_id in stored:
            continue
        stored.add(event.event_id)
        recorded_at = utc_now()
        record = event.payload
        row: dict[str, Any] = {
            "chain": chain,
            "event_id": event.event_id,
            "recorded_at": recorded_at,
            "occurred_at": event.occurred_at,
            "actor": record.actor,
            "action": record.action,
            "outcome": record.outcome.value,
            "entity": record.entity,
            "patient_pseudonym": event.patient_pseudonym,
            "message_id": record.message_id,
            "correlation_id": event.correlation_id,
            "causation_id": event.causation_id,
            "resource": audit_event_resource(event, recorded_at),
        }
        seq += 1
        row_hash = link_hash(prev, content_of(row))
        rows.append({**row, "seq": seq, "prev_hash": prev, "hash": row_hash})
        prev = row_hash
    if rows:
        # One statement for the batch, its rows in chain order (the trigger checks each
        # is the next link): far cheaper for PostgreSQL than a row at a time.
        await conn.execute(
            _APPEND,
            {
                "chain": chain,
                **{
                    column: [
                        json.dumps(r[column]) if column == "resource" else r[column] for r in rows
                    ]
                    for column, _ in _ARRAY_COLUMNS
                },
            },
        )
    return len(rows)


@dataclass(frozen=True)
class ChainReport:
    """One chain's verification: its size, its head and what was found."""

    chain: int
    rows: int
    head_seq: int | None
    head_hash: str | None
    findings: list[Finding]


ROW_COLUMNS = (
    "seq, prev_hash, hash, chain, event_id, recorded_at, occurred_at, actor, action, outcome,"
    " entity, patient_pseudonym, message_id, correlation_id, causation_id, resource"
)


async def heads(conn: AsyncConnection) -> dict[int, tuple[int, str]]:
    """Each chain's recorded head: ``{chain: (seq, hash)}``."""
    result = await conn.execute(text("SELECT chain, seq, hash FROM audit_chain_head"))
    return {row.chain: (row.seq, row.hash) for row in result}


async def moved_below(conn: AsyncConnection, anchored: Mapping[int, tuple[int, str]]) -> set[int]:
    """The chains whose row at their last anchored ``seq`` no longer has the anchored
    hash (rewritten, or cut below it)."""
    broken = set()
    for chain, (seq, digest) in anchored.items():
        stored = (
            await conn.execute(
                text("SELECT hash FROM audit_event WHERE chain = :c AND seq = :s"),
                {"c": chain, "s": seq},
            )
        ).scalar()
        if stored != digest:
            broken.add(chain)
    return broken


async def export_anchors(
    conn: AsyncConnection,
    key: bytes,
    skip: Mapping[int, int] | None = None,
    skip_chains: set[int] | None = None,
) -> list[dict[str, object]]:
    """Sign each chain's head (except those whose head is still ``skip[chain]``, and
    ``skip_chains``) and enqueue it for ``medstream.audit.anchors`` in the caller's
    transaction; return the signed records, for the caller to append to the anchor
    file once it commits."""
    fresh = {
        c: h
        for c, h in (await heads(conn)).items()
        if (skip or {}).get(c) != h[0] and c not in (skip_chains or set())
    }
    records = [signed_record(a, key) for a in anchors_of(fresh)]
    for record in records:
        await outbox.enqueue(
            conn,
            OutboundMessage(
                topic=AUDIT_ANCHORS.name,
                value=json.dumps(record, sort_keys=True).encode(),
                message_id=f"audit-anchor:{record['chain']}:{record['seq']}",
                key=str(record["chain"]).encode(),
            ),
        )
    return records


async def verify(
    conn: AsyncConnection,
    chains: Sequence[int] | None = None,
    anchors: Mapping[int, Anchor | Sequence[Anchor]] | None = None,
) -> list[ChainReport]:
    """Verify ``chains`` (default: every chain with rows or a recorded head) in one
    snapshot, so rows appended meanwhile are neither seen nor mistaken for insertions.
    With ``anchors`` (each chain's signed heads), a chain must still hold every
    anchored row with its anchored hash: that catches a tail rewritten with recomputed
    hashes, which the chain alone cannot."""
    if not conn.in_transaction():
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
    recorded = await heads(conn)
    if chains is None:
        chains = sorted(
            set(recorded)
            | set((await conn.execute(text("SELECT DISTINCT chain FROM audit_event"))).scalars())
        )
    reports = []
    for chain in chains:
        result = await conn.execute(
            text(f"SELECT {ROW_COLUMNS} FROM audit_event WHERE chain = :c ORDER BY seq"),  # noqa: S608
            {"c": chain},
        )
        rows = [
            ChainRow(r["seq"], r["prev_hash"], r["hash"], content_of(dict(r)))
            for r in result.mappings()
        ]
        head = recorded.get(chain)
        reports.append(
            ChainReport(
                chain=chain,
                rows=len(rows),
                head_seq=head[0] if head else None,
                head_hash=head[1] if head else None,
                findings=[
                    *verify_chain(chain, rows, head),
                    *check_anchor(chain, rows, (anchors or {}).get(chain)),
                ],
            )
        )
    return reports


@dataclass(frozen=True)
class AuditFilter:
    """What ``medstream audit query`` selects; every field is optional."""

    patient: str | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    correlation_id: str | None = None
    message_id: str | None = None
    limit: int = 200


async def query(conn: AsyncConnection, selection: AuditFilter) -> list[dict[str, Any]]:
    """Rows matching ``selection``, oldest first."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    for column, value in (
        ("patient_pseudonym", selection.patient),
        ("actor", selection.actor),
        ("action", selection.action),
        ("correlation_id", selection.correlation_id),
        ("message_id", selection.message_id),
    ):
        if value is not None:
            clauses.append(f"{column} = :{column}")
            params[column] = value
    if selection.since is not None:
        clauses.append("recorded_at >= :since")
        params["since"] = selection.since
    if selection.until is not None:
        clauses.append("recorded_at < :until")
        params["until"] = selection.until
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    result = await conn.execute(
        text(
            f"SELECT * FROM (SELECT {ROW_COLUMNS} FROM audit_event {where}"  # noqa: S608
            " ORDER BY recorded_at DESC, chain, seq DESC LIMIT :limit) newest"
            " ORDER BY recorded_at, chain, seq"
        ),
        {**params, "limit": selection.limit},
    )
    rows = [dict(row) for row in result.mappings()]
    for row in rows:
        if isinstance(row["resource"], str):
            row["resource"] = json.loads(row["resource"])
    return rows
