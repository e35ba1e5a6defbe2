"""HL7 v2.x ER7: parsing (python-hl7), validation and normalisation.

Segments may be separated by ``\\r``, ``\\n`` or ``\\r\\n``; they are normalised to
``\\r`` before parsing. Escape sequences (``\\F\\``, ``\\S\\``, ``\\T\\``, ``\\R\\``,
``\\E\\``, ``\\X..\\``) are decoded when values are read. Versions 2.3 to 2.8.x are
accepted (MSH-12).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

import hl7
from hl7.containers import Message, Segment

from medstream.clinical import (
    VITAL_LOINC,
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
from medstream.formats.limits import LIMITS, InputLimits

SUPPORTED_VERSIONS = re.compile(r"^2\.(3|4|5|6|7|8)(\.\d+)?$")
PATIENT_EVENTS = frozenset({"A01", "A04", "A08", "A28", "A31"})
NUMERIC_TYPES = frozenset({"NM", "SN"})
CODED_TYPES = frozenset({"CE", "CWE", "CNE", "ST"})
TEXT_TYPES = frozenset({"TX", "FT", "ST"})
_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?$")


@dataclass(frozen=True)
class Hl7Unit:
    """One HL7 message, normalised to ``\\r`` separators, with its patient and kinds."""

    text: str
    message_type: str
    ehr_patient_id: str | None
    kinds: list[Kind]


def normalise_separators(text: str) -> str:
    """``\\r\\n`` and ``\\n`` become ``\\r``; surrounding blank space is dropped."""
    return text.replace("\r\n", "\r").replace("\n", "\r").strip("\r \t\ufeff\x0b\x1c")


def decode(raw: bytes) -> str:
    """ER7 bytes as text: UTF-8, else Latin-1 (HL7's common 8-bit default)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def derive_message_id(raw: bytes) -> str | None:
    """The CONTRACT's HL7 id: MSH-10, the message control id."""
    text = normalise_separators(decode(raw))
    if not text.startswith("MSH"):
        return None
    fields = text.split("\r", 1)[0].split(text[3])
    return f"hl7:{fields[9]}" if len(fields) > 9 and fields[9].strip() else None


def parse(raw: bytes, limits: InputLimits = LIMITS) -> Hl7Unit:
    """Validate one ER7 message; raise InvalidMessage with a stable code if it is bad.

    Segments and separators are counted (in C, by ``str.count``) before python-hl7
    parses anything, so a message of a million fields is refused in milliseconds."""
    text = normalise_separators(decode(raw))
    if not text.startswith("MSH") or len(text) < 8:
        raise InvalidMessage("hl7.no_msh", "The message does not start with an MSH segment.")
    if "\x00" in text:
        raise InvalidMessage("hl7.binary", "The message contains NUL bytes; it is not ER7 text.")
    segment_count = text.count("\r") + 1
    if segment_count > limits.hl7_max_segments:
        raise InvalidMessage(
            "hl7.too_many_segments",
            f"The message has {segment_count} segments, over the limit of "
            f"{limits.hl7_max_segments}.",
        )
    separators = {text[3], *text[4:8]} - {"\r"}
    fields = sum(text.count(c) for c in separators)
    if fields > limits.hl7_max_fields:
        raise InvalidMessage(
            "hl7.too_many_fields",
            f"The message has {fields} field, component and repetition separators, over "
            f"the limit of {limits.hl7_max_fields}.",
        )
    try:
        message = hl7.parse(text)
        msh = message.segment("MSH")
    except Exception:  # noqa: BLE001  (python-hl7 raises many types on bad input)
        raise InvalidMessage("hl7.unparsable", "The ER7 structure could not be parsed.") from None
    version = field(msh, 12)
    if not SUPPORTED_VERSIONS.match(version):
        raise InvalidMessage(
            "hl7.unsupported_version", "MSH-12 is not an HL7 version from 2.3 to 2.8."
        )
    message_type = f"{field(msh, 9, 1, 1)}^{field(msh, 9, 1, 2)}"
    kinds = _kinds(message, message_type)
    patient = patient_id(message)
    if kinds and patient is None:
        raise InvalidMessage("hl7.no_patient", "The message has no PID-3 patient identifier.")
    return Hl7Unit(text, message_type, patient, kinds)


def field(segment: Segment, index: int, repetition: int = 1, component: int = 1) -> str:
    """The unescaped text of one component of field ``index`` (1-based, as HL7 counts).

    ``component=0`` returns the whole repetition. python-hl7 keeps a simple value as a
    plain string and a structured one as nested containers; both are handled.
    """
    try:
        value: object = segment(index)
        if not isinstance(value, str):
            value = value(repetition)  # type: ignore[operator]
        elif repetition != 1:
            return ""
        if component and not isinstance(value, str):
            value = value(component)  # type: ignore[operator]
        elif component > 1:
            return ""
    except (IndexError, KeyError, TypeError, ValueError, AttributeError):
        return ""
    return _unescape(str(value))


def escape(text: str) -> str:
    """HL7 escapes for text written into a field (``\\E\\`` first); the inverse of
    the unescaping ``field`` does."""
    return (
        text.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("&", "\\T\\")
        .replace("~", "\\R\\")
        .replace("\r", "\\.br\\")
        .replace("\n", "\\.br\\")
    )


def _unescape(text: str) -> str:
    return (
        text.replace("\\F\\", "|")
        .replace("\\S\\", "^")
        .replace("\\T\\", "&")
        .replace("\\R\\", "~")
        .replace("\\.br\\", "\n")
        .replace("\\E\\", "\\")
    )


def repetitions(segment: Segment, index: int) -> int:
    """How many repetitions field ``index`` of ``segment`` has."""
    try:
        return len(segment(index))
    except (IndexError, KeyError, TypeError, AttributeError):
        return 0


def segments(message: Message, name: str) -> list[Segment]:
    """Every segment called ``name``, in order."""
    return [s for s in message if str(s[0]) == name]


def patient_id(message: Message) -> str | None:
    """PID-3: the repetition typed MR (medical record number), else the first."""
    pids = segments(message, "PID")
    if not pids:
        return None
    pid = pids[0]
    found = None
    for rep in range(1, repetitions(pid, 3) + 1):
        value = field(pid, 3, rep, 1)
        if value and field(pid, 3, rep, 5) == "MR":
            return value
        found = found or value or None
    return found


def _kinds(message: Message, message_type: str) -> list[Kind]:
    kinds: list[Kind] = []
    event = message_type.split("^")[1] if "^" in message_type else ""
    if message_type.startswith("ADT") and event in PATIENT_EVENTS:
        kinds.append(Kind.PATIENT)
    if message_type.startswith(("ORU", "MDM")):
        if any(_vital(obx) for obx in segments(message, "OBX")):
            kinds.append(Kind.VITALS)
        if _text(message):
            kinds.append(Kind.DOCUMENT)
    return kinds


def _vital(obx: Segment) -> tuple[str, float | None, str | None] | None:
    """A vital-sign OBX as (LOINC, number, coded text). A numeric OBX whose value is
    no finite number keeps NaN, so the plausibility check refuses the message rather
    than letting the vital vanish."""
    code = field(obx, 3, 1, 1)
    if code not in VITAL_LOINC:
        return None
    value_type = field(obx, 2)
    # SN (structured numeric) is comparator^number: the number is the second component.
    raw = field(obx, 5, 1, 2) if value_type == "SN" else field(obx, 5)
    number = _number(raw)
    if value_type in NUMERIC_TYPES:
        if not raw:
            return None
        return code, number if number is not None else math.nan, None
    if value_type == "" and number is not None:
        return code, number, None
    if value_type in CODED_TYPES and raw:
        return code, None, raw
    return None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _text(message: Message) -> str:
    lines = [
        field(obx, 5, rep, 0)
        for obx in segments(message, "OBX")
        if field(obx, 2) in TEXT_TYPES and field(obx, 3, 1, 1) not in VITAL_LOINC
        for rep in range(1, repetitions(obx, 5) + 1)
    ]
    lines += [
        field(nte, 3, rep, 1)
        for nte in segments(message, "NTE")
        for rep in range(1, repetitions(nte, 3) + 1)
    ]
    return "\n".join(line for line in lines if line)


def timestamp(text: str) -> datetime | None:
    """An HL7 TS/DTM value (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]) as an aware datetime."""
    match = _TS.match(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, zone = match.groups()
    try:
        tz = UTC
        if zone:
            sign = 1 if zone[0] == "+" else -1
            tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])))
        return datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            tzinfo=tz,
        )
    except ValueError:
        return None


