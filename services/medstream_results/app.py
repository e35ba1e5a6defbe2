"""results: the EHR boundary. Consumes the model workers' results a fetched batch at a
time and, in the batch's transaction, for each result:

1. checks that the model version and checksum are in the model registry;
2. re-links the pseudonym to the real patient through the PseudonymVault (audited);
3. builds validated FHIR R4 resources about that patient;
4. stores them in ``fhir_resource`` (unique per inbound message, model and kind);
5. writes them, keyed by EHR patient id, and the audit events to the outbox.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from medstream.audit import audit_message
from medstream.clinical import ImagingResult, MonitoringResult, NotesResult
from medstream.consumer import BatchHandler, Effects
from medstream.deadletter import InvalidMessage
from medstream.deid.vault import PseudonymVault, RelinkRequest, RelinkSeal, VaultCipher
from medstream.envelope import Envelope
from medstream.models.package import registry_packages
from medstream.outbox import OutboundMessage
from medstream.received import Received
from medstream.runtime import ServiceRuntime, run
from medstream.settings import Settings
from medstream.topics import EHR_OUTBOUND_FHIR, RESULTS_IMAGING, RESULTS_MONITORING, RESULTS_NOTES
from medstream.writeback.resources import PatientLink, build, model_family
from medstream.writeback.store import StoreItem, store_many

NAME = "results"
GROUP = "medstream-results"
RESULT_OF_TOPIC: dict[str, type[Envelope[Any]]] = {
    RESULTS_MONITORING.name: Envelope[MonitoringResult],
    RESULTS_IMAGING.name: Envelope[ImagingResult],
    RESULTS_NOTES.name: Envelope[NotesResult],
}
# The topics this stage consumes; each has its dead-letter topic in the registry.
CONSUMES = tuple(RESULT_OF_TOPIC)
RESOURCES = Counter(
    "medstream_results_resources_total", "FHIR resources stored and published", ["type"]
)
log = logging.getLogger("medstream.results")
MAX_BATCH, MAX_WAIT_MS = 64, 50


class ModelRegistry:
    """Which (model, version, checksum) the registry holds. A miss rescans the registry
    (a package may have been added), at most once per ``rescan_s``."""

    def __init__(self, settings: Settings, rescan_s: float = 30.0) -> None:
        self._settings = settings
        self._rescan_s = rescan_s
        self._known: set[tuple[str, str, str]] = set()
        self._scanned_at = float("-inf")

    def _scan(self) -> None:
        self._known = {
            (p.name, p.version, p.checksum)
            for p in registry_packages(self._settings.model_registry)
        }
        self._scanned_at = time.monotonic()

    def knows(self, name: str, version: str, checksum: str) -> bool:
        """Whether the registry holds exactly this package."""
        key = (name, version, checksum)
        if key not in self._known and time.monotonic() - self._scanned_at >= self._rescan_s:
            self._scan()
        return key in self._known


def make_batch_handler(registry: ModelRegistry, vault: PseudonymVault) -> BatchHandler:
    """The handler for the three result topics, a fetched batch at a time: every
    pseudonym re-linked in two statements, every resource stored in one."""

    def checked(received: Received) -> Envelope[Any] | InvalidMessage:
        try:
            event = RESULT_OF_TOPIC[received.topic].model_validate_json(received.value)
        except ValidationError:
            return InvalidMessage(
                "results.bad_event", "The event is not a model result of schema version 1."
            )
        result = event.payload
        if not registry.knows(result.model, result.model_version, result.model_checksum):
            return InvalidMessage(
                "results.unknown_model",
                f"Model {result.model} {result.model_version} (sha256 "
                f"{result.model_checksum[:12]}) is not in the model registry, so its result "
                "is not written back; register the package or retire the worker that uses it.",
            )
        return event

    async def handle(
        conn: AsyncConnection, records: Sequence[Received]
    ) -> list[Effects | InvalidMessage]:
        events = [checked(record) for record in records]
        valid = [e for e in events if not isinstance(e, InvalidMessage)]
        relinks = await vault.relink_many(
            conn,
            [
                RelinkRequest(e.payload.patient, e.correlation_id, f"{NAME}:{e.event_id}:relink")
                for e in valid
            ],
        )
        relink_of = {id(e): answer for e, answer in zip(valid, relinks, strict=True)}
        # Nothing is written until every record is checked, re-linked and built, so a
        # record refused here needs no savepoint.
        outcomes: list[tuple[Envelope[Any], StoreItem, OutboundMessage] | InvalidMessage] = []
        for event in events:
            if isinstance(event, InvalidMessage):
                outcomes.append(event)
                continue
            entry, relinked = relink_of[id(event)]
            if entry is None:
                outcomes.append(
                    InvalidMessage(
                        "results.unknown_patient",
                        "The pseudonym has no vault entry, so the result cannot be re-linked "
                        "to an EHR patient.",
                    )
                )
                continue
            result = event.payload
            patient = PatientLink(
                entry.identity.ehr_patient_id, entry.identity.identifiers, entry.offset_days
            )
            resources = build(
                result, result_event_id=event.event_id, patient=patient, issued=event.produced_at
            )
            item = StoreItem(
                resources,
                inbound_message_id=result.inbound_message_ids[-1],
                model=result.model,
                model_version=result.model_version,
                patient=patient,
                correlation_id=event.correlation_id,
                result_event_id=event.event_id,
            )
            outcomes.append((event, item, relinked))
        items = [o[1] for o in outcomes if not isinstance(o, InvalidMessage)]
        published = iter(await store_many(conn, items))
        answers: list[Effects | InvalidMessage] = []
        for outcome in outcomes:
            if isinstance(outcome, InvalidMessage):
                answers.append(outcome)
                continue
            event, item, relinked = outcome
            messages = next(published)
            answers.append(
                Effects(messages=[relinked, *messages, stored_audit(event, item, messages)])
            )
        return answers

    return handle


def stored_audit(
    event: Envelope[Any], item: StoreItem, published: Sequence[OutboundMessage]
) -> OutboundMessage:
    """The ``result.stored`` audit event (``result.duplicate`` when nothing was new)."""
    result = event.payload
    stored = {m.message_id.removeprefix("fhir:") for m in published}
    for resource in item.resources:
        if f"{resource.resource_type}/{resource.id}" in stored:
            RESOURCES.labels(resource.resource_type).inc()
    return audit_message(
        actor=NAME,
        action="result.stored" if stored else "result.duplicate",
        entity=result.patient,
        message_id=item.inbound_message_id,
        correlation_id=event.correlation_id,
        causation_id=event.event_id,
        details={
            "family": model_family(result),
            "model": result.model,
            "version": result.model_version,
            "checksum": result.model_checksum,
            "inbound_message_ids": result.inbound_message_ids,
            "resources": sorted(stored),
            "published_to": EHR_OUTBOUND_FHIR.name,
        },
        dedupe_key=f"{NAME}:{event.event_id}:stored",
    )


async def wire(runtime: ServiceRuntime) -> None:
    """One processor for the three result topics."""
    registry = ModelRegistry(runtime.settings)
    vault = PseudonymVault(
        VaultCipher.from_settings(runtime.settings),
        None,
        NAME,
        RelinkSeal.for_service(runtime.settings, NAME),
    )
    processor = runtime.processor(group=GROUP, handler=None, stage=NAME)
    runtime.consumers.subscribe_batch(
        *CONSUMES,
        processor=processor,
        batch_handler=make_batch_handler(registry, vault),
        max_records=MAX_BATCH,
        max_wait_ms=MAX_WAIT_MS,
    )
    log.info("results ready", extra={"topics": len(RESULT_OF_TOPIC)})


def main() -> None:
    """Run the results service."""
    run(NAME, wire)
