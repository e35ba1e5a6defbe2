"""Applying the policy tables to FHIR resources, HL7 v2 messages and DICOM data sets."""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import hl7
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from medstream.clinical import DATE_MAX, DATE_MIN, in_date_window
from medstream.deid.dicom_profile import META_REMOVE
from medstream.deid.keys import Pseudonymiser
from medstream.deid.policy import Policy, generalise_zip
from medstream.deid.replace import PatientScope, TextScrubber
from medstream.deid.text import PhiType
from medstream.errors import InvalidMessage
from medstream.formats.hl7v2 import escape as hl7_escape
from medstream.formats.hl7v2 import field as hl7_field
from medstream.formats.hl7v2 import segments

OVER_89 = 90


@dataclass
class RecordContext:
    """What de-identifying one record needs, and what it reports."""

    keys: Pseudonymiser
    policy: Policy
    scrubber: TextScrubber
    patient_key: str
    offset_days: int
    known: list[tuple[str, PhiType]] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)
    text_spans: Counter[str] = field(default_factory=Counter)
    text_sources: Counter[str] = field(default_factory=Counter)

    @property
    def pseudonym(self) -> str:
        return self.keys.patient(self.patient_key)

    @property
    def scope(self) -> PatientScope:
        return PatientScope(self.patient_key, self.offset_days)

    def text(self, value: str) -> str:
        """Scrub free text, counting what was found by type."""
        out, replacements = self.scrubber.scrub(value, self.scope, self.known)
        self.text_spans.update(r.type.value for r in replacements)
        self.text_sources.update(r.source for r in replacements)
        return out

    def shift(self, value: date) -> date:
        """``value`` moved by the patient's offset. A date outside the accepted window
        refuses the record: shifting it could overflow, and it is an entry error."""
        if not in_date_window(value):
            raise InvalidMessage(
                "deid.date_out_of_range",
                f"A date is outside {DATE_MIN.year} to {DATE_MAX.year}; it cannot be a real "
                "clinical date.",
            )
        return value + timedelta(days=self.offset_days)

    def summary(self) -> dict[str, Any]:
        """What was changed: counts per action and per PHI type found in text."""
        return {
            "policy_version": self.policy.version,
            "patient_pseudonym": self.pseudonym,
            "date_offset_applied": True,
            "actions": dict(sorted(self.actions.items())),
            "text_phi": dict(sorted(self.text_spans.items())),
            # Which detectors found them: model, pattern, known, or several (model+pattern).
            "text_phi_sources": dict(sorted(self.text_sources.items())),
        }


