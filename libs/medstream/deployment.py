"""The MedStream services a deployment runs, named once for the CLI, the local
supervisor, docker-compose and their tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    """A long-running service and the console script that starts it."""

    name: str
    entry_point: str
    description: str
    # Whether it consumes Kafka (in the group ``medstream-<name>``); the gateway only
    # produces.
    consumes: bool = True


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        "ingestion", "medstream-ingestion", "Validates EHR messages into identified records."
    ),
    ServiceSpec("deid", "medstream-deid", "De-identifies records; keeps the PseudonymVault."),
    ServiceSpec("monitoring", "medstream-monitoring", "Scores vital signs: GRU risk and NEWS2."),
    ServiceSpec("imaging", "medstream-imaging", "Labels chest films: CNN with Grad-CAM heatmaps."),
    ServiceSpec("notes", "medstream-notes", "Labels reports: MiniLM with word attributions."),
    ServiceSpec(
        "results", "medstream-results", "Writes results back as FHIR R4 for the real patient."
    ),
    ServiceSpec("audit", "medstream-audit", "Appends audit events to the hash-chained trail."),
    ServiceSpec(
        "gateway",
        "medstream-gateway",
        "MLLP, DICOM, DICOMweb and FHIR REST in; acknowledges only what Kafka holds.",
        consumes=False,
    ),
)
# The consumer groups of the services that consume.
CONSUMER_GROUPS = tuple(f"medstream-{s.name}" for s in SERVICES if s.consumes)