def normalise(text: str, patient: str) -> list[ClinicalPayload]:
    """The clinical events in one message, referring to the patient as ``patient``."""
    message = hl7.parse(text)
    msh = message.segment("MSH")
    message_type = f"{field(msh, 9, 1, 1)}^{field(msh, 9, 1, 2)}"
    kinds = _kinds(message, message_type)
    sent = timestamp(field(msh, 7))
    payloads: list[ClinicalPayload] = []
    pids = segments(message, "PID")
    if Kind.PATIENT in kinds and pids:
        pid = pids[0]
        birth = timestamp(field(pid, 7))
        payloads.append(
            PatientEvent(
                patient=patient,
                birth_date=birth.date() if birth else None,
                age_years=_age(birth.date()) if birth else None,
                sex={"M": "male", "F": "female", "O": "other", "U": "unknown"}.get(field(pid, 8)),
                postal_code=field(pid, 11, 1, 5) or None,
                deceased=field(pid, 30) == "Y" or None,
            )
        )
    obrs = segments(message, "OBR")
    fallback = (timestamp(field(obrs[0], 7)) if obrs else None) or sent
    if Kind.VITALS in kinds:
        vitals = []
        for obx in segments(message, "OBX"):
            found = _vital(obx)
            observed = timestamp(field(obx, 14)) or fallback
            if found is None or observed is None:
                continue
            code, value, coded = found
            vitals.append(
                VitalSign(
                    vital=VITAL_LOINC[code],
                    loinc=code,
                    value=value,
                    text=coded,
                    unit=field(obx, 6) or None,
                    observed_at=observed,
                    spo2_scale=2 if VITAL_LOINC[code] is Vital.SPO2 and _scale_2(obx) else None,
                )
            )
        if vitals:
            payloads.append(VitalsEvent(patient=patient, vitals=vitals))
    if Kind.DOCUMENT in kinds:
        is_mdm = message_type.startswith("MDM")
        txa = segments(message, "TXA")
        if txa:
            title = field(txa[0], 2, 1, 2) or field(txa[0], 2)
        else:
            title = field(obrs[0], 4, 1, 2) if obrs else ""
        payloads.append(
            DocumentEvent(
                patient=patient,
                document_kind="note" if is_mdm else _report_kind(obrs),
                title=title or None,
                text=_text(message),
                authored_at=(timestamp(field(txa[0], 4)) if txa else None) or fallback,
            )
        )
    return payloads


def _report_kind(obrs: list[Segment]) -> str:
    if not obrs:
        return "report"
    service = (field(obrs[0], 4, 1, 2) + " " + field(obrs[0], 24)).lower()
    radiology = ("xr", "x-ray", "cxr", "chest", "radiograph", "ct", "mri", "rad", "us ")
    return "radiology_report" if any(word in service for word in radiology) else "report"


def _age(birth: date) -> int:
    today = datetime.now(UTC).date()
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _scale_2(obx: Segment) -> bool:
    """An SpO2 OBX whose reference range (OBX-7) is 88-92%."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*%?\s*", field(obx, 7))
    if match is None:
        return False
    return scale_2_range(float(match.group(1)), float(match.group(2)))
