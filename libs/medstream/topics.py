"""The topic registry: every Kafka topic MedStream uses, defined once.

Topics are created from this registry by ``medstream topics create`` (brokers run
with ``auto.create.topics.enable=false``). ``payload`` names the pydantic model of a
topic whose value is an internal JSON event; contract topics that carry the EHR's
own formats name their content type instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from medstream.clinical import (
    DocumentEvent,
    IdentifiedRecord,
    ImagingEvent,
    ImagingResult,
    MonitoringResult,
    NotesResult,
    PatientEvent,
    VitalsEvent,
)
from medstream.events import AuditRecord

DAY_MS = 24 * 60 * 60 * 1000

# The largest record a MedStream topic accepts (``max.message.bytes``). Kafka's own
# default (about 1 MB) would make the broker refuse a chest radiograph before MedStream
# saw it. Ingestion's DICOM limit (at least 16 MB by the CONTRACT) sits below this, so
# an oversize file still reaches ingestion and is dead-lettered with a reason.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
# Dead-letter topics take a little more: the original record plus the error.* and
# original.* headers must always fit, or a dead letter could never be written.
DEAD_LETTER_SLACK_BYTES = 1024 * 1024
# What MedStream itself writes to a topic stays this far under the topic's limit, for
# the record batch's own framing.
_FRAMING_BYTES = 64 * 1024


@dataclass(frozen=True)
class Topic:
    """One topic and how it is created."""

    name: str
    description: str
    content_type: str
    partitions: int = 6
    retention_ms: int = 7 * DAY_MS
    payload: type[BaseModel] | None = None
    # Internal topics that still carry PHI (before de-identification).
    restricted: bool = False
    dead_letter: str | None = None
    config: dict[str, str] = field(default_factory=dict)

    @property
    def is_dead_letter(self) -> bool:
        """Whether this topic is itself another topic's dead-letter topic."""
        return self.name.endswith(".dlt")

    @property
    def max_message_bytes(self) -> int:
        """The topic's ``max.message.bytes``."""
        return MAX_MESSAGE_BYTES + (DEAD_LETTER_SLACK_BYTES if self.is_dead_letter else 0)


def _with_dead_letter(
    name: str,
    description: str,
    content_type: str,
    *,
    payload: type[BaseModel] | None = None,
    restricted: bool,
    retention_ms: int = 7 * DAY_MS,
) -> tuple[Topic, Topic]:
    """A topic and its ``.dlt`` twin: one partition, rejects kept for 30 days, unchanged."""
    dead = Topic(
        name=f"{name}.dlt",
        description=f"Rejected messages from {name}: original bytes and error.* headers.",
        content_type=content_type,
        partitions=1,
        retention_ms=30 * DAY_MS,
        restricted=restricted,
    )
    main = Topic(
        name=name,
        description=description,
        content_type=content_type,
        payload=payload,
        restricted=restricted,
        dead_letter=dead.name,
        retention_ms=retention_ms,
    )
    return main, dead


def _inbound(name: str, description: str, content_type: str) -> tuple[Topic, Topic]:
    """An inbound contract topic: the EHR's own format, so it carries PHI."""
    return _with_dead_letter(name, description, content_type, restricted=True)


EHR_INBOUND_FHIR, EHR_INBOUND_FHIR_DLT = _inbound(
    "ehr.inbound.fhir",
    "FHIR R4 JSON from the EHR: one resource, or a Bundle.",
    "application/fhir+json",
)
EHR_INBOUND_HL7V2, EHR_INBOUND_HL7V2_DLT = _inbound(
    "ehr.inbound.hl7v2",
    "HL7 v2.x ER7 text from the EHR; MSH-10 is the message id.",
    "x-application/hl7-v2+er7",
)
EHR_INBOUND_DICOM, EHR_INBOUND_DICOM_DLT = _inbound(
    "ehr.inbound.dicom",
    "DICOM Part 10 files from the EHR or PACS.",
    "application/dicom",
)
EHR_OUTBOUND_FHIR = Topic(
    name="ehr.outbound.fhir",
    description="FHIR R4 resources made by MedStream, keyed by the EHR patient id.",
    content_type="application/fhir+json",
    retention_ms=30 * DAY_MS,
    restricted=True,
)
AUDIT, AUDIT_DLT = _with_dead_letter(
    "medstream.audit",
    "Audit events from every service, persisted by the audit service.",
    "application/json",
    payload=AuditRecord,
    restricted=False,
    retention_ms=30 * DAY_MS,
)
AUDIT_ANCHORS = Topic(
    name="medstream.audit.anchors",
    description="Each audit chain's head, HMAC-signed outside PostgreSQL (compacted: the "
    "latest anchor per chain, keyed by chain number).",
    content_type="application/json",
    partitions=1,
    retention_ms=-1,
    config={"cleanup.policy": "compact"},
)