def _age_on(birth: date, today: date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _over_89(birth: date) -> bool:
    return _age_on(birth, datetime.now(UTC).date()) > 89


# ---------------------------------------------------------------- FHIR


def _shift_fhir_datetime(value: str, ctx: RecordContext) -> str:
    if len(value) >= 10:
        try:
            shifted = ctx.shift(date.fromisoformat(value[:10]))
        except ValueError:
            return ""
        return shifted.isoformat() + value[10:]
    if len(value) == 7:  # YYYY-MM
        try:
            month = date(int(value[:4]), int(value[5:7]), 15)
        except ValueError:
            return ""
        return ctx.shift(month).isoformat()[:7]
    return value  # a year alone may remain under Safe Harbor


def deidentify_fhir(resource: dict[str, Any], ctx: RecordContext) -> dict[str, Any]:
    """A copy of ``resource`` with only the policy's paths, each transformed."""
    rules = ctx.policy.fhir.get(resource["resourceType"], {})
    out = _walk_fhir(resource, "", rules, ctx)
    out["resourceType"] = resource["resourceType"]
    return out


def _walk_fhir(
    node: dict[str, Any], prefix: str, rules: dict[str, str], ctx: RecordContext
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        path = f"{prefix}{key}"
        action = rules.get(path)
        if action is not None:
            if action == "remove":
                ctx.actions["remove"] += 1
                continue
            transformed = _apply_fhir(action, value, ctx)
            ctx.actions[action] += 1
            if transformed not in (None, "", [], {}):
                out[key] = transformed
        elif any(rule.startswith(path + ".") for rule in rules):
            if isinstance(value, dict):
                out[key] = _walk_fhir(value, path + ".", rules, ctx)
            elif isinstance(value, list):
                out[key] = [
                    _walk_fhir(item, path + ".", rules, ctx)
                    for item in value
                    if isinstance(item, dict)
                ]
        elif key != "resourceType":
            ctx.actions["remove"] += 1
    return out


def _apply_fhir(action: str, value: Any, ctx: RecordContext) -> Any:
    if isinstance(value, list):
        return [_apply_fhir(action, item, ctx) for item in value]
    if action == "keep":
        return value
    if action == "pseudonymise_patient":
        return ctx.pseudonym
    if action == "pseudonymise":
        return ctx.keys.token("id", str(value))
    if action == "pseudonymise_reference":
        return f"Patient/{ctx.pseudonym}"
    if action == "date_shift":
        return _shift_fhir_datetime(str(value), ctx)
    if action == "generalise_birthdate":
        try:
            birth = date.fromisoformat(str(value)[:10])
        except ValueError:
            return None
        if _over_89(birth):
            return str(datetime.now(UTC).year - OVER_89)
        return ctx.shift(birth).isoformat()
    if action == "generalise_zip":
        return generalise_zip(str(value), ctx.policy.restricted_zip3)
    if action == "free_text":
        return ctx.text(str(value))
    if action == "free_text_base64":
        try:
            text = base64.b64decode(str(value), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return base64.b64encode(ctx.text(text).encode("utf-8")).decode("ascii")
    raise ValueError(f"unknown FHIR policy action {action!r}")


def fhir_known_values(resource: dict[str, Any]) -> list[tuple[str, PhiType]]:
    """Identifiers a Patient resource holds, to find again in the same record's text."""
    if resource.get("resourceType") != "Patient":
        return []
    known: list[tuple[str, PhiType]] = []
    for name in resource.get("name") or []:
        for part in [name.get("family"), *(name.get("given") or [])]:
            if isinstance(part, str):
                known.append((part, PhiType.NAME))
    for telecom in resource.get("telecom") or []:
        if telecom.get("value"):
            known.append((str(telecom["value"]), PhiType.PHONE))
    for identifier in resource.get("identifier") or []:
        if identifier.get("value"):
            known.append((str(identifier["value"]), PhiType.MRN))
    return known


# ---------------------------------------------------------------- HL7 v2


def hl7_known_values(message: hl7.Message) -> list[tuple[str, PhiType]]:
    """Names, ids, phones and addresses in PID, NK1 and PV1, to find in the message's text."""
    known: list[tuple[str, PhiType]] = []
    for pid in segments(message, "PID"):
        for component in (1, 2, 3):
            known.append((hl7_field(pid, 5, 1, component), PhiType.NAME))
        for rep in range(1, 4):
            known.append((hl7_field(pid, 3, rep, 1), PhiType.MRN))
        for index, phi in (
            (13, PhiType.PHONE),
            (14, PhiType.PHONE),
            (19, PhiType.SSN),
            (18, PhiType.ID),
        ):
            known.append((hl7_field(pid, index, 1, 1), phi))
        known.append((hl7_field(pid, 11, 1, 1), PhiType.ADDRESS))
        known.append((hl7_field(pid, 11, 1, 3), PhiType.LOCATION))
    for nk1 in segments(message, "NK1"):
        known += [(hl7_field(nk1, 2, 1, c), PhiType.NAME) for c in (1, 2)]
    for pv1 in segments(message, "PV1"):
        for index in (7, 8, 17):
            known += [(hl7_field(pv1, index, 1, c), PhiType.NAME) for c in (2, 3)]
    return [(value, phi) for value, phi in known if value and len(value) > 1]


def _hl7_date(value: str, ctx: RecordContext) -> str:
    digits = value[:8]
    if len(digits) < 8 or not digits.isdigit():
        return value[:4] if len(value) >= 4 and value[:4].isdigit() else ""
    try:
        shifted = ctx.shift(date(int(digits[:4]), int(digits[4:6]), int(digits[6:8])))
    except ValueError:
        return ""
    return shifted.strftime("%Y%m%d") + value[8:]


def deidentify_hl7(message: hl7.Message, ctx: RecordContext) -> str:
    """The message as ER7 text, with only the policy's segments and fields."""
    out_segments = []
    separator = str(message.segment("MSH")[1]) if message.segments("MSH") else "|"
    for segment in message:
        name = str(segment[0])
        rules = ctx.policy.hl7v2.get(name)
        if rules is None:
            ctx.actions["remove_segment"] += 1
            continue
        value_type = hl7_field(segment, 2) if name == "OBX" else ""
        # python-hl7 indexes fields by their HL7 number; in MSH, index 1 is the field
        # separator itself and index 2 the encoding characters.
        fields = []
        for number in range(1, len(segment)):
            raw = str(segment[number])
            if name == "MSH" and number <= 2:
                fields.append(raw)
                continue
            fields.append(_apply_hl7(rules.get(number), raw, segment, number, value_type, ctx))
        if name == "MSH":
            text = name + separator + separator.join(fields[1:])
        else:
            text = name + separator + separator.join(fields)
        out_segments.append(text.rstrip(separator))
    return "\r".join(out_segments)


def _apply_hl7(
    action: str | None,
    raw: str,
    segment: hl7.Segment,
    number: int,
    value_type: str,
    ctx: RecordContext,
) -> str:
    if not raw:
        return ""
    if action is None or action == "remove":
        ctx.actions["remove"] += 1
        return ""
    ctx.actions[action.split(":")[0]] += 1
    if action == "keep":
        return raw
    if action.startswith("constant:"):
        return action.split(":", 1)[1]
    if action == "date_shift":
        return _hl7_date(raw, ctx)
    if action == "generalise_birthdate":
        digits = raw[:8]
        try:
            birth = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
        except ValueError:
            return ""
        if _over_89(birth):
            return str(datetime.now(UTC).year - OVER_89)
        return _hl7_date(raw, ctx)
    if action == "pseudonymise":
        return ctx.keys.token("id", raw)
    if action == "pseudonymise_patient_identifiers":
        reps = []
        for rep in range(1, raw.count("~") + 2):
            kind = hl7_field(segment, number, rep, 5)
            value = hl7_field(segment, number, rep, 1)
            if not value:
                continue
            token = (
                ctx.pseudonym if kind in ("MR", "") and rep == 1 else ctx.keys.token("id", value)
            )
            reps.append(f"{token}^^^^{kind}" if kind else token)
        return "~".join(reps)
    if action == "generalise_address":
        state = hl7_field(segment, number, 1, 4)
        postal = hl7_field(segment, number, 1, 5)
        country = hl7_field(segment, number, 1, 6)
        zip3 = generalise_zip(postal, ctx.policy.restricted_zip3) if postal else ""
        return f"^^^{hl7_escape(state)}^{zip3}^{hl7_escape(country)}".rstrip("^")
    if action == "observation_value":
        if value_type in ("TX", "FT", "ST"):
            return "~".join(
                hl7_escape(ctx.text(part)) for part in _unescaped_reps(segment, number, raw)
            )
        return raw
    if action == "free_text":
        return "~".join(
            hl7_escape(ctx.text(part)) for part in _unescaped_reps(segment, number, raw)
        )
    raise ValueError(f"unknown HL7 policy action {action!r}")


def _unescaped_reps(segment: hl7.Segment, number: int, raw: str) -> list[str]:
    return [hl7_field(segment, number, rep, 0) for rep in range(1, raw.count("~") + 2)]


# ---------------------------------------------------------------- DICOM

DEID_METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113108", "Retain Patient Characteristics Option"),
)


def dicom_known_values(dataset: Dataset) -> list[tuple[str, PhiType]]:
    """Names and ids in the header, to find in any text that is kept."""
    known: list[tuple[str, PhiType]] = []
    for keyword in (
        "PatientName",
        "ReferringPhysicianName",
        "PerformingPhysicianName",
        "OperatorsName",
    ):
        value = dataset.get(keyword)
        for part in str(value or "").replace("^", " ").split():
            known.append((part, PhiType.NAME))
    for keyword in ("PatientID", "OtherPatientIDs", "AccessionNumber"):
        if dataset.get(keyword):
            known.append((str(dataset.get(keyword)), PhiType.MRN))
    return [(v, t) for v, t in known if len(v) > 1]


def deidentify_dicom(dataset: Dataset, ctx: RecordContext) -> Dataset:
    """Apply PS3.15's Basic profile in full, with the Retain Longitudinal Temporal
    Information (Modified Dates) and Retain Patient Characteristics options, in place;
    anything outside the profile and the allow-list is removed. Pixels untouched."""

    def apply(owner: Dataset, element: DataElement, action: str) -> None:
        ctx.actions[f"dicom:{action}"] += 1
        if action == "K":
            return
        if action == "X":
            del owner[element.tag]
        elif action == "Z":
            element.value = [] if element.VR == "SQ" else None
        elif action == "U":
            if element.VM > 1:
                element.value = [ctx.keys.uid(str(v)) for v in element.value]
            elif element.value:
                element.value = ctx.keys.uid(str(element.value))
        elif action == "S":
            element.value = _shift_dicom_date(str(element.value or ""), ctx)
        elif action == "P":
            element.value = ctx.pseudonym
        elif action == "B":
            element.value = _dicom_birth_date(str(element.value or ""), ctx)
        elif action == "A":
            element.value = _dicom_age(str(element.value or ""))
        else:
            raise ValueError(f"unknown DICOM policy action {action!r}")

    ctx.policy.dicom.walk(dataset, apply)
    meta = getattr(dataset, "file_meta", None)
    if meta is not None:
        for tag in META_REMOVE:
            if tag in meta:
                del meta[tag]
        if "SOPInstanceUID" in dataset:
            meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.PatientIdentityRemoved = "YES"
    # LO allows 64 characters; the code sequence below names the profile and options.
    dataset.DeidentificationMethod = f"MedStream {ctx.policy.version} PS3.15 Basic+RLTIMD+RPC"[:64]
    codes = []
    for value, meaning in DEID_METHOD_CODES:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        codes.append(item)
    dataset.DeidentificationMethodCodeSequence = DicomSequence(codes)
    dataset.LongitudinalTemporalInformationModified = "MODIFIED"
    return dataset


def _shift_dicom_date(value: str, ctx: RecordContext) -> str:
    if len(value) < 8 or not value[:8].isdigit():
        return ""
    try:
        shifted = ctx.shift(date(int(value[:4]), int(value[4:6]), int(value[6:8])))
    except ValueError:
        return ""
    return shifted.strftime("%Y%m%d") + value[8:]


def _dicom_birth_date(value: str, ctx: RecordContext) -> str:
    if len(value) < 8 or not value[:8].isdigit():
        return ""
    try:
        birth = date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return ""
    return "" if _over_89(birth) else _shift_dicom_date(value, ctx)


def _dicom_age(value: str) -> str:
    """AS values: ages over 89 years become 090Y."""
    if len(value) == 4 and value[:3].isdigit() and value[3] == "Y" and int(value[:3]) > 89:
        return "090Y"
    return value
