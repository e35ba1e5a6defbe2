"""Every input limit and clinical check has its own code, and none lets an exception
other than InvalidMessage escape ingestion's pure core."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest

from medstream.clinical import SourceFormat
from medstream.deid.engine import DeidEngine
from medstream.deid.keys import Pseudonymiser
from medstream.errors import InvalidMessage
from medstream.formats.limits import LIMITS, InputLimits, load_json
from medstream.ingest import ingest

FIXTURES = Path(__file__).parents[1] / "fixtures"
HL7 = (FIXTURES / "oru_r01.hl7").read_bytes()
MB = 1024 * 1024


def code(source_format: SourceFormat, raw: bytes, limits: InputLimits = LIMITS) -> str:
    try:
        ingest(source_format, raw, message_id="m", dicom_max_bytes=16 * MB, limits=limits)
    except InvalidMessage as error:
        return error.code
    return "ok"


def observation(value: Any, *, unit: str = "/min", loinc: str = "8867-4", when: str = "") -> bytes:
    return json.dumps(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": when or "2026-03-14T10:00:00Z",
            "valueQuantity": {"value": value, "unit": unit},
        }
    ).encode()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("[" * 50_000 + "]" * 50_000, "fhir.too_deep"),
        ('{"a":' * 70 + "1" + "}" * 70, "fhir.too_deep"),
        ('{"resourceType": "Patient", "x": ' + "9" * 5000 + "}", "fhir.bad_number"),
        ('{"resourceType": "Patient", "x": 1e999}', "fhir.bad_number"),
        ('{"resourceType": "Patient", "x": NaN}', "fhir.bad_number"),
        ('{"resourceType": "Patient", "x": -Infinity}', "fhir.bad_number"),
        ('{"resourceType": "Patient", "id": "a\\u0000b"}', "fhir.bad_text"),
        ('{"resourceType": "Patient", "id": "\\udc80"}', "fhir.bad_text"),
        (
            '{"resourceType": "Patient", "x": [' + ",".join(["0"] * 100_001) + "]}",
            "fhir.too_large_value",
        ),
    ],
)
def test_json_limits_have_their_codes(raw: str, expected: str) -> None:
    assert code(SourceFormat.FHIR, raw.encode()) == expected


def test_a_long_string_is_refused_by_its_limit() -> None:
    limits = InputLimits(json_max_string_chars=1000)
    raw = json.dumps({"resourceType": "Patient", "id": "p", "x": "a" * 1001}).encode()
    assert code(SourceFormat.FHIR, raw, limits) == "fhir.too_large_value"


def test_valid_unicode_and_escaped_pairs_are_fine() -> None:
    assert load_json('{"a": "\\ud83d\\ude00 Zoë 北京"}', "fhir") == {"a": "😀 Zoë 北京"}


def test_a_bundle_of_fifty_thousand_entries_is_refused_at_once() -> None:
    entry = {"resource": json.loads(observation(80))}
    raw = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [entry] * 50_000})
    started = time.perf_counter()
    assert code(SourceFormat.FHIR, raw.encode()) == "fhir.too_many_entries"
    assert time.perf_counter() - started < 10  # parsed, counted, never validated


def test_a_million_field_hl7_message_is_refused_before_parsing() -> None:
    raw = HL7 + b"OBX|" + b"|" * 1_000_000
    started = time.perf_counter()
    assert code(SourceFormat.HL7V2, raw) == "hl7.too_many_fields"
    assert time.perf_counter() - started < 5


def test_too_many_segments() -> None:
    raw = HL7 + b"NTE|1||x\n" * 10_001
    assert code(SourceFormat.HL7V2, raw) == "hl7.too_many_segments"


def document(text: bytes) -> bytes:
    data = base64.b64encode(text).decode()
    return json.dumps(
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": {"reference": "Patient/p1"},
            "content": [{"attachment": {"contentType": "text/plain", "data": data}}],
        }
    ).encode()


def test_overlong_notes_are_refused_by_their_limits() -> None:
    text = ("Chest clear. " * (20 * MB // 13)).encode()
    # 20 MB of text is 27 MB of base64: over the JSON string limit already.
    assert code(SourceFormat.FHIR, document(text)) == "fhir.too_large_value"
    assert code(SourceFormat.FHIR, document(text[: 2 * MB])) == "fhir.text_too_long"
    hl7 = HL7.split(b"\nOBX")[0] + b"\nOBX|1|TX|18782-3^Report^LN||" + text[: 2 * MB]
    assert code(SourceFormat.HL7V2, hl7) == "hl7.text_too_long"


@pytest.mark.parametrize(
    ("value", "unit", "loinc", "expected"),
    [
        (-5, "/min", "8867-4", "clinical.implausible_value"),
        (1e308, "/min", "8867-4", "clinical.implausible_value"),
        (400, "/min", "8867-4", "clinical.implausible_value"),
        (101, "%", "59408-5", "clinical.implausible_value"),
        (60, "Cel", "8310-5", "clinical.implausible_value"),
        (98.6, "[degF]", "8310-5", "ok"),
        (38.6, "Cel", "8310-5", "ok"),
        (0, "/min", "8867-4", "ok"),  # asystole is charted as 0
        (190, "/min", "8867-4", "ok"),
    ],
)
def test_vital_signs_outside_physiology_are_refused(
    value: float, unit: str, loinc: str, expected: str
) -> None:
    assert code(SourceFormat.FHIR, observation(value, unit=unit, loinc=loinc)) == expected


@pytest.mark.parametrize("value", [b"1e999", b"-1e999", b"nan", b"inf", b"fast", b"-5"])
def test_hl7_vital_values_that_are_no_measurement_are_refused(value: bytes) -> None:
    raw = HL7.replace(b"||112|/min|", b"||" + value + b"|/min|")
    assert raw != HL7
    assert code(SourceFormat.HL7V2, raw) == "clinical.implausible_value"


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1849-12-31"])
def test_dates_outside_the_window_are_refused(when: str) -> None:
    assert code(SourceFormat.FHIR, observation(80, when=when)) == "fhir.date_out_of_range"


def test_hl7_dates_outside_the_window_are_refused() -> None:
    raw = HL7.replace(b"|20260314101500", b"|99991231235959")
    assert code(SourceFormat.HL7V2, raw) == "hl7.date_out_of_range"


def test_deid_refuses_a_date_it_cannot_shift_instead_of_overflowing() -> None:
    """Called directly (as the CLI does), deid refuses a date it cannot shift with its
    own code, never an OverflowError; in free text such a date is only tagged."""
    engine = DeidEngine(Pseudonymiser(b"k"))
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "9999-12-31"}
    with pytest.raises(InvalidMessage) as caught:
        engine.fhir(patient, "p1", offset_days=300)
    assert caught.value.code == "deid.date_out_of_range"
    with pytest.raises(InvalidMessage) as caught:
        engine.hl7v2(HL7.decode().replace("20260314101500", "00010101000000"), "p1", -300)
    assert caught.value.code == "deid.date_out_of_range"
    text, _ = engine.text("Seen 01/01/0001, then 2026-03-14.", "p1")
    assert "0001" not in text  # shifting it would leave the calendar: tagged instead


def test_a_patient_id_that_cannot_identify_anyone_is_refused() -> None:
    raw = observation(80).replace(b"Patient/p1", b"Patient/" + b"9" * 500)
    assert code(SourceFormat.FHIR, raw) == "fhir.bad_patient_id"
    raw = HL7.replace(b"00482915^^^HOSP^MR", b"0048\x072915^^^HOSP^MR")
    assert code(SourceFormat.HL7V2, raw) == "hl7.bad_patient_id"


def test_validation_errors_never_repeat_an_unknown_key() -> None:
    patient = {"resourceType": "Patient", "id": "p1", "Jane Doe 1234567": True}
    with pytest.raises(InvalidMessage) as caught:
        ingest(SourceFormat.FHIR, json.dumps(patient).encode(), message_id="m", dicom_max_bytes=MB)
    assert caught.value.code == "fhir.invalid_resource"
    assert "Jane" not in caught.value.reason
    assert "(unknown element)" in caught.value.reason