def _internal(
    name: str, description: str, payload: type[BaseModel], *, restricted: bool
) -> tuple[Topic, Topic]:
    """An internal topic of enveloped JSON events."""
    return _with_dead_letter(
        name, description, "application/json", payload=payload, restricted=restricted
    )


IDENTIFIED_FHIR, IDENTIFIED_FHIR_DLT = _internal(
    "medstream.identified.fhir",
    "Validated FHIR resources, one per event. Carries PHI: deid is its only consumer.",
    IdentifiedRecord,
    restricted=True,
)
IDENTIFIED_HL7V2, IDENTIFIED_HL7V2_DLT = _internal(
    "medstream.identified.hl7v2",
    "Validated HL7 v2 messages, one per event. Carries PHI: deid is its only consumer.",
    IdentifiedRecord,
    restricted=True,
)
IDENTIFIED_DICOM, IDENTIFIED_DICOM_DLT = _internal(
    "medstream.identified.dicom",
    "Validated DICOM instances, one per event. Carries PHI: deid is its only consumer.",
    IdentifiedRecord,
    restricted=True,
)
DEID_PATIENT, DEID_PATIENT_DLT = _internal(
    "medstream.deid.patient",
    "De-identified demographics: pseudonym, generalised age, sex, 3-digit ZIP.",
    PatientEvent,
    restricted=False,
)
DEID_VITALS, DEID_VITALS_DLT = _internal(
    "medstream.deid.vitals",
    "De-identified vital signs, keyed by pseudonym, times shifted.",
    VitalsEvent,
    restricted=False,
)
DEID_DOCUMENT, DEID_DOCUMENT_DLT = _internal(
    "medstream.deid.document",
    "De-identified clinical notes and reports.",
    DocumentEvent,
    restricted=False,
)
DEID_IMAGING, DEID_IMAGING_DLT = _internal(
    "medstream.deid.imaging",
    "De-identified DICOM instances (PS3.15 Basic profile), pixel data intact.",
    ImagingEvent,
    restricted=False,
)

RESULTS_MONITORING, RESULTS_MONITORING_DLT = _internal(
    "medstream.results.monitoring",
    "Deterioration risk with NEWS2 and per-vital explanations, keyed by pseudonym.",
    MonitoringResult,
    restricted=False,
)

RESULTS_IMAGING, RESULTS_IMAGING_DLT = _internal(
    "medstream.results.imaging",
    "CheXpert probabilities with a Grad-CAM heatmap per film, keyed by pseudonym.",
    ImagingResult,
    restricted=False,
)
RESULTS_NOTES, RESULTS_NOTES_DLT = _internal(
    "medstream.results.notes",
    "CheXpert labels with word attributions per report, keyed by pseudonym.",
    NotesResult,
    restricted=False,
)

ALL_TOPICS: tuple[Topic, ...] = (
    IDENTIFIED_FHIR,
    IDENTIFIED_FHIR_DLT,
    IDENTIFIED_HL7V2,
    IDENTIFIED_HL7V2_DLT,
    IDENTIFIED_DICOM,
    IDENTIFIED_DICOM_DLT,
    DEID_PATIENT,
    DEID_PATIENT_DLT,
    DEID_VITALS,
    DEID_VITALS_DLT,
    DEID_DOCUMENT,
    DEID_DOCUMENT_DLT,
    DEID_IMAGING,
    DEID_IMAGING_DLT,
    RESULTS_MONITORING,
    RESULTS_MONITORING_DLT,
    RESULTS_IMAGING,
    RESULTS_IMAGING_DLT,
    RESULTS_NOTES,
    RESULTS_NOTES_DLT,
    EHR_INBOUND_FHIR,
    EHR_INBOUND_FHIR_DLT,
    EHR_INBOUND_HL7V2,
    EHR_INBOUND_HL7V2_DLT,
    EHR_INBOUND_DICOM,
    EHR_INBOUND_DICOM_DLT,
    EHR_OUTBOUND_FHIR,
    AUDIT,
    AUDIT_DLT,
    AUDIT_ANCHORS,
)

BY_NAME: dict[str, Topic] = {topic.name: topic for topic in ALL_TOPICS}


def dead_letter_topic(source: str) -> str:
    """The dead-letter topic of ``source``: the registry's, or ``<source>.dlt``."""
    topic = BY_NAME.get(source)
    if topic is not None and topic.dead_letter is not None:
        return topic.dead_letter
    return f"{source}.dlt"


def record_limit(topic: str) -> int:
    """The largest record MedStream writes to ``topic``: its limit less the framing."""
    known = BY_NAME.get(topic)
    limit = known.max_message_bytes if known is not None else MAX_MESSAGE_BYTES
    return limit - _FRAMING_BYTES
