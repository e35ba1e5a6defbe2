"""results: the EHR boundary. Consumes the model workers' results and, for each, in one
transaction:

1. checks that the model version and checksum are in the model registry;
2. re-links the pseudonym to the real patient through the PseudonymVault (audited);
3. builds validated FHIR R4 resources about that patient;
4. stores them in ``fhir_resource`` (unique per inbound message, model and kind);
5. writes them, keyed by EHR patient id, and the audit events to the outbox.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from medstream.audit import audit_message
from medstream.clinical import ImagingResult, MonitoringResult, NotesResult
from medstream.consumer import Effects, Handler
from medstream.deadletter import InvalidMessage
from medstream.deid.vault import PseudonymVault, RelinkSeal, VaultCipher
from medstream.envelope import Envelope
from medstream.models.package import registry_packages
from medstream.received import Received
from medstream.runtime import ServiceRuntime, run
from medstream.settings import Settings
from medstream.topics import EHR_OUTBOUND_FHIR, RESULTS_IMAGING, RESULTS_MONITORING, RESULTS_NOTES
from medstream.writeback.resources import PatientLink, build, model_family
from medstream.writeback.store import store

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


def make_handler(registry: ModelRegistry, vault: PseudonymVault) -> Handler:
    """The handler for the three result topics."""

    async def handle(conn: AsyncConnection, received: Received) -> Effects:
        try:
            event = RESULT_OF_TOPIC[received.topic].model_validate_json(received.value)
        except ValidationError:
            raise InvalidMessage(
                "results.bad_event", "The event is not a model result of schema version 1."
            ) from None
        result = event.payload
        if not registry.knows(result.model, result.model_version, result.model_checksum):
            raise InvalidMessage(
                "results.unknown_model",
                f"Model {result.model} {result.model_version} (sha256 "
                f"{result.model_checksum[:12]}) is not in the model registry, so its result "
                "is not written back; register the package or retire the worker that uses it.",
            )
        entry, relinked = await vault.relink(
            conn,
            result.patient,
            correlation_id=event.correlation_id,
            dedupe_key=f"{NAME}:{event.event_id}:relink",
        )
        if entry is None:
            raise InvalidMessage(
                "results.unknown_patient",
                "The pseudonym has no vault entry, so the result cannot be re-linked "
                "to an EHR patient.",
            )
        patient = PatientLink(
            entry.identity.ehr_patient_id, entry.identity.identifiers, entry.offset_days
        )
        resources = build(
            result, result_event_id=event.event_id, patient=patient, issued=event.produced_at
        )
        inbound = result.inbound_message_ids[-1]
        published = await store(
            conn,
            resources,
            inbound_message_id=inbound,
            model=result.model,
            model_version=result.model_version,
            patient=patient,
            correlation_id=event.correlation_id,
            result_event_id=event.event_id,
        )
        stored = {m.message_id.removeprefix("fhir:") for m in published}
        for resource in resources:
            if f"{resource.resource_type}/{resource.id}" in stored:
                RESOURCES.labels(resource.resource_type).inc()
        stored_audit = audit_message(
            actor=NAME,
            action="result.stored" if stored else "result.duplicate",
            entity=result.patient,
            message_id=inbound,
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
        return Effects(messages=[relinked, *published, stored_audit])

    return handle


async def wire(runtime: ServiceRuntime) -> None:
    """One processor for the three result topics."""
    registry = ModelRegistry(runtime.settings)
    vault = PseudonymVault(
        VaultCipher.from_settings(runtime.settings),
        None,
        NAME,
        RelinkSeal.for_service(runtime.settings, NAME),
    )
    processor = runtime.processor(group=GROUP, handler=make_handler(registry, vault), stage=NAME)
    runtime.consumers.subscribe(*CONSUMES, processor=processor)
    log.info("results ready", extra={"topics": len(RESULT_OF_TOPIC)})


def main() -> None:
    """Run the results service."""
    run(NAME, wire)
