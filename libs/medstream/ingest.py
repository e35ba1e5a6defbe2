"""Ingestion's core: inbound bytes to validated, identified records. Pure, no I/O.

Each inbound message becomes zero or more records, one per unit the models use
(a FHIR resource, an HL7 message, a DICOM instance). Valid units that no model uses
(an Encounter, an ADT^A03, an RT plan) are counted, not rejected. Invalid input raises
InvalidMessage with a stable code and a sentence that never quotes the message.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from medstream.clinical import IdentifiedRecord, Kind, SourceFormat
from medstream.formats import dicom, fhir, hl7v2
from medstream.received import ContentIdDeriver
from medstream.topics import (
    EHR_INBOUND_DICOM,
    EHR_INBOUND_FHIR,
    EHR_INBOUND_HL7V2,
    IDENTIFIED_DICOM,
    IDENTIFIED_FHIR,
    IDENTIFIED_HL7V2,
)

FORMAT_OF_TOPIC = {
    EHR_INBOUND_FHIR.name: SourceFormat.FHIR,
    EHR_INBOUND_HL7V2.name: SourceFormat.HL7V2,
    EHR_INBOUND_DICOM.name: SourceFormat.DICOM,
}
IDENTIFIED_TOPIC = {
    SourceFormat.FHIR: IDENTIFIED_FHIR.name,
    SourceFormat.HL7V2: IDENTIFIED_HL7V2.name,
    SourceFormat.DICOM: IDENTIFIED_DICOM.name,
}
DERIVE_ID: dict[SourceFormat, ContentIdDeriver] = {
    SourceFormat.FHIR: fhir.derive_message_id,
    SourceFormat.HL7V2: hl7v2.derive_message_id,
    SourceFormat.DICOM: dicom.derive_message_id,
}


@dataclass
class Ingested:
    """What one inbound message yielded."""

    records: list[IdentifiedRecord] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)  # e.g. "fhir:Encounter", "hl7v2:ADT^A03"


def ingest(
    source_format: SourceFormat,
    raw: bytes,
    *,
    message_id: str,
    dicom_max_bytes: int,
    source_system: str | None = None,
) -> Ingested:
    """Validate ``raw`` and split it into identified records."""
    result = Ingested()

    def add(patient: str | None, kinds: list[Kind], source: str, unused_label: str) -> None:
        if not kinds or patient is None:
            result.unused.append(unused_label)
            return
        result.records.append(
            IdentifiedRecord(
                format=source_format,
                ehr_patient_id=patient,
                kinds=kinds,
                source=source,
                source_system=source_system,
                inbound_message_id=message_id,
            )
        )

    if source_format is SourceFormat.FHIR:
        for unit in fhir.split(fhir.parse(raw)):
            add(
                unit.ehr_patient_id,
                unit.kinds,
                json.dumps(unit.resource),
                f"fhir:{unit.resource_type}",
            )
    elif source_format is SourceFormat.HL7V2:
        hl7_unit = hl7v2.parse(raw)
        add(
            hl7_unit.ehr_patient_id, hl7_unit.kinds, hl7_unit.text, f"hl7v2:{hl7_unit.message_type}"
        )
    else:
        dicom_unit = dicom.parse(raw, dicom_max_bytes)
        modality = str(dicom_unit.dataset.get("Modality") or "unknown")
        add(
            dicom_unit.ehr_patient_id,
            dicom_unit.kinds,
            base64.b64encode(raw).decode("ascii"),
            f"dicom:{modality}",
        )
    return result
