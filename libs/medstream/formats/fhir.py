"""FHIR R4 JSON: validation, splitting into resources, and normalisation.

Validation uses ``fhir.resources.R4B``. R4B (4.3) changed no element of the resources
MedStream reads (Patient, Encounter, Observation, DocumentReference, DiagnosticReport,
Bundle) in a way that breaks R4 (4.0.1) JSON, and the tests validate R4 examples with it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from medstream import budget
from medstream.clinical import (
    VITAL_LOINC,
    VITAL_PANELS,
    ClinicalPayload,
    DocumentEvent,
    Kind,
    PatientEvent,
    Vital,
    VitalsEvent,
    VitalSign,
    scale_2_range,
)
from medstream.errors import InvalidMessage
from medstream.formats.limits import LIMITS, InputLimits, load_json

LOINC = "http://loinc.org"
USED_TYPES = frozenset({"Patient", "Observation", "DocumentReference", "DiagnosticReport"})
RADIOLOGY_CATEGORIES = frozenset({"RAD", "radiology", "LP29684-5"})


@dataclass(frozen=True)
class FhirUnit:
    """One resource of an inbound message, with its patient and what it is used for."""

    resource: dict[str, Any]
    resource_type: str
    ehr_patient_id: str | None
    kinds: list[Kind]


def derive_message_id(raw: bytes) -> str | None:
    """The CONTRACT's FHIR id: ``Bundle.id`` plus ``meta.versionId`` (or a resource's)."""
    data = load_json(raw.decode("utf-8-sig"), "fhir")
    if not isinstance(data, dict) or not data.get("id"):
        return None
    version = (data.get("meta") or {}).get("versionId")
    ident = f"fhir:{data.get('resourceType')}/{data['id']}"
    return f"{ident}/_history/{version}" if version else ident


def parse(raw: bytes, limits: InputLimits = LIMITS) -> dict[str, Any]:
    """Decode and validate a FHIR JSON message (a resource or a Bundle) under
    ``limits``. The content-type header plays no part: the topic says it is FHIR JSON."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidMessage("fhir.not_utf8", "The message is not UTF-8 text.") from None
    stripped = text.lstrip()
    if stripped.startswith("<"):
        raise InvalidMessage(
            "fhir.not_json", "The message looks like XML; this topic takes FHIR JSON."
        )
    data = load_json(text, "fhir", limits)
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise InvalidMessage(
            "fhir.no_resource_type", "The JSON is not a FHIR resource: resourceType is missing."
        )
    if data["resourceType"] == "Bundle":
        entries = data.get("entry")
        if isinstance(entries, list) and len(entries) > limits.fhir_max_entries:
            raise InvalidMessage(
                "fhir.too_many_entries",
                f"The Bundle has {len(entries)} entries, over the limit of "
                f"{limits.fhir_max_entries} per message; split it into smaller Bundles.",
            )
    validate(data)
    return data


