"""Ingestion's core: inbound bytes to validated, identified records. Pure, no I/O.

Each inbound message becomes zero or more records, one per unit the models use
(a FHIR resource, an HL7 message, a DICOM instance). Valid units that no model uses
(an Encounter, an ADT^A03, an RT plan) are counted, not rejected. Invalid input raises
InvalidMessage with a stable code and a sentence that never quotes the message.
"""

from __future__ import annotations

import base64
import json
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime

from medstream import budget
from medstream.clinical import (
    DATE_MAX,
    DATE_MIN,
    ClinicalPayload,
    DocumentEvent,
    IdentifiedRecord,
    Kind,
    PatientEvent,
    SourceFormat,
    VitalsEvent,
    in_date_window,
)
from medstream.deid.policy import load_policy
from medstream.errors import InvalidMessage
from medstream.formats import dicom, fhir, hl7v2
from medstream.formats.limits import LIMITS, InputLimits
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
    limits: InputLimits = LIMITS,
) -> Ingested:
    """Validate ``raw`` and split it into identified records.

    Beyond the format's own rules, each record is checked as the models will read it:
    the patient id is a usable identifier, every vital sign is physiologically
    possible, every date lies in the accepted window, a note is within the text limit,
    and an image carries no burned-in text. Each failure has its own code.
    """
    result = Ingested()
    prefix = source_format.value if source_format is not SourceFormat.HL7V2 else "hl7"

    def used(patient: str | None, kinds: list[Kind], label: str) -> str | None:
        """The checked patient id of a unit a model uses; None (and counted) if unused."""
        budget.check()
        if not kinds or patient is None:
            result.unused.append(label)
            return None
        _check_patient_id(patient, prefix, limits)
        return patient

    def keep(patient: str, kinds: list[Kind], source: str, payloads: list[ClinicalPayload]) -> None:
        for payload in payloads:
            _check_payload(payload, prefix, limits)
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
        for unit in fhir.split(fhir.parse(raw, limits)):
            patient = used(unit.ehr_patient_id, unit.kinds, f"fhir:{unit.resource_type}")
            if patient is not None:
                # Non-ASCII text stays as it is: escaping it would triple its size.
                source = json.dumps(unit.resource, ensure_ascii=False)
                keep(patient, unit.kinds, source, fhir.normalise(unit.resource, patient))
    elif source_format is SourceFormat.HL7V2:
        hl7_unit = hl7v2.parse(raw, limits)
        patient = used(hl7_unit.ehr_patient_id, hl7_unit.kinds, f"hl7v2:{hl7_unit.message_type}")
        if patient is not None:
            keep(patient, hl7_unit.kinds, hl7_unit.text, hl7v2.normalise(hl7_unit.text, patient))
    else:
        dicom_unit = dicom.parse(raw, dicom_max_bytes, limits)
        modality = str(dicom_unit.dataset.get("Modality") or "unknown")
        patient = used(dicom_unit.ehr_patient_id, dicom_unit.kinds, f"dicom:{modality}")
        if patient is not None:
            reason = load_policy().dicom.burned_in_reason(dicom_unit.dataset)
            if reason is not None:
                raise InvalidMessage(
                    "dicom.burned_in_annotation",
                    f"The instance may carry text burned into its pixels ({reason}); header "
                    "de-identification cannot remove it, and no pixel-cleaning step is "
                    "configured, so it is not processed.",
                )
            keep(patient, dicom_unit.kinds, base64.b64encode(raw).decode("ascii"), [])
    return result


def _check_patient_id(patient: str, prefix: str, limits: InputLimits) -> None:
    if len(patient) > limits.patient_id_max_chars or any(
        unicodedata.category(c) == "Cc" for c in patient
    ):
        raise InvalidMessage(
            f"{prefix}.bad_patient_id",
            f"The patient id is over {limits.patient_id_max_chars} characters or holds "
            "control characters; it cannot identify a patient.",
        )


def _check_payload(payload: ClinicalPayload, prefix: str, limits: InputLimits) -> None:
    """Refuse values no patient can have, dates outside the window, overlong notes."""
    dates: list[date | datetime | None] = []
    if isinstance(payload, VitalsEvent):
        for vital in payload.vitals:
            why = vital.implausibility()
            if why is not None:
                raise InvalidMessage("clinical.implausible_value", why)
            dates.append(vital.observed_at)
    elif isinstance(payload, DocumentEvent):
        if len(payload.text) > limits.text_max_chars:
            raise InvalidMessage(
                f"{prefix}.text_too_long",
                f"The document text is {len(payload.text)} characters, over the limit of "
                f"{limits.text_max_chars}.",
            )
        dates.append(payload.authored_at)
    elif isinstance(payload, PatientEvent):
        dates.append(payload.birth_date)
    if any(d is not None and not in_date_window(d) for d in dates):
        raise InvalidMessage(
            f"{prefix}.date_out_of_range",
            f"A date is outside {DATE_MIN.year} to {DATE_MAX.year}; it cannot be a real "
            "clinical date.",
        )
