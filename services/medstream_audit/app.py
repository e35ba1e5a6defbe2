"""audit: consumes ``medstream.audit`` and appends each event to its partition's hash
chain as a FHIR AuditEvent row.

Micro-batches keep the chain writes cheap; the inbox makes a redelivered event append
nothing, and the chain trigger refuses any row that is not its chain's next link.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence

from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from medstream.audit import trail
from medstream.audit.anchor import AnchorFile
from medstream.consumer import BatchHandler
from medstream.deadletter import InvalidMessage
from medstream.envelope import Envelope
from medstream.events import AuditRecord
from medstream.outbox import OutboundMessage
from medstream.platform.secrets import anchor_file, anchor_key
from medstream.received import Received
from medstream.runtime import ServiceRuntime, run
from medstream.topics import AUDIT

NAME = "audit"
GROUP = "medstream-audit"
MAX_BATCH, MAX_WAIT_MS = 500, 100
# The topics this stage consumes; each has its dead-letter topic in the registry.
CONSUMES = (AUDIT.name,)
APPENDED = Counter("medstream_audit_appended_total", "Audit rows appended to the chains")
ANCHORED = Counter("medstream_audit_anchored_total", "Chain heads signed and kept outside")
ANCHOR_FAILURES = Counter("medstream_audit_anchor_failures_total", "Anchoring rounds that failed")
TAMPERED = Counter(
    "medstream_audit_anchor_mismatch_total", "Chains found changed below their last anchor"
)
# Background tasks, held so they are not collected while they run.
_TASKS: set[asyncio.Task[None]] = set()
log = logging.getLogger("medstream.audit")


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


async def anchor_periodically(runtime: ServiceRuntime) -> None:
    """Every ``audit_anchor_interval_s``, sign each chain head that moved and keep the
    anchors outside PostgreSQL: through the outbox to ``medstream.audit.anchors``, then
    appended to the anchor file once the transaction commits. A chain whose row at its
    last anchor no longer has the anchored hash is not signed again: that would bless
    a rewrite; it is logged as tampering for ``audit verify`` to show. A failed round is
    retried at the next one."""
    settings = runtime.settings
    key, file = anchor_key(settings), AnchorFile(anchor_file(settings))
    last = {
        chain: (a.seq, a.hash)
        for chain, a in (await asyncio.to_thread(file.latest, key))[0].items()
    }
    while True:
        await asyncio.sleep(settings.audit_anchor_interval_s)
        try:
            async with runtime.engine.begin() as conn:
                broken = await trail.moved_below(conn, last)
                for chain in broken:
                    log.error("audit chain changed below its last anchor", extra={"chain": chain})
                    TAMPERED.inc()
                records = await trail.export_anchors(
                    conn, key, {c: seq for c, (seq, _) in last.items()}, skip_chains=broken
                )
            await asyncio.to_thread(file.append, records)
        except Exception as error:  # noqa: BLE001  (the loop must outlive any round)
            log.warning("anchoring failed; retrying", extra={"error_class": type(error).__name__})
            ANCHOR_FAILURES.inc()
            continue
        for record in records:
            last[int(str(record["chain"]))] = (int(str(record["seq"])), str(record["hash"]))
        ANCHORED.inc(len(records))


async def wire(runtime: ServiceRuntime) -> None:
    """Subscribe to the audit topic in micro-batches, and anchor the chain heads."""
    anchor_key(runtime.settings)  # refuse to start without a key outside dev
    _TASKS.add(asyncio.create_task(anchor_periodically(runtime)))
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