def validate(resource: dict[str, Any]) -> None:
    """Validate ``resource`` against its R4B model; errors name paths, never values.

    A Bundle is validated entry by entry (its shell, then each resource), so a large
    Bundle is many short validations that the message's budget can stop, not one long
    one."""
    if resource["resourceType"] != "Bundle" or not isinstance(resource.get("entry"), list):
        _validate_one(resource)
        return
    entries = resource["entry"]
    shell = {
        **resource,
        "entry": [
            {k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e
            for e in entries
        ],
    }
    _validate_one(shell)
    for entry in entries:
        budget.check()
        inner = entry.get("resource") if isinstance(entry, dict) else None
        if inner is None:
            continue
        if not isinstance(inner, dict) or not isinstance(inner.get("resourceType"), str):
            raise InvalidMessage(
                "fhir.invalid_resource", "A Bundle entry's resource has no resourceType."
            )
        _validate_one(inner)


def _validate_one(resource: dict[str, Any]) -> None:
    resource_type = resource["resourceType"]
    try:
        model = get_fhir_model_class(resource_type)
    except (ValueError, KeyError):
        raise InvalidMessage(
            "fhir.unknown_resource_type", "resourceType is not a FHIR R4 resource type."
        ) from None
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        where = ", ".join(_path(error) for error in exc.errors()[:3])
        raise InvalidMessage(
            "fhir.invalid_resource", f"{resource_type} failed FHIR R4 validation at: {where}."
        ) from None
    except Exception:  # noqa: BLE001  (fhir.resources raises KeyError, TypeError… on odd input)
        raise InvalidMessage(
            "fhir.invalid_resource", f"{resource_type} failed FHIR R4 validation."
        ) from None


def _path(error: Any) -> str:
    """Where a validation error is, in element names and indices only: a key the model
    does not know came from the sender and could be anything, so it is not repeated."""
    parts = [str(part) for part in error["loc"]]
    if error.get("type") == "extra_forbidden" and parts:
        parts[-1] = "(unknown element)"
    return ".".join(parts) or "(root)"


def split(data: dict[str, Any]) -> list[FhirUnit]:
    """The resources of a validated message, each with its patient and kinds."""
    if data["resourceType"] != "Bundle":
        return [_unit(data, {})]
    entries = [e for e in data.get("entry") or [] if isinstance(e.get("resource"), dict)]
    full_urls = {e["fullUrl"]: e["resource"] for e in entries if e.get("fullUrl")}
    return [_unit(e["resource"], full_urls) for e in entries]


def _unit(resource: dict[str, Any], full_urls: dict[str, dict[str, Any]]) -> FhirUnit:
    resource_type = resource["resourceType"]
    kinds = _kinds(resource)
    patient = None
    if kinds or resource_type == "Encounter":
        patient = _patient_id(resource, full_urls)
        if patient is None and kinds:
            raise InvalidMessage(
                "fhir.no_patient_reference",
                f"The {resource_type} does not identify its patient (subject or id).",
            )
    return FhirUnit(resource, resource_type, patient, kinds)


def _kinds(resource: dict[str, Any]) -> list[Kind]:
    resource_type = resource["resourceType"]
    if resource_type == "Patient":
        return [Kind.PATIENT]
    if resource_type == "Observation":
        return [Kind.VITALS] if _vital_codes(resource) else []
    if resource_type in {"DocumentReference", "DiagnosticReport"}:
        return [Kind.DOCUMENT] if _document_text(resource) else []
    return []


def _patient_id(resource: dict[str, Any], full_urls: dict[str, dict[str, Any]]) -> str | None:
    if resource["resourceType"] == "Patient":
        return resource.get("id") or _first_identifier(resource)
    reference = (resource.get("subject") or {}).get("reference")
    if not isinstance(reference, str):
        return None
    if reference in full_urls:
        target = full_urls[reference]
        return target.get("id") or _first_identifier(target)
    parts = reference.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Patient":
        return parts[-1]
    if len(parts) >= 4 and parts[-4] == "Patient" and parts[-2] == "_history":
        return parts[-3]
    return None


def _first_identifier(resource: dict[str, Any]) -> str | None:
    for identifier in resource.get("identifier") or []:
        if identifier.get("value"):
            return str(identifier["value"])
    return None


def _codes(concept: dict[str, Any] | None) -> list[str]:
    return [
        str(c.get("code"))
        for c in (concept or {}).get("coding") or []
        if c.get("system") in (LOINC, None) and c.get("code")
    ]


def _vital_codes(resource: dict[str, Any]) -> list[str]:
    codes = _codes(resource.get("code"))
    found = [c for c in codes if c in VITAL_LOINC]
    if any(c in VITAL_PANELS for c in codes):
        for component in resource.get("component") or []:
            found += [c for c in _codes(component.get("code")) if c in VITAL_LOINC]
    return found


def _document_text(resource: dict[str, Any]) -> str | None:
    attachments: list[dict[str, Any]] = []
    if resource["resourceType"] == "DocumentReference":
        attachments = [c.get("attachment") or {} for c in resource.get("content") or []]
    else:
        attachments = list(resource.get("presentedForm") or [])
    texts = [_attachment_text(a) for a in attachments]
    if resource["resourceType"] == "DiagnosticReport" and resource.get("conclusion"):
        texts.append(str(resource["conclusion"]))
    joined = "\n\n".join(t for t in texts if t)
    return joined or None


def _attachment_text(attachment: dict[str, Any]) -> str | None:
    content_type = str(attachment.get("contentType") or "text/plain")
    if not content_type.startswith("text/plain") or not attachment.get("data"):
        return None
    try:
        return base64.b64decode(attachment["data"], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidMessage(
            "fhir.bad_attachment", "A text/plain attachment is not valid base64 UTF-8."
        ) from None


def encode_attachment(text: str) -> str:
    """The base64 form of a text attachment (used when de-identified text is written back)."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def normalise(resource: dict[str, Any], patient: str) -> list[ClinicalPayload]:
    """The clinical events in one FHIR resource, referring to the patient as ``patient``."""
    resource_type = resource["resourceType"]
    if resource_type == "Patient":
        return [_patient_event(resource, patient)]
    if resource_type == "Observation":
        vitals = _vitals(resource)
        return [VitalsEvent(patient=patient, vitals=vitals)] if vitals else []
    if resource_type in {"DocumentReference", "DiagnosticReport"}:
        text = _document_text(resource)
        if not text:
            return []
        return [
            DocumentEvent(
                patient=patient,
                document_kind=_document_kind(resource),
                title=_title(resource),
                text=text,
                authored_at=_datetime(
                    resource.get("date")
                    or resource.get("issued")
                    or resource.get("effectiveDateTime")
                ),
            )
        ]
    return []


def _patient_event(resource: dict[str, Any], patient: str) -> PatientEvent:
    birth = _date(resource.get("birthDate"))
    addresses = resource.get("address") or [{}]
    return PatientEvent(
        patient=patient,
        birth_date=birth,
        age_years=_age(birth),
        sex=resource.get("gender"),
        postal_code=addresses[0].get("postalCode"),
        deceased=bool(resource.get("deceasedBoolean") or resource.get("deceasedDateTime")),
    )


def _vitals(resource: dict[str, Any]) -> list[VitalSign]:
    observed = _datetime(
        resource.get("effectiveDateTime")
        or (resource.get("effectivePeriod") or {}).get("start")
        or resource.get("issued")
    )
    if observed is None:
        return []
    parts = [resource, *(resource.get("component") or [])]
    vitals = []
    for part in parts:
        for code in _codes(part.get("code")):
            vital = VITAL_LOINC.get(code)
            if vital is None:
                continue
            quantity = part.get("valueQuantity") or {}
            concept = part.get("valueCodeableConcept") or {}
            text = (
                part.get("valueString")
                or concept.get("text")
                or next((c.get("code") for c in concept.get("coding") or [] if c.get("code")), None)
            )
            value = quantity.get("value")
            if value is None and text is None:
                continue
            vitals.append(
                VitalSign(
                    vital=vital,
                    loinc=code,
                    value=float(value) if value is not None else None,
                    text=str(text) if text is not None and value is None else None,
                    unit=quantity.get("unit") or quantity.get("code"),
                    observed_at=observed,
                    spo2_scale=2 if vital is Vital.SPO2 and _scale_2(part) else None,
                )
            )
    return vitals


def _scale_2(part: dict[str, Any]) -> bool:
    """An SpO2 Observation whose reference (target) range is 88-92%."""
    for reference in part.get("referenceRange") or []:
        low, high = (reference.get(k) or {} for k in ("low", "high"))
        if scale_2_range(_number(low.get("value")), _number(high.get("value"))):
            return True
    return False


def _number(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _document_kind(resource: dict[str, Any]) -> str:
    if resource["resourceType"] == "DocumentReference":
        return "note"
    categories = {
        str(c.get("code"))
        for category in resource.get("category") or []
        for c in category.get("coding") or []
    }
    return "radiology_report" if categories & RADIOLOGY_CATEGORIES else "report"


def _title(resource: dict[str, Any]) -> str | None:
    concept = resource.get("type") or resource.get("code") or {}
    return concept.get("text") or next(
        (c.get("display") for c in concept.get("coding") or [] if c.get("display")), None
    )


def _date(value: object) -> date | None:
    if not isinstance(value, str) or len(value) < 4:
        return None
    try:
        parts = [int(p) for p in value[:10].split("-")]
        return date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)
    except ValueError:
        return None


def _datetime(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        day = _date(value)
        return datetime(day.year, day.month, day.day, tzinfo=UTC) if day else None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _age(birth: date | None) -> int | None:
    if birth is None:
        return None
    today = datetime.now(UTC).date()
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
