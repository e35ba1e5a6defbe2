"""What every FHIR resource MedStream makes shares: code systems, the AIAST security
label, and validation before a resource leaves.

Validation uses ``fhir.resources.R4B``, as inbound validation does: the elements
MedStream writes (DiagnosticReport, Observation, RiskAssessment, Provenance, Device,
AuditEvent) are the same in R4 (4.0.1) and R4B (4.3).
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class

# MedStream's own code and identifier systems. A deployment that needs them under its
# own namespace maps them at the EHR interface engine; the values never change.
BASE = "https://medstream.dev/fhir"
ACTION_SYSTEM = f"{BASE}/CodeSystem/audit-action"
CHEXPERT_SYSTEM = f"{BASE}/CodeSystem/chexpert-observation"
RESULT_KIND_SYSTEM = f"{BASE}/CodeSystem/result-kind"
COMPONENT_SYSTEM = f"{BASE}/CodeSystem/result-component"
ACTOR_SYSTEM = f"{BASE}/sid/actor"
PSEUDONYM_SYSTEM = f"{BASE}/sid/patient-pseudonym"
MESSAGE_ID_SYSTEM = f"{BASE}/sid/inbound-message-id"
MODEL_CHECKSUM_SYSTEM = f"{BASE}/sid/model-sha256"

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"

# HL7 v3 ObservationValue AIAST, "Artificial Intelligence asserted": the label the
# CONTRACT puts on every resource a model made.
AIAST = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "AIAST",
    "display": "Artificial Intelligence asserted",
}


class InvalidOutboundResource(ValueError):
    """A resource MedStream built failed FHIR validation: a bug, never the input's fault."""


def validated(resource: dict[str, Any]) -> dict[str, Any]:
    """``resource`` itself, once it validates as FHIR R4; raises InvalidOutboundResource
    naming the failing paths (never values)."""
    model = get_fhir_model_class(resource["resourceType"])
    try:
        model.model_validate(resource)
    except Exception as exc:  # noqa: BLE001  (pydantic or fhir.resources' own errors)
        errors = getattr(exc, "errors", None)
        where = (
            ", ".join(".".join(str(p) for p in e["loc"]) for e in errors()[:3])
            if callable(errors)
            else type(exc).__name__
        )
        raise InvalidOutboundResource(
            f"{resource['resourceType']} failed FHIR R4 validation at: {where}"
        ) from None
    return resource
