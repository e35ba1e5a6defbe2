"""audit: consumes ``medstream.audit`` and appends each event to its partition's hash
chain as a FHIR AuditEvent row.

Micro-batches keep the chain writes cheap; the inbox makes a redelivered event append
nothing, and the chain trigger refuses any row that is not its chain's next link.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from medstream.audit import trail
from medstream.consumer import BatchHandler
from medstream.deadletter import InvalidMessage
from medstream.envelope import Envelope
from medstream.events import AuditRecord
from medstream.outbox import OutboundMessage
from medstream.received import Received
from medstream.runtime import ServiceRuntime, run
from medstream.topics import AUDIT

NAME = "audit"
GROUP = "medstream-audit"
MAX_BATCH, MAX_WAIT_MS = 500, 100
# The topics this stage consumes; each has its dead-letter topic in the registry.
CONSUMES = (AUDIT.name,)
APPENDED = Counter("medstream_audit_appended_total", "Audit rows appended to the chains")


def make_batch_handler() -> BatchHandler:
    """Append each record of a micro-batch to the chain of its partition."""

    async def handle(
        conn: AsyncConnection, records: Sequence[Received]
    ) -> list[Sequence[OutboundMessage] | InvalidMessage]:
        results: list[Sequence[OutboundMessage] | InvalidMessage] = []
        chains: dict[int, list[Envelope[AuditRecord]]] = defaultdict(list)
        for record in records:
            try:
                event = Envelope[AuditRecord].model_validate_json(record.value)
            except ValidationError:
                results.append(
                    InvalidMessage(
                        "audit.bad_event", "The event is not an audit record of schema version 1."
                    )
                )
                continue
            chains[record.partition].append(event)
            results.append([])
        # Chains in a fixed order, so two writers never wait on each other's locks.
        for chain in sorted(chains):
            APPENDED.inc(await trail.append(conn, chain, chains[chain]))
        return results

    return handle


async def wire(runtime: ServiceRuntime) -> None:
    """Subscribe to the audit topic in micro-batches."""
    processor = runtime.processor(group=GROUP, handler=None, stage=NAME)
    runtime.consumers.subscribe_batch(
        *CONSUMES,
        processor=processor,
        batch_handler=make_batch_handler(),
        max_records=MAX_BATCH,
        max_wait_ms=MAX_WAIT_MS,
    )


def main() -> None:
    """Run the audit service."""
    run(NAME, wire)
